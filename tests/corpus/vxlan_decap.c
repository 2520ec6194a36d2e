// VXLAN termination: UDP datagrams to port 4789 whose VXLAN header has the I flag set
// are stripped of the outer Ethernet, IPv4, UDP and VXLAN headers (50 bytes) so that the
// inner Ethernet frame is what passes up.  The VNI must be one of the VNIs this endpoint
// has learned: the first packet of an unknown VNI below 0x1000 learns it, others drop.
#include "bpf_defs.h"

#define VXLAN_PORT 4789

struct vxlanhdr {
	__be32 flags;   /* 0x08000000: a valid VNI follows */
	__be32 vni;     /* VNI in the high 24 bits */
};

struct vni_entry {
	u64 frames;
	u8 last_inner_dst[ETH_ALEN];
	u16 inner_proto;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, u32);
	__type(value, struct vni_entry);
	__uint(max_entries, 32);
} vnis SEC(".maps");

SEC("xdp")
int xdp_vxlan_decap(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || ip->ihl != 5 || ip->protocol != IPPROTO_UDP)
		return XDP_PASS;
	struct udphdr *udp = (void *)(ip + 1);
	if ((void *)(udp + 1) > data_end || udp->dest != bpf_htons(VXLAN_PORT))
		return XDP_PASS;
	struct vxlanhdr *vx = (void *)(udp + 1);
	struct ethhdr *inner = (void *)(vx + 1);
	if ((void *)(inner + 1) > data_end)
		return XDP_DROP;
	if (!(vx->flags & bpf_htonl(0x08000000)))
		return XDP_DROP;
	u32 vni = bpf_ntohl(vx->vni) >> 8;
	struct vni_entry *e = bpf_map_lookup_elem(&vnis, &vni);
	if (!e) {
		if (vni >= 0x1000)
			return XDP_DROP;
		struct vni_entry fresh = {};
		if (bpf_map_update_elem(&vnis, &vni, &fresh, BPF_NOEXIST))
			return XDP_DROP;
		e = bpf_map_lookup_elem(&vnis, &vni);
		if (!e)
			return XDP_ABORTED;
	}
	e->frames++;
	__builtin_memcpy(e->last_inner_dst, inner->h_dest, ETH_ALEN);
	e->inner_proto = bpf_ntohs(inner->h_proto);
	if (bpf_xdp_adjust_head(ctx, (int)((void *)inner - data)))
		return XDP_ABORTED;
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
