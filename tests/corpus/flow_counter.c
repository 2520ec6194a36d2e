// Flow accounting: IPv4 and IPv6 TCP/UDP/ICMP flows keyed by their 5-tuple (IPv4 addresses
// stored as IPv4-mapped IPv6) in a hash map; each record keeps packets, bytes, the union
// of TCP flags seen and the first and last packet lengths.  A new flow is inserted with
// BPF_NOEXIST; a full table counts the overflow in a second map.  Everything passes.
#include "bpf_defs.h"

#define IPPROTO_ICMP 1
#define IPPROTO_ICMPV6 58

struct flow {
	u8 src[16];
	u8 dst[16];
	u16 sport;
	u16 dport;
	u8 proto;
	u8 pad[3];
};

struct flow_rec {
	u64 packets;
	u64 bytes;
	u32 first_len;
	u32 last_len;
	u8 tcp_flags;
	u8 pad[7];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct flow);
	__type(value, struct flow_rec);
	__uint(max_entries, 48);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, u32);
	__type(value, u64);
	__uint(max_entries, 1);
} overflow SEC(".maps");

SEC("xdp")
int xdp_flow_counter(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	struct flow f = {};
	void *l4;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) > data_end)
			return XDP_PASS;
		f.src[10] = f.src[11] = f.dst[10] = f.dst[11] = 0xff;
		__builtin_memcpy(&f.src[12], &ip->saddr, 4);
		__builtin_memcpy(&f.dst[12], &ip->daddr, 4);
		f.proto = ip->protocol;
		l4 = (void *)ip + ip->ihl * 4;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > data_end)
			return XDP_PASS;
		__builtin_memcpy(f.src, &ip6->saddr, 16);
		__builtin_memcpy(f.dst, &ip6->daddr, 16);
		f.proto = ip6->nexthdr;
		l4 = ip6 + 1;
	} else {
		return XDP_PASS;
	}
	u8 flags = 0;
	if (f.proto == IPPROTO_TCP) {
		struct tcphdr *tcp = l4;
		if ((void *)(tcp + 1) > data_end)
			return XDP_PASS;
		f.sport = bpf_ntohs(tcp->source);
		f.dport = bpf_ntohs(tcp->dest);
		flags = ((u8 *)tcp)[13];
	} else if (f.proto == IPPROTO_UDP) {
		struct udphdr *udp = l4;
		if ((void *)(udp + 1) > data_end)
			return XDP_PASS;
		f.sport = bpf_ntohs(udp->source);
		f.dport = bpf_ntohs(udp->dest);
	} else if (f.proto == IPPROTO_ICMP || f.proto == IPPROTO_ICMPV6) {
		u8 *type = l4;
		if ((void *)(type + 1) > data_end)
			return XDP_PASS;
		f.sport = *type;
	} else {
		return XDP_PASS;
	}
	u32 len = data_end - data;
	struct flow_rec *r = bpf_map_lookup_elem(&flows, &f);
	if (!r) {
		struct flow_rec fresh = { .packets = 1, .bytes = len, .first_len = len, .last_len = len,
					  .tcp_flags = flags };
		if (bpf_map_update_elem(&flows, &f, &fresh, BPF_NOEXIST)) {
			u32 zero = 0;
			u64 *o = bpf_map_lookup_elem(&overflow, &zero);
			if (o)
				*o += 1;
		}
		return XDP_PASS;
	}
	r->packets += 1;
	r->bytes += len;
	r->last_len = len;
	r->tcp_flags |= flags;
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
