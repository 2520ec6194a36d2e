// TC destination NAT for one service: IPv4 TCP/UDP packets to port 8080 are sent on to port 80 of
// one of four backends, 10.1.0.2..10.1.0.5, picked by the low bits of the source address.  Headers
// are read with bpf_skb_load_bytes and written with bpf_skb_store_bytes; the IPv4 header checksum
// is patched with bpf_l3_csum_replace and the L4 checksum (pseudo-header address and port) with
// bpf_l4_csum_replace — UDP's "no checksum" 0 stays 0 (BPF_F_MARK_MANGLED_0).  Rewritten packets
// are counted per protocol (an atomic add on an array value).
#include "bpf_defs.h"

static long (*bpf_skb_load_bytes)(const struct __sk_buff *skb, u32 offset, void *to, u32 len) = (void *)26;
static long (*bpf_skb_store_bytes)(struct __sk_buff *skb, u32 offset, const void *from, u32 len,
				   u64 flags) = (void *)9;
static long (*bpf_l3_csum_replace)(struct __sk_buff *skb, u32 offset, u64 from, u64 to, u64 size) = (void *)10;
static long (*bpf_l4_csum_replace)(struct __sk_buff *skb, u32 offset, u64 from, u64 to, u64 flags) = (void *)11;

#define F_PSEUDO_HDR (1 << 4)
#define F_MARK_MANGLED_0 (1 << 5)
#define SERVICE_PORT 8080
#define BACKEND_PORT 80

#define IP_OFF sizeof(struct ethhdr)
#define IP_CHECK_OFF (IP_OFF + __builtin_offsetof(struct iphdr, check))
#define IP_DADDR_OFF (IP_OFF + __builtin_offsetof(struct iphdr, daddr))
#define L4_OFF (IP_OFF + sizeof(struct iphdr))

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, u32);           /* 0: TCP, 1: UDP, 2: refused by a helper */
	__type(value, u64);
	__uint(max_entries, 3);
} nat_stats SEC(".maps");

static __always_inline void count(u32 slot)
{
	u64 *n = bpf_map_lookup_elem(&nat_stats, &slot);
	if (n)
		__sync_fetch_and_add(n, 1);
}

SEC("tc")
int tc_nat_port(struct __sk_buff *skb)
{
	struct iphdr ip;
	__be16 ports[2];

	if (skb->protocol != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	if (bpf_skb_load_bytes(skb, IP_OFF, &ip, sizeof(ip)))
		return TC_ACT_OK;
	if (ip.ihl != 5 || (ip.protocol != IPPROTO_TCP && ip.protocol != IPPROTO_UDP))
		return TC_ACT_OK;
	if (ip.frag_off & bpf_htons(0x3fff))          /* fragments carry no ports (or not ours) */
		return TC_ACT_OK;
	if (bpf_skb_load_bytes(skb, L4_OFF, ports, sizeof(ports)))
		return TC_ACT_OK;
	if (ports[1] != bpf_htons(SERVICE_PORT))
		return TC_ACT_OK;

	int udp = ip.protocol == IPPROTO_UDP;
	u32 l4_check = L4_OFF + (udp ? __builtin_offsetof(struct udphdr, check)
				     : __builtin_offsetof(struct tcphdr, check));
	u64 mangled = udp ? F_MARK_MANGLED_0 : 0;
	__be32 old_daddr = ip.daddr;
	__be32 new_daddr = bpf_htonl(0x0a010002 + (bpf_ntohl(ip.saddr) & 3));
	__be16 new_port = bpf_htons(BACKEND_PORT);

	if (bpf_l4_csum_replace(skb, l4_check, old_daddr, new_daddr, F_PSEUDO_HDR | mangled | sizeof(new_daddr)) ||
	    bpf_l3_csum_replace(skb, IP_CHECK_OFF, old_daddr, new_daddr, sizeof(new_daddr)) ||
	    bpf_skb_store_bytes(skb, IP_DADDR_OFF, &new_daddr, sizeof(new_daddr), 0) ||
	    bpf_l4_csum_replace(skb, l4_check, ports[1], new_port, mangled | sizeof(new_port)) ||
	    bpf_skb_store_bytes(skb, L4_OFF + 2, &new_port, sizeof(new_port), 0)) {
		count(2);
		return TC_ACT_SHOT;
	}
	count(udp);
	skb->mark = 0x8080;
	return TC_ACT_OK;
}

char _license[] SEC("license") = "GPL";
