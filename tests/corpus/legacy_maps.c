// Maps declared the old way: struct bpf_map_def in SEC("maps").
#include "bpf_defs.h"

struct bpf_map_def SEC("maps") legacy_counts = {
	.type = BPF_MAP_TYPE_ARRAY,
	.key_size = sizeof(u32),
	.value_size = sizeof(u64),
	.max_entries = 8,
};

struct bpf_map_def SEC("maps") legacy_flows = {
	.type = BPF_MAP_TYPE_HASH,
	.key_size = sizeof(u32),
	.value_size = sizeof(u32),
	.max_entries = 1024,
	.map_flags = BPF_F_NO_PREALLOC,
};

SEC("xdp")
int xdp_legacy(struct xdp_md *ctx)
{
	u32 key = ctx->rx_queue_index & 7;
	u64 *count = bpf_map_lookup_elem(&legacy_counts, &key);
	if (count)
		*count += 1;
	u32 flow = ctx->ingress_ifindex;
	u32 one = 1;
	bpf_map_update_elem(&legacy_flows, &flow, &one, BPF_ANY);
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
