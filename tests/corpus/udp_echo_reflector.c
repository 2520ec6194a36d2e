// UDP echo reflector (RFC 862 port 7) and a generic MAC/IP swap for probes to port 9000:
// the datagram is sent back out of the port it came in on, with Ethernet, IP and UDP
// source and destination swapped (the checksums stay valid: swaps do not change sums).
// IPv4 and IPv6 are both handled; reflected bytes are counted per address family.
#include "bpf_defs.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, u32);
	__type(value, u64);
	__uint(max_entries, 2);
} reflected_bytes SEC(".maps");

static __always_inline int reflect(struct ethhdr *eth, struct udphdr *udp, u32 family, u64 len)
{
	u8 tmp[ETH_ALEN];
	__builtin_memcpy(tmp, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, tmp, ETH_ALEN);
	__be16 port = udp->source;
	udp->source = udp->dest;
	udp->dest = port;
	u64 *b = bpf_map_lookup_elem(&reflected_bytes, &family);
	if (b)
		*b += len;
	return XDP_TX;
}

static __always_inline int wanted(struct udphdr *udp)
{
	return udp->dest == bpf_htons(7) || udp->dest == bpf_htons(9000);
}

SEC("xdp")
int xdp_udp_reflector(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > data_end || ip->protocol != IPPROTO_UDP)
			return XDP_PASS;
		struct udphdr *udp = (void *)ip + ip->ihl * 4;
		if ((void *)(udp + 1) > data_end || !wanted(udp))
			return XDP_PASS;
		u32 a = ip->saddr;
		ip->saddr = ip->daddr;
		ip->daddr = a;
		return reflect(eth, udp, 0, bpf_ntohs(udp->len));
	}
	if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > data_end || ip6->nexthdr != IPPROTO_UDP)
			return XDP_PASS;
		struct udphdr *udp = (void *)(ip6 + 1);
		if ((void *)(udp + 1) > data_end || !wanted(udp))
			return XDP_PASS;
		struct in6_addr a = ip6->saddr;
		ip6->saddr = ip6->daddr;
		ip6->daddr = a;
		return reflect(eth, udp, 1, bpf_ntohs(udp->len));
	}
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
