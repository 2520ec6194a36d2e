/* Walk IPv6 extension headers with bpf_loop: the callback advances one header per call and
 * stops at the transport header, the end of the packet or after eight headers. */
#define NFPJIT_XDP_HELPERS
#include "bpf_defs.h"

#define NEXTHDR_HOP 0
#define NEXTHDR_ROUTING 43
#define NEXTHDR_FRAGMENT 44
#define NEXTHDR_DEST 60

struct walk {
	struct xdp_md *ctx;
	u32 off;
	u8 nexthdr;
	u8 done;
	u16 hops;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 256);
	__type(key, u32);
	__type(value, u64);
} l4_seen SEC(".maps");

static long step(u32 i, struct walk *w)
{
	u8 hdr[2];

	if (w->nexthdr != NEXTHDR_HOP && w->nexthdr != NEXTHDR_ROUTING && w->nexthdr != NEXTHDR_DEST &&
	    w->nexthdr != NEXTHDR_FRAGMENT) {
		w->done = 1;
		return 1;
	}
	if (bpf_xdp_load_bytes(w->ctx, w->off, hdr, sizeof(hdr)))
		return 1;
	w->nexthdr = hdr[0];
	w->off += w->nexthdr == NEXTHDR_FRAGMENT ? 8 : (hdr[1] + 1) * 8;
	w->hops++;
	return 0;
}

SEC("xdp")
int xdp_loop_parser(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct ipv6hdr *ip6 = (void *)(eth + 1);
	struct walk w = { .ctx = ctx, .off = sizeof(*eth) + sizeof(*ip6) };

	if ((void *)(ip6 + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IPV6))
		return XDP_PASS;
	w.nexthdr = ip6->nexthdr;
	long iters = bpf_loop(8, step, &w, 0);
	if (!w.done)
		return iters < 0 ? XDP_ABORTED : XDP_DROP;
	u32 key = w.nexthdr;
	u64 *seen = bpf_map_lookup_elem(&l4_seen, &key);
	if (seen)
		__sync_fetch_and_add(seen, 1 + w.hops);
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
