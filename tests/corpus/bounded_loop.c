// A real (not unrolled) bounded loop: sum the first bytes of the packet.
#include "bpf_defs.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, u32);
	__type(value, u32);
	__uint(max_entries, 1);
} byte_sum SEC(".maps");

SEC("xdp")
int xdp_loop(struct xdp_md *ctx)
{
	u8 *data = (void *)(long)ctx->data;
	u8 *data_end = (void *)(long)ctx->data_end;
	u32 sum = 0;
#pragma clang loop unroll(disable)
	for (int i = 0; i < 32; i++) {
		if (data + i + 1 > data_end)
			break;
		sum += data[i];
	}
	u32 key = 0;
	u32 *out = bpf_map_lookup_elem(&byte_sum, &key);
	if (out)
		*out = sum;
	return sum & 1 ? XDP_DROP : XDP_PASS;
}

char _license[] SEC("license") = "GPL";
