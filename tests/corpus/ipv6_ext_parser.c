// IPv6 extension-header walker: hop-by-hop, routing, destination options, fragment and AH
// headers are skipped (at most 6, a bounded loop) to find the upper-layer protocol.  The
// final protocol is counted; a type-0 routing header (deprecated, RFC 5095) and a
// non-first fragment are dropped, an unknown chain longer than the limit is aborted.
#include "bpf_defs.h"

#define NEXTHDR_HOP 0
#define NEXTHDR_ROUTING 43
#define NEXTHDR_FRAGMENT 44
#define NEXTHDR_AUTH 51
#define NEXTHDR_NONE 59
#define NEXTHDR_DEST 60
#define MAX_EXT 6

struct ipv6_opt_hdr {
	u8 nexthdr;
	u8 hdrlen;
	u8 type;       /* routing type for a routing header */
	u8 segments_left;
};

struct frag_hdr {
	u8 nexthdr;
	u8 reserved;
	__be16 frag_off;
	__be32 identification;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, u32);       /* upper protocol << 8 | number of extension headers */
	__type(value, u64);
	__uint(max_entries, 64);
} l4_seen SEC(".maps");

SEC("xdp")
int xdp_ipv6_ext(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IPV6))
		return XDP_PASS;
	struct ipv6hdr *ip6 = (void *)(eth + 1);
	if ((void *)(ip6 + 1) > data_end)
		return XDP_DROP;
	u8 next = ip6->nexthdr;
	void *p = ip6 + 1;
	u32 n;
#pragma clang loop unroll(disable)
	for (n = 0; n < MAX_EXT; n++) {
		if (next != NEXTHDR_HOP && next != NEXTHDR_ROUTING && next != NEXTHDR_FRAGMENT &&
		    next != NEXTHDR_AUTH && next != NEXTHDR_DEST)
			break;
		struct ipv6_opt_hdr *h = p;
		if ((void *)(h + 1) > data_end)
			return XDP_DROP;
		if (next == NEXTHDR_FRAGMENT) {
			struct frag_hdr *f = p;
			if ((void *)(f + 1) > data_end)
				return XDP_DROP;
			if (f->frag_off & bpf_htons(0xfff8))
				return XDP_DROP;
			next = f->nexthdr;
			p = f + 1;
			continue;
		}
		if (next == NEXTHDR_ROUTING && h->type == 0)
			return XDP_DROP;
		u32 len = next == NEXTHDR_AUTH ? (h->hdrlen + 2) * 4 : (h->hdrlen + 1) * 8;
		next = h->nexthdr;
		p += len;
	}
	if (n == MAX_EXT)
		return XDP_ABORTED;
	u32 key = (u32)next << 8 | n;
	u64 *c = bpf_map_lookup_elem(&l4_seen, &key);
	if (c) {
		*c += 1;
	} else {
		u64 one = 1;
		bpf_map_update_elem(&l4_seen, &key, &one, BPF_NOEXIST);
	}
	if (next == IPPROTO_TCP || next == IPPROTO_UDP) {
		__be16 *ports = p;
		if ((void *)(ports + 2) > data_end)
			return XDP_DROP;
	}
	return next == NEXTHDR_NONE ? XDP_DROP : XDP_PASS;
}

char _license[] SEC("license") = "GPL";
