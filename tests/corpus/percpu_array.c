// A per-CPU array counter (offload-unfriendly: the NIC has no per-CPU memory).
#include "bpf_defs.h"

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, u32);
	__type(value, u64);
	__uint(max_entries, 1);
} pcpu_packets SEC(".maps");

SEC("xdp")
int xdp_percpu(struct xdp_md *ctx)
{
	u32 key = 0;
	u64 *v = bpf_map_lookup_elem(&pcpu_packets, &key);
	if (v)
		*v += 1;
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
