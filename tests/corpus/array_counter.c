// Count packets and bytes in a two-slot array map.
#include "bpf_defs.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, u32);
	__type(value, u64);
	__uint(max_entries, 2);
} stats SEC(".maps");

SEC("xdp")
int xdp_count(struct xdp_md *ctx)
{
	u32 key = 0;
	u64 *packets = bpf_map_lookup_elem(&stats, &key);
	if (packets)
		*packets += 1;
	key = 1;
	u64 *bytes = bpf_map_lookup_elem(&stats, &key);
	if (bytes)
		*bytes += ctx->data_end - ctx->data;
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
