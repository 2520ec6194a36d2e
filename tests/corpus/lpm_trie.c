// Longest-prefix-match lookup of the IPv4 source address (offload-unfriendly map type).
#include "bpf_defs.h"

struct lpm_v4_key {
	u32 prefixlen;
	u32 addr;
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct lpm_v4_key);
	__type(value, u32);
	__uint(max_entries, 128);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} blocklist SEC(".maps");

SEC("xdp")
int xdp_lpm(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return XDP_PASS;
	struct lpm_v4_key key = { .prefixlen = 32, .addr = ip->saddr };
	u32 *hit = bpf_map_lookup_elem(&blocklist, &key);
	return hit ? XDP_DROP : XDP_PASS;
}

char _license[] SEC("license") = "GPL";
