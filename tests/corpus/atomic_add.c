// Add to a shared counter with an atomic instruction (lock xadd).
#include "bpf_defs.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, u32);
	__type(value, u64);
	__uint(max_entries, 1);
} total_bytes SEC(".maps");

SEC("xdp")
int xdp_atomic_add(struct xdp_md *ctx)
{
	u32 key = 0;
	u64 *total = bpf_map_lookup_elem(&total_bytes, &key);
	if (!total)
		return XDP_ABORTED;
	__sync_fetch_and_add(total, ctx->data_end - ctx->data);
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
