// Self-learning IPv4 blocklist in an LPM trie: a TCP SYN to a honeypot port (23 or 2323)
// puts the sender's /24 on the list; later packets from any address in a listed prefix
// are dropped and counted per prefix.  A /16 "allow" entry (inserted on first use) is
// shorter than the /24s, so the longest match decides.
#include "bpf_defs.h"

struct v4_prefix {
	u32 prefixlen;
	u8 addr[4];
};

struct prefix_info {
	u64 hits;
	u32 blocked;
	u32 learned_from_port;
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct v4_prefix);
	__type(value, struct prefix_info);
	__uint(max_entries, 256);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} prefixes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, u32);
	__type(value, u64);
	__uint(max_entries, 4);
} totals SEC(".maps");

static __always_inline void bump(u32 idx)
{
	u64 *v = bpf_map_lookup_elem(&totals, &idx);
	if (v)
		__sync_fetch_and_add(v, 1);
}

SEC("xdp")
int xdp_lpm_auto_block(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return XDP_PASS;

	struct v4_prefix key = { .prefixlen = 16 };
	__builtin_memcpy(key.addr, &ip->saddr, 4);
	key.addr[2] = key.addr[3] = 0;
	if (!bpf_map_lookup_elem(&prefixes, &key)) {
		struct prefix_info allow = {};
		bpf_map_update_elem(&prefixes, &key, &allow, BPF_NOEXIST);
	}

	key.prefixlen = 32;
	__builtin_memcpy(key.addr, &ip->saddr, 4);
	struct prefix_info *hit = bpf_map_lookup_elem(&prefixes, &key);
	if (hit) {
		hit->hits += 1;
		if (hit->blocked) {
			bump(0);
			return XDP_DROP;
		}
	}
	if (ip->protocol != IPPROTO_TCP)
		return XDP_PASS;
	struct tcphdr *tcp = (void *)ip + ip->ihl * 4;
	if ((void *)(tcp + 1) > data_end)
		return XDP_PASS;
	u16 port = bpf_ntohs(tcp->dest);
	if (tcp->syn && !tcp->ack && (port == 23 || port == 2323)) {
		struct prefix_info block = { .blocked = 1, .learned_from_port = port };
		key.prefixlen = 24;
		key.addr[3] = 0;
		if (bpf_map_update_elem(&prefixes, &key, &block, BPF_NOEXIST) == 0)
			bump(1);
		return XDP_DROP;
	}
	bump(2);
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
