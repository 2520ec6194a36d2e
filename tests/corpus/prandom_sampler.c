// Packet sampler: a packet is sampled when bpf_get_prandom_u32 says so (one in two here:
// a coin flip); a sampled packet's EtherType and length are recorded in a 16-slot array
// (the slot is a hash of EtherType and length, so one kind of packet keeps one slot) with
// the running sample number, and sampled/seen totals are kept.  Everything passes.
#include "bpf_defs.h"

static u32 (*bpf_get_prandom_u32)(void) = (void *)7;

struct sample {
	u16 ethertype;
	u16 len;
	u32 seq;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, u32);
	__type(value, struct sample);
	__uint(max_entries, 16);
} samples SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, u32);
	__type(value, u64);
	__uint(max_entries, 2);   /* [0] seen, [1] sampled */
} sample_totals SEC(".maps");

SEC("xdp")
int xdp_prandom_sampler(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	u32 idx = 0;
	u64 *seen = bpf_map_lookup_elem(&sample_totals, &idx);
	if (seen)
		*seen += 1;
	if (bpf_get_prandom_u32() & 1)
		return XDP_PASS;
	idx = 1;
	u64 *sampled = bpf_map_lookup_elem(&sample_totals, &idx);
	if (!sampled)
		return XDP_PASS;
	u32 seq = *sampled;
	*sampled = seq + 1;
	u32 len = data_end - data;
	u32 slot = (bpf_ntohs(eth->h_proto) * 31 + len) & 15;
	struct sample *s = bpf_map_lookup_elem(&samples, &slot);
	if (s) {
		s->ethertype = bpf_ntohs(eth->h_proto);
		s->len = len;
		s->seq = seq;
	}
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
