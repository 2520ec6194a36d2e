// ICMP and ICMPv6 echo responder: an echo request (type 8, or 128 over IPv6) is turned
// into the reply in place: MAC and IP addresses swapped, the type changed to 0 (129), the
// ICMP checksum adjusted incrementally, the IPv4 TTL reset to 64 (header checksum
// adjusted), and the frame transmitted back.  Requests of each family are counted.
#include "bpf_defs.h"

#define IPPROTO_ICMP 1
#define IPPROTO_ICMPV6 58

struct icmphdr {
	u8 type;
	u8 code;
	__sum16 checksum;
	__be16 id;
	__be16 seq;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, u32);
	__type(value, u64);
	__uint(max_entries, 2);
} echoes SEC(".maps");

static __always_inline u16 csum_adjust(u16 check, u16 from, u16 to)
{
	u32 sum = (u16)~check + (u16)~from + to;
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return ~sum;
}

static __always_inline void swap_macs(struct ethhdr *eth)
{
	u8 tmp[ETH_ALEN];
	__builtin_memcpy(tmp, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, tmp, ETH_ALEN);
}

static __always_inline void count(u32 idx)
{
	u64 *v = bpf_map_lookup_elem(&echoes, &idx);
	if (v)
		*v += 1;
}

SEC("xdp")
int xdp_icmp_echo(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > data_end || ip->protocol != IPPROTO_ICMP)
			return XDP_PASS;
		if (ip->frag_off & bpf_htons(0x3fff))
			return XDP_PASS;
		struct icmphdr *icmp = (void *)ip + ip->ihl * 4;
		if ((void *)(icmp + 1) > data_end || icmp->type != 8 || icmp->code != 0)
			return XDP_PASS;
		icmp->type = 0;
		icmp->checksum = csum_adjust(icmp->checksum, bpf_htons(8 << 8), 0);
		u32 a = ip->saddr;
		ip->saddr = ip->daddr;
		ip->daddr = a;
		u16 old = *(u16 *)&ip->ttl;
		ip->ttl = 64;
		ip->check = csum_adjust(ip->check, old, *(u16 *)&ip->ttl);
		swap_macs(eth);
		count(0);
		return XDP_TX;
	}
	if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > data_end || ip6->nexthdr != IPPROTO_ICMPV6)
			return XDP_PASS;
		struct icmphdr *icmp = (void *)(ip6 + 1);
		if ((void *)(icmp + 1) > data_end || icmp->type != 128 || icmp->code != 0)
			return XDP_PASS;
		icmp->type = 129;
		icmp->checksum = csum_adjust(icmp->checksum, bpf_htons(128 << 8), bpf_htons(129 << 8));
		struct in6_addr a = ip6->saddr;
		ip6->saddr = ip6->daddr;
		ip6->daddr = a;
		ip6->hop_limit = 64;
		swap_macs(eth);
		count(1);
		return XDP_TX;
	}
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
