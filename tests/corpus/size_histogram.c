// Packet-size histogram with a configurable bucket width (a .rodata constant the loader
// may change, so the compiler must divide by a variable): bucket = len / width, capped at
// 15; the remainder's distribution (len % width, in quarters of the width) and the mean
// length (total bytes / packets, a 64-bit division by a variable) are kept as well.
#include "bpf_defs.h"

const volatile u32 bucket_width = 100;

struct summary {
	u64 packets;
	u64 bytes;
	u64 mean;
	u64 quarter[4];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, u32);
	__type(value, u64);
	__uint(max_entries, 16);
} size_buckets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, u32);
	__type(value, struct summary);
	__uint(max_entries, 1);
} size_summary SEC(".maps");

SEC("xdp")
int xdp_size_histogram(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	u32 len = data_end - data;
	u32 width = bucket_width;
	if (width == 0)
		return XDP_PASS;
	u32 bucket = len / width;
	if (bucket > 15)
		bucket = 15;
	u64 *b = bpf_map_lookup_elem(&size_buckets, &bucket);
	if (b)
		__sync_fetch_and_add(b, 1);
	u32 zero = 0;
	struct summary *s = bpf_map_lookup_elem(&size_summary, &zero);
	if (!s)
		return XDP_PASS;
	s->packets += 1;
	s->bytes += len;
	s->mean = s->bytes / s->packets;
	u32 q = (len % width) * 4 / width;
	if (q < 4)
		s->quarter[q] += 1;
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
