// Timestamp the last packet with bpf_ktime_get_ns (no NIC clock to offload it to).
#include "bpf_defs.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, u32);
	__type(value, u64);
	__uint(max_entries, 1);
} last_seen SEC(".maps");

SEC("xdp")
int xdp_ktime(struct xdp_md *ctx)
{
	u32 key = 0;
	u64 now = bpf_ktime_get_ns();
	bpf_map_update_elem(&last_seen, &key, &now, BPF_ANY);
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
