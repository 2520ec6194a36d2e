// Trunk-port VLAN untagging: the outer 802.1Q or 802.1ad tag is removed (MACs moved back
// by 4 bytes, head shrunk) when its VID is one this port carries (1..999); frames in
// other VLANs are dropped.  Each VID's frame and byte counts live in a hash map entry
// created on first sight.
#include "bpf_defs.h"

struct vid_stats {
	u64 frames;
	u64 bytes;
	u16 last_pcp;
	u16 inner_tagged;
	u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, u16);
	__type(value, struct vid_stats);
	__uint(max_entries, 128);
} per_vid SEC(".maps");

SEC("xdp")
int xdp_vlan_pop(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return XDP_DROP;
	if (eth->h_proto != bpf_htons(ETH_P_8021Q) && eth->h_proto != bpf_htons(ETH_P_8021AD))
		return XDP_PASS;
	struct vlan_hdr *tag = (void *)(eth + 1);
	if ((void *)(tag + 1) > data_end)
		return XDP_DROP;
	u16 tci = bpf_ntohs(tag->h_vlan_TCI);
	u16 vid = tci & 0x0fff;
	if (vid == 0 || vid >= 1000)
		return XDP_DROP;

	struct vid_stats *s = bpf_map_lookup_elem(&per_vid, &vid);
	if (!s) {
		struct vid_stats fresh = {};
		bpf_map_update_elem(&per_vid, &vid, &fresh, BPF_NOEXIST);
		s = bpf_map_lookup_elem(&per_vid, &vid);
		if (!s)
			return XDP_ABORTED;
	}
	s->frames += 1;
	s->bytes += data_end - data;
	s->last_pcp = tci >> 13;
	s->inner_tagged = tag->h_vlan_encapsulated_proto == bpf_htons(ETH_P_8021Q);

	struct ethhdr moved;
	__builtin_memcpy(moved.h_dest, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(moved.h_source, eth->h_source, ETH_ALEN);
	moved.h_proto = tag->h_vlan_encapsulated_proto;
	if (bpf_xdp_adjust_head(ctx, (int)sizeof(struct vlan_hdr)))
		return XDP_ABORTED;
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	if ((void *)(eth + 1) > data_end)
		return XDP_ABORTED;
	*eth = moved;
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
