// GRE encapsulation toward a tunnel endpoint: IPv4 packets for 10.0.0.2 from a source in
// 10.0.0.0/8 are wrapped in outer IPv4 + GRE with a key (the inner DSCP is copied out, the
// outer TTL is 64, the outer checksum computed over the new header) and transmitted.
#include "bpf_defs.h"

#define IPPROTO_GRE 47

struct gre_key_hdr {
	__be16 flags;
	__be16 protocol;
	__be32 key;
};

struct encap {
	struct iphdr ip;
	struct gre_key_hdr gre;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, u32);
	__type(value, u64);
	__uint(max_entries, 1);
} encapsulated_bytes SEC(".maps");

SEC("xdp")
int xdp_gre_encap(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	struct iphdr *inner = (void *)(eth + 1);
	if ((void *)(inner + 1) > data_end)
		return XDP_PASS;
	if (inner->daddr != bpf_htonl(0x0a000002) || (bpf_ntohl(inner->saddr) >> 24) != 10)
		return XDP_PASS;
	u16 inner_len = bpf_ntohs(inner->tot_len);
	u8 tos = inner->tos & 0xfc;
	u32 key = bpf_ntohl(inner->saddr) & 0xffff;
	struct ethhdr saved = *eth;

	if (bpf_xdp_adjust_head(ctx, -(int)sizeof(struct encap)))
		return XDP_ABORTED;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	struct encap *hdr = (void *)(eth + 1);
	if ((void *)(hdr + 1) > data_end)
		return XDP_ABORTED;
	__builtin_memcpy(eth->h_dest, saved.h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, saved.h_dest, ETH_ALEN);
	eth->h_proto = bpf_htons(ETH_P_IP);
	hdr->ip.version = 4;
	hdr->ip.ihl = 5;
	hdr->ip.tos = tos;
	hdr->ip.tot_len = bpf_htons(inner_len + sizeof(struct encap));
	hdr->ip.id = 0;
	hdr->ip.frag_off = bpf_htons(0x4000);
	hdr->ip.ttl = 64;
	hdr->ip.protocol = IPPROTO_GRE;
	hdr->ip.check = 0;
	hdr->ip.saddr = bpf_htonl(0xc0a80001);
	hdr->ip.daddr = bpf_htonl(0xc0a80002);
	hdr->gre.flags = bpf_htons(0x2000);
	hdr->gre.protocol = bpf_htons(ETH_P_IP);
	hdr->gre.key = bpf_htonl(key);
	u32 sum = 0;
	u16 *w = (u16 *)&hdr->ip;
#pragma unroll
	for (int i = 0; i < 10; i++)
		sum += w[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	hdr->ip.check = ~sum;

	u32 zero = 0;
	u64 *bytes = bpf_map_lookup_elem(&encapsulated_bytes, &zero);
	if (bytes)
		*bytes += inner_len;
	return XDP_TX;
}

char _license[] SEC("license") = "GPL";
