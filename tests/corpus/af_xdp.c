/* The AF_XDP default program: packets of a queue with a bound socket go to it, the rest
 * to the stack.  A test run has no sockets, so every packet passes. */
#define NFPJIT_XDP_HELPERS
#include "bpf_defs.h"

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 64);
	__type(key, u32);
	__type(value, u32);
} xsks_map SEC(".maps");

SEC("xdp")
int xsk_def_prog(struct xdp_md *ctx)
{
	u32 index = ctx->rx_queue_index;

	if (bpf_map_lookup_elem(&xsks_map, &index))
		return bpf_redirect_map(&xsks_map, index, 0);
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
