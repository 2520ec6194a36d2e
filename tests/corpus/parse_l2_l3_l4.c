// Walk Ethernet (with up to two VLAN tags), IPv4 or IPv6, then TCP or UDP; count by L4 protocol.
#include "bpf_defs.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, u32);
	__type(value, u64);
	__uint(max_entries, 4);
} l4_seen SEC(".maps");

enum { SEEN_TCP = 0, SEEN_UDP = 1, SEEN_OTHER = 2, SEEN_BAD = 3 };

static __always_inline void bump(u32 slot)
{
	u64 *v = bpf_map_lookup_elem(&l4_seen, &slot);
	if (v)
		*v += 1;
}

SEC("xdp")
int xdp_parse(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	void *cursor = eth + 1;
	if (cursor > data_end)
		goto bad;
	u16 proto = eth->h_proto;
#pragma unroll
	for (int i = 0; i < 2; i++) {
		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		struct vlan_hdr *vlan = cursor;
		if ((void *)(vlan + 1) > data_end)
			goto bad;
		proto = vlan->h_vlan_encapsulated_proto;
		cursor = vlan + 1;
	}
	u8 l4;
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = cursor;
		if ((void *)(ip + 1) > data_end || ip->ihl < 5)
			goto bad;
		l4 = ip->protocol;
		cursor = (void *)ip + ip->ihl * 4;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = cursor;
		if ((void *)(ip6 + 1) > data_end)
			goto bad;
		l4 = ip6->nexthdr;
		cursor = ip6 + 1;
	} else {
		bump(SEEN_OTHER);
		return XDP_PASS;
	}
	if (l4 == IPPROTO_TCP) {
		struct tcphdr *tcp = cursor;
		if ((void *)(tcp + 1) > data_end)
			goto bad;
		bump(SEEN_TCP);
	} else if (l4 == IPPROTO_UDP) {
		struct udphdr *udp = cursor;
		if ((void *)(udp + 1) > data_end)
			goto bad;
		bump(SEEN_UDP);
	} else {
		bump(SEEN_OTHER);
	}
	return XDP_PASS;
bad:
	bump(SEEN_BAD);
	return XDP_DROP;
}

char _license[] SEC("license") = "GPL";
