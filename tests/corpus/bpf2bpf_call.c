// BPF-to-BPF calls into .text: a static function (reached through the section symbol; verified
// in its caller's context, so it may take packet pointers) and a global one (scalar argument only).
#include "bpf_defs.h"

static __noinline int classify(void *data, void *data_end)
{
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return XDP_DROP;
	if (eth->h_proto == bpf_htons(ETH_P_IPV6))
		return XDP_DROP;
	return XDP_PASS;
}

__noinline int twice(int x)
{
	return x + x;
}

SEC("xdp")
int xdp_call(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	int verdict = classify(data, data_end);
	if (twice(verdict) == 2 * XDP_DROP)
		return XDP_DROP;
	return verdict;
}

char _license[] SEC("license") = "GPL";
