// Two XDP programs in one object, sharing a map and a .text helper.
#include "bpf_defs.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, u32);
	__type(value, u64);
	__uint(max_entries, 2);
} verdicts SEC(".maps");

__noinline int note(u32 slot)
{
	u64 *v = bpf_map_lookup_elem(&verdicts, &slot);
	if (v)
		*v += 1;
	return 0;
}

SEC("xdp/ingress")
int xdp_ingress(struct xdp_md *ctx)
{
	note(0);
	return XDP_PASS;
}

SEC("xdp.frags")
int xdp_frags(struct xdp_md *ctx)
{
	note(1);
	return XDP_DROP;
}

char _license[] SEC("license") = "GPL";
