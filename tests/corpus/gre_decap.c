// GRE decapsulation: IPv4 packets carrying GRE (protocol 47, version 0) with an IPv4 or
// IPv6 payload lose the outer IPv4 and GRE headers (including the optional checksum, key
// and sequence words); the Ethernet header is rebuilt in front of the inner packet.
// Packets per GRE key are counted (key 0 when the K bit is clear).
#include "bpf_defs.h"

#define IPPROTO_GRE 47
#define GRE_CSUM 0x8000
#define GRE_KEY 0x2000
#define GRE_SEQ 0x1000
#define GRE_VERSION 0x0007

struct grehdr {
	__be16 flags;
	__be16 protocol;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, u32);
	__type(value, u64);
	__uint(max_entries, 64);
} per_key SEC(".maps");

SEC("xdp")
int xdp_gre_decap(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	struct iphdr *outer = (void *)(eth + 1);
	if ((void *)(outer + 1) > data_end || outer->protocol != IPPROTO_GRE)
		return XDP_PASS;
	if (outer->frag_off & bpf_htons(0x3fff))
		return XDP_PASS;   /* fragmented tunnel packets go to the stack */
	u32 ihl = outer->ihl * 4;
	if (ihl < sizeof(*outer))
		return XDP_DROP;
	struct grehdr *gre = (void *)outer + ihl;
	if ((void *)(gre + 1) > data_end)
		return XDP_DROP;
	u16 flags = bpf_ntohs(gre->flags);
	if (flags & GRE_VERSION)
		return XDP_PASS;
	u16 inner_proto = bpf_ntohs(gre->protocol);
	if (inner_proto != ETH_P_IP && inner_proto != ETH_P_IPV6)
		return XDP_PASS;
	u32 grelen = sizeof(*gre);
	if (flags & GRE_CSUM)
		grelen += 4;
	u32 key = 0;
	if (flags & GRE_KEY) {
		__be32 *k = (void *)gre + grelen;
		if ((void *)(k + 1) > data_end)
			return XDP_DROP;
		key = bpf_ntohl(*k);
		grelen += 4;
	}
	if (flags & GRE_SEQ)
		grelen += 4;

	u64 *count = bpf_map_lookup_elem(&per_key, &key);
	if (count) {
		__sync_fetch_and_add(count, 1);
	} else {
		u64 one = 1;
		bpf_map_update_elem(&per_key, &key, &one, BPF_NOEXIST);
	}

	struct ethhdr saved = *eth;
	saved.h_proto = gre->protocol;
	int strip = ihl + grelen;
	if (bpf_xdp_adjust_head(ctx, strip))
		return XDP_DROP;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	if ((void *)(eth + 1) > data_end)
		return XDP_DROP;
	*eth = saved;
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
