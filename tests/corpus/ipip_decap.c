// IP-in-IP decapsulation: an IPv4 packet with protocol 4 addressed to this endpoint
// (192.168.0.2) loses its outer header when the inner header is a sane IPv4 header;
// the inner TTL is decremented (checksum adjusted) as a router would, and a packet whose
// inner TTL would reach zero is dropped.  Decapsulated and dropped packets are counted.
#include "bpf_defs.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, u32);
	__type(value, u64);
	__uint(max_entries, 3);   /* [0] decapsulated, [1] TTL expired, [2] malformed inner */
} decap_stats SEC(".maps");

static __always_inline int count(u32 idx, int action)
{
	u64 *v = bpf_map_lookup_elem(&decap_stats, &idx);
	if (v)
		*v += 1;
	return action;
}

SEC("xdp")
int xdp_ipip_decap(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	struct iphdr *outer = (void *)(eth + 1);
	if ((void *)(outer + 1) > data_end || outer->protocol != IPPROTO_IPIP)
		return XDP_PASS;
	if (outer->daddr != bpf_htonl(0xc0a80002))
		return XDP_PASS;
	u32 olen = outer->ihl * 4;
	if (olen < 20 || olen > 60)
		return count(2, XDP_DROP);
	struct iphdr *inner = (void *)outer + olen;
	if ((void *)(inner + 1) > data_end)
		return count(2, XDP_DROP);
	if (inner->version != 4 || inner->ihl < 5)
		return count(2, XDP_DROP);
	if (inner->ttl <= 1)
		return count(1, XDP_DROP);
	/* TTL is the high byte of the 16-bit word shared with protocol: -0x0100 in the sum */
	u32 sum = (u16)~inner->check + (u16)~bpf_htons(0x0100);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	inner->check = ~sum;
	inner->ttl -= 1;

	struct ethhdr saved = *eth;
	if (bpf_xdp_adjust_head(ctx, (int)olen))
		return XDP_ABORTED;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	if ((void *)(eth + 1) > data_end)
		return XDP_ABORTED;
	*eth = saved;
	return count(0, XDP_PASS);
}

char _license[] SEC("license") = "GPL";
