// Global variables in .rodata (constants), .data (initialised) and .bss (zeroed).
#include "bpf_defs.h"

const volatile u16 blocked_port = 22;
const volatile u32 verdict_on_block = XDP_DROP;
u64 seen_packets = 1000;
u32 last_len;

SEC("xdp")
int xdp_globals(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	seen_packets += 1;
	last_len = data_end - data;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || ip->protocol != IPPROTO_TCP)
		return XDP_PASS;
	struct tcphdr *tcp = (void *)(ip + 1);
	if ((void *)(tcp + 1) > data_end)
		return XDP_PASS;
	if (tcp->dest == bpf_htons(blocked_port))
		return verdict_on_block;
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
