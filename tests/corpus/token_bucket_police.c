// Token-bucket policer per destination port (UDP and TCP over IPv4): each bucket holds up
// to 2000 bytes and refills at 5 bytes per millisecond from bpf_ktime_get_ns; a packet
// larger than the tokens left is dropped.  The bucket lives in a hash map value updated
// with plain stores (tokens, last refill time, packets passed and dropped).
#include "bpf_defs.h"

#define BURST 2000
#define NS_PER_TOKEN 200000

struct bucket {
	u64 tokens;
	u64 last_ns;
	u64 passed;
	u64 dropped;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, u16);
	__type(value, struct bucket);
	__uint(max_entries, 64);
} buckets SEC(".maps");

SEC("xdp")
int xdp_token_bucket(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || (ip->protocol != IPPROTO_UDP && ip->protocol != IPPROTO_TCP))
		return XDP_PASS;
	__be16 *ports = (void *)ip + ip->ihl * 4;
	if ((void *)(ports + 2) > data_end)
		return XDP_PASS;
	u16 port = bpf_ntohs(ports[1]);
	u64 len = data_end - data;
	u64 now = bpf_ktime_get_ns();

	struct bucket *b = bpf_map_lookup_elem(&buckets, &port);
	if (!b) {
		struct bucket fresh = { .tokens = BURST - len, .last_ns = now, .passed = 1 };
		bpf_map_update_elem(&buckets, &port, &fresh, BPF_ANY);
		return XDP_PASS;
	}
	u64 elapsed = now - b->last_ns;
	u64 tokens = b->tokens + elapsed / NS_PER_TOKEN;
	if (tokens > BURST)
		tokens = BURST;
	b->last_ns = now;
	if (tokens < len) {
		b->tokens = tokens;
		b->dropped += 1;
		return XDP_DROP;
	}
	b->tokens = tokens - len;
	b->passed += 1;
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
