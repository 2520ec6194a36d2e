// build: -mcpu=v3
// 32-bit arithmetic and JMP32 compares (cpu v3): a toy hash over the IPv4 addresses.
#include "bpf_defs.h"

SEC("xdp")
int xdp_alu32(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return XDP_PASS;
	u32 h = ip->saddr ^ 0x9e3779b9u;
	h = (h << 5) | (h >> 27);
	h += ip->daddr * 2654435761u;
	h ^= h >> 16;
	h = h * 0x85ebca6bu;
	u32 bucket = (h % 7) + (h / 1000) - (h & 0xff);
	if ((s32)bucket < 0)
		return XDP_DROP;
	if (bucket > 3000000000u)
		return XDP_TX;
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
