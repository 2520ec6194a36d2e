// Access-port VLAN tagging: untagged frames get an 802.1Q tag (VID chosen by EtherType:
// IPv4 -> 100, IPv6 -> 200, anything else -> 300, priority 5 for TCP), by growing the
// head by 4 bytes and moving the MAC addresses forward.  Tagged frames are left alone.
#include "bpf_defs.h"

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, u32);
	__type(value, u64);
	__uint(max_entries, 2);   /* [0] tagged here, [1] already tagged */
} tagging SEC(".maps");

SEC("xdp")
int xdp_vlan_push(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return XDP_DROP;
	u16 proto = bpf_ntohs(eth->h_proto);
	u32 idx = 1;
	if (proto == ETH_P_8021Q || proto == ETH_P_8021AD) {
		u64 *seen = bpf_map_lookup_elem(&tagging, &idx);
		if (seen)
			*seen += 1;
		return XDP_PASS;
	}
	u16 vid = proto == ETH_P_IP ? 100 : proto == ETH_P_IPV6 ? 200 : 300;
	u16 pcp = 0;
	if (proto == ETH_P_IP) {
		struct iphdr *ip = (void *)(eth + 1);
		if ((void *)(ip + 1) <= data_end && ip->protocol == IPPROTO_TCP)
			pcp = 5;
	}
	struct ethhdr saved = *eth;
	if (bpf_xdp_adjust_head(ctx, -(int)sizeof(struct vlan_hdr)))
		return XDP_ABORTED;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	struct vlan_hdr *tag = (void *)(eth + 1);
	if ((void *)(tag + 1) > data_end)
		return XDP_ABORTED;
	__builtin_memcpy(eth->h_dest, saved.h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_source, saved.h_source, ETH_ALEN);
	eth->h_proto = bpf_htons(ETH_P_8021Q);
	tag->h_vlan_TCI = bpf_htons(pcp << 13 | vid);
	tag->h_vlan_encapsulated_proto = saved.h_proto;
	idx = 0;
	u64 *pushed = bpf_map_lookup_elem(&tagging, &idx);
	if (pushed)
		*pushed += 1;
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
