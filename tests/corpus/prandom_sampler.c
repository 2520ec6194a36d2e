// Packet sampler: a packet is sampled when bpf_get_prandom_u32 says so (one in two here: a
// coin flip).  Per traffic class (IPv4, IPv6, ARP, VLAN-tagged, other) the program counts the
// packets seen and the packets sampled, and the bytes of the sampled ones, in an array value
// (plain stores).  Everything passes.
#include "bpf_defs.h"

static u32 (*bpf_get_prandom_u32)(void) = (void *)7;

#define ETH_P_ARP 0x0806

struct class_sample {
	u64 seen;
	u64 sampled;
	u64 sampled_bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, u32);
	__type(value, struct class_sample);
	__uint(max_entries, 5);
} samples SEC(".maps");

static __always_inline u32 class_of(u16 proto)
{
	switch (proto) {
	case ETH_P_IP:
		return 0;
	case ETH_P_IPV6:
		return 1;
	case ETH_P_ARP:
		return 2;
	case ETH_P_8021Q:
	case ETH_P_8021AD:
		return 3;
	}
	return 4;
}

SEC("xdp")
int xdp_prandom_sampler(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	u32 cls = class_of(bpf_ntohs(eth->h_proto));
	struct class_sample *s = bpf_map_lookup_elem(&samples, &cls);
	if (!s)
		return XDP_PASS;
	s->seen += 1;
	if (bpf_get_prandom_u32() & 1)
		return XDP_PASS;
	s->sampled += 1;
	s->sampled_bytes += data_end - data;
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
