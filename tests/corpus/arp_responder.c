// ARP responder (proxy ARP for a small address pool): an Ethernet/IPv4 ARP request for
// 10.0.0.2..10.0.0.9 is answered in place with a reply from a locally administered MAC
// derived from the address; requests for other addresses pass, gratuitous ARPs are
// learned (sender IP -> sender MAC in a hash map) and dropped.
#include "bpf_defs.h"

#define ETH_P_ARP 0x0806

struct arphdr_eth {
	__be16 htype;
	__be16 ptype;
	u8 hlen;
	u8 plen;
	__be16 op;
	u8 sha[ETH_ALEN];
	u8 spa[4];
	u8 tha[ETH_ALEN];
	u8 tpa[4];
} __attribute__((packed));

struct mac {
	u8 addr[ETH_ALEN];
	u16 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, u32);
	__type(value, struct mac);
	__uint(max_entries, 64);
} neighbours SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, u32);
	__type(value, u64);
	__uint(max_entries, 1);
} replies SEC(".maps");

SEC("xdp")
int xdp_arp_responder(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_ARP))
		return XDP_PASS;
	struct arphdr_eth *arp = (void *)(eth + 1);
	if ((void *)(arp + 1) > data_end)
		return XDP_DROP;
	if (arp->htype != bpf_htons(1) || arp->ptype != bpf_htons(ETH_P_IP) || arp->hlen != 6 || arp->plen != 4)
		return XDP_PASS;
	if (arp->op != bpf_htons(1))
		return XDP_PASS;
	u32 spa, tpa;
	__builtin_memcpy(&spa, arp->spa, 4);
	__builtin_memcpy(&tpa, arp->tpa, 4);
	if (spa == tpa) {   /* gratuitous: learn the sender */
		struct mac m = {};
		__builtin_memcpy(m.addr, arp->sha, ETH_ALEN);
		bpf_map_update_elem(&neighbours, &spa, &m, BPF_ANY);
		return XDP_DROP;
	}
	u32 host = bpf_ntohl(tpa);
	if (host < 0x0a000002 || host > 0x0a000009)
		return XDP_PASS;

	u8 mine[ETH_ALEN] = { 0x02, 0x00, 0x5e, 0x10, 0x00, (u8)host };
	arp->op = bpf_htons(2);
	__builtin_memcpy(arp->tha, arp->sha, ETH_ALEN);
	__builtin_memcpy(arp->tpa, arp->spa, 4);
	__builtin_memcpy(arp->sha, mine, ETH_ALEN);
	__builtin_memcpy(arp->spa, &tpa, 4);
	__builtin_memcpy(eth->h_dest, arp->tha, ETH_ALEN);
	__builtin_memcpy(eth->h_source, mine, ETH_ALEN);
	u32 zero = 0;
	u64 *n = bpf_map_lookup_elem(&replies, &zero);
	if (n)
		*n += 1;
	return XDP_TX;
}

char _license[] SEC("license") = "GPL";
