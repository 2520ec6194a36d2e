// Maglev-style L4 load balancer: a lookup table of 31 slots (a prime; real tables have thousands) maps a flow hash to
// a backend; established flows are pinned in an LRU connection table so that a table
// change does not move them.  The table is filled lazily: an empty slot gets the backend
// whose Maglev permutation (offset + j * skip) mod 31 reaches it first.  Flows to the VIP
// (10.0.0.2:80 TCP) are re-addressed to the backend's IP and transmitted back.
#include "bpf_defs.h"

#define VIP 0x0a000002
#define RING 31
#define BACKENDS 4

struct flow_key {
	u32 saddr;
	u32 daddr;
	u16 sport;
	u16 dport;
	u32 proto;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, u32);
	__type(value, u32);     /* backend index + 1, 0 = not filled yet */
	__uint(max_entries, RING);
} ring SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct flow_key);
	__type(value, u32);
	__uint(max_entries, 64);
} conns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, u32);
	__type(value, u64);
	__uint(max_entries, BACKENDS);
} per_backend SEC(".maps");

static __always_inline u32 hash32(u32 a, u32 b, u32 c)
{
	/* a few rounds of a Jenkins-like mix */
	a -= c; a ^= (c << 4) | (c >> 28); c += b;
	b -= a; b ^= (a << 6) | (a >> 26); a += c;
	c -= b; c ^= (b << 8) | (b >> 24); b += a;
	a -= c; a ^= (c << 16) | (c >> 16); c += b;
	b -= a; b ^= (a << 19) | (a >> 13); a += c;
	c -= b; c ^= (b << 4) | (b >> 28); b += a;
	return c;
}

/* The backend that claims `slot` first in Maglev's round-robin over the permutations. */
static __always_inline u32 maglev_owner(u32 slot)
{
#pragma clang loop unroll(disable)
	for (u32 j = 0; j < RING; j++) {
#pragma unroll
		for (u32 b = 0; b < BACKENDS; b++) {
			u32 offset = hash32(b, 0x5eed, 1) % RING;
			u32 skip = hash32(b, 0x5eed, 2) % (RING - 1) + 1;
			if ((offset + j * skip) % RING == slot)
				return b;
		}
	}
	return 0;
}

SEC("xdp")
int xdp_maglev_lb(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || ip->ihl != 5 || ip->protocol != IPPROTO_TCP)
		return XDP_PASS;
	struct tcphdr *tcp = (void *)(ip + 1);
	if ((void *)(tcp + 1) > data_end)
		return XDP_PASS;
	if (ip->daddr != bpf_htonl(VIP) || tcp->dest != bpf_htons(80))
		return XDP_PASS;

	struct flow_key fk = { .saddr = ip->saddr, .daddr = ip->daddr, .sport = tcp->source, .dport = tcp->dest,
			       .proto = ip->protocol };
	u32 backend;
	u32 *pinned = bpf_map_lookup_elem(&conns, &fk);
	if (pinned) {
		backend = *pinned;
	} else {
		u32 slot = hash32(fk.saddr, fk.daddr, (u32)fk.sport << 16 | fk.dport) % RING;
		u32 *entry = bpf_map_lookup_elem(&ring, &slot);
		if (!entry)
			return XDP_ABORTED;
		if (*entry == 0)
			*entry = maglev_owner(slot) + 1;
		backend = *entry - 1;
		bpf_map_update_elem(&conns, &fk, &backend, BPF_ANY);
	}
	if (backend >= BACKENDS)
		return XDP_ABORTED;
	u64 *count = bpf_map_lookup_elem(&per_backend, &backend);
	if (count)
		__sync_fetch_and_add(count, 1);

	u32 new_daddr = bpf_htonl(0x0a020001 + backend);
	u32 sum = (u16)~ip->check;
	sum += (u16)~(ip->daddr & 0xffff) + (u16)~(ip->daddr >> 16);
	sum += (new_daddr & 0xffff) + (new_daddr >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	ip->check = ~sum;
	ip->daddr = new_daddr;
	return XDP_TX;
}

char _license[] SEC("license") = "GPL";
