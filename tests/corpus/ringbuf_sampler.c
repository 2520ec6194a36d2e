/* Sample packet headers into a ring buffer: reserve/submit for most, discard for some,
 * bpf_ringbuf_output for a short summary; a counter shows when the ring is full. */
#define NFPJIT_XDP_HELPERS
#include "bpf_defs.h"

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} samples SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, u32);
	__type(value, u64);
} sampler_stats SEC(".maps");

struct sample {
	u32 len;
	u32 seq;
	u8 head[32];
};

static __always_inline u64 *stat(u32 i)
{
	return bpf_map_lookup_elem(&sampler_stats, &i);
}

SEC("xdp")
int xdp_sampler(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	u64 *seq = stat(0);
	u64 *full = stat(1);

	if (!seq || !full)
		return XDP_ABORTED;
	u32 n = (*seq)++;
	if (n % 3 == 2) {
		u32 summary[2] = { (u32)(data_end - data), n };

		if (bpf_ringbuf_output(&samples, summary, sizeof(summary), BPF_RB_NO_WAKEUP))
			(*full)++;
		return XDP_PASS;
	}
	struct sample *s = bpf_ringbuf_reserve(&samples, sizeof(*s), 0);
	if (!s) {
		(*full)++;
		return XDP_PASS;
	}
	s->len = data_end - data;
	s->seq = n;
	if (bpf_xdp_load_bytes(ctx, 0, s->head, sizeof(s->head)) || n % 5 == 4) {
		bpf_ringbuf_discard(s, 0);
		return XDP_PASS;
	}
	bpf_ringbuf_submit(s, 0);
	u64 *avail = stat(2);
	if (avail)
		*avail = bpf_ringbuf_query(&samples, BPF_RB_AVAIL_DATA);
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
