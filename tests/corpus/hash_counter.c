// Count packets per EtherType in a hash map.
#include "bpf_defs.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, u16);
	__type(value, u64);
	__uint(max_entries, 256);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} by_ethertype SEC(".maps");

SEC("xdp")
int xdp_hash_count(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	u16 type = bpf_ntohs(eth->h_proto);
	u64 *count = bpf_map_lookup_elem(&by_ethertype, &type);
	if (count) {
		*count += 1;
	} else {
		u64 one = 1;
		bpf_map_update_elem(&by_ethertype, &type, &one, BPF_NOEXIST);
	}
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
