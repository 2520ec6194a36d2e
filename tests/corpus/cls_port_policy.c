// TC ingress policy: IPv4 and IPv6 TCP/UDP traffic is sorted into classes by destination
// port range (tc_classid 1:10 interactive, 1:20 web, 1:30 bulk), well-known abuse ports are
// shot, and an skb longer than the MTU is dropped.  Per-class packet and byte counts are
// plain stores into an array value; the protocol comes from skb->protocol.
#include "bpf_defs.h"

#define IPPROTO_HOPOPTS 0

struct class_stats {
	u64 packets;
	u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, u32);
	__type(value, struct class_stats);
	__uint(max_entries, 5);   /* 0 unclassified, 1..3 classes, 4 shot */
} class_stats SEC(".maps");

static __always_inline u32 class_of(u16 port)
{
	if (port == 22 || port == 23 || port == 3389)
		return 1;
	if (port == 80 || port == 443 || port == 8080)
		return 2;
	if (port >= 1024)
		return 3;
	return 0;
}

SEC("tc")
int cls_port_policy(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	u32 cls = 0;
	u8 proto = 0;
	void *l4 = 0;
	if (skb->len > 1514) {
		cls = 4;
		goto out;
	}
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = data + sizeof(struct ethhdr);
		if ((void *)(ip + 1) > data_end)
			goto out;
		proto = ip->protocol;
		l4 = (void *)ip + ip->ihl * 4;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = data + sizeof(struct ethhdr);
		if ((void *)(ip6 + 1) > data_end)
			goto out;
		proto = ip6->nexthdr;
		l4 = ip6 + 1;
	} else {
		goto out;
	}
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		goto out;
	__be16 *ports = l4;
	if ((void *)(ports + 2) > data_end)
		goto out;
	u16 dport = bpf_ntohs(ports[1]);
	if (dport == 0 || dport == 19 || dport == 1900)
		cls = 4;
	else
		cls = class_of(dport);
out:;
	struct class_stats *s = bpf_map_lookup_elem(&class_stats, &cls);
	if (s) {
		s->packets += 1;
		s->bytes += skb->len;
	}
	if (cls == 4)
		return TC_ACT_SHOT;
	if (cls)
		skb->tc_classid = 0x10000 | (cls * 10);
	return TC_ACT_OK;
}

char _license[] SEC("license") = "GPL";
