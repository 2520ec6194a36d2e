// Decrement the IPv4 TTL and patch the header checksum incrementally (RFC 1624).
#include "bpf_defs.h"

SEC("xdp")
int xdp_ttl_dec(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return XDP_PASS;
	if (ip->ttl <= 1)
		return XDP_DROP;
	u32 check = ip->check;
	check += bpf_htons(0x0100);
	ip->check = (u16)(check + (check >> 16));
	ip->ttl -= 1;
	return XDP_TX;
}

char _license[] SEC("license") = "GPL";
