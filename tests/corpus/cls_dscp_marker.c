// TC classifier that marks DSCP by application: SIP/RTP-like UDP (5060, 16384..32767) gets
// EF (46), HTTPS gets AF41 (34), DNS gets CS2 (16), other TCP above 1023 CS1 (8).  The
// IPv4 TOS byte is rewritten with bpf_l3_csum_replace keeping the header checksum right,
// skb->priority carries the class, and the mark/priority the skb ends with is counted.
#include "bpf_defs.h"

static long (*bpf_l3_csum_replace)(struct __sk_buff *skb, u32 offset, u64 from, u64 to, u64 size) = (void *)10;

#define TOS_OFF (sizeof(struct ethhdr) + __builtin_offsetof(struct iphdr, tos))
#define CHECK_OFF (sizeof(struct ethhdr) + __builtin_offsetof(struct iphdr, check))

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, u32);           /* priority << 16 | mark */
	__type(value, u64);
	__uint(max_entries, 32);
} classes SEC(".maps");

static __always_inline u8 dscp_for(u8 proto, u16 sport, u16 dport)
{
	if (proto == IPPROTO_UDP) {
		if (dport == 5060 || sport == 5060 || (dport >= 16384 && dport < 32768))
			return 46;
		if (dport == 53)
			return 16;
		return 0;
	}
	if (dport == 443 || sport == 443)
		return 34;
	if (dport > 1023)
		return 8;
	return 0;
}

SEC("tc")
int cls_dscp_marker(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || ip->ihl != 5)
		return TC_ACT_OK;
	if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP)
		return TC_ACT_OK;
	__be16 *ports = (void *)(ip + 1);
	if ((void *)(ports + 2) > data_end)
		return TC_ACT_OK;
	u8 dscp = dscp_for(ip->protocol, bpf_ntohs(ports[0]), bpf_ntohs(ports[1]));
	u8 old_tos = ip->tos;
	u8 new_tos = (dscp << 2) | (old_tos & 3);
	if (new_tos != old_tos) {
		u16 old_word = bpf_htons(0x4500 | old_tos);
		u16 new_word = bpf_htons(0x4500 | new_tos);
		if (bpf_l3_csum_replace(skb, CHECK_OFF, old_word, new_word, 2))
			return TC_ACT_SHOT;
		/* the helper may move the data: reload and re-check before writing */
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
		if (data + TOS_OFF + 1 > data_end)
			return TC_ACT_SHOT;
		*(u8 *)(data + TOS_OFF) = new_tos;
	}
	skb->priority = dscp >> 3;
	skb->mark = dscp ? 0x100 | dscp : 0;
	u32 key = skb->priority << 16 | skb->mark;
	u64 *n = bpf_map_lookup_elem(&classes, &key);
	if (n) {
		__sync_fetch_and_add(n, 1);
	} else {
		u64 one = 1;
		bpf_map_update_elem(&classes, &key, &one, BPF_NOEXIST);
	}
	return TC_ACT_OK;
}

char _license[] SEC("license") = "GPL";
