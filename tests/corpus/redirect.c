// Send every IPv4 frame out of another interface with bpf_redirect.
#include "bpf_defs.h"

SEC("xdp")
int xdp_redirect_prog(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return XDP_DROP;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	return bpf_redirect(ctx->ingress_ifindex + 1, 0);
}

char _license[] SEC("license") = "GPL";
