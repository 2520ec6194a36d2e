// SYN-flood counter: per source address (an LRU hash), count SYNs and completed handshakes
// (the ACK without SYN that follows).  A source with more than 4 half-open attempts is
// dropped until it completes one; RSTs and non-TCP traffic pass.  Global counters for SYN,
// SYN-ACK and dropped SYN are kept in a plain array.
#include "bpf_defs.h"

struct src_state {
	u32 syns;
	u32 acks;
	u32 dropped;
	u32 last_port;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, u32);
	__type(value, struct src_state);
	__uint(max_entries, 256);
} sources SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, u32);
	__type(value, u64);
	__uint(max_entries, 3);
} syn_totals SEC(".maps");

static __always_inline void total(u32 idx)
{
	u64 *v = bpf_map_lookup_elem(&syn_totals, &idx);
	if (v)
		*v += 1;
}

SEC("xdp")
int xdp_syn_flood_guard(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || ip->protocol != IPPROTO_TCP)
		return XDP_PASS;
	struct tcphdr *tcp = (void *)ip + ip->ihl * 4;
	if ((void *)(tcp + 1) > data_end)
		return XDP_PASS;
	if (tcp->rst)
		return XDP_PASS;
	u32 src = ip->saddr;
	struct src_state *st = bpf_map_lookup_elem(&sources, &src);
	if (tcp->syn && tcp->ack) {
		total(1);
		return XDP_PASS;
	}
	if (tcp->syn) {
		total(0);
		if (!st) {
			struct src_state fresh = { .syns = 1, .last_port = bpf_ntohs(tcp->dest) };
			bpf_map_update_elem(&sources, &src, &fresh, BPF_NOEXIST);
			return XDP_PASS;
		}
		st->syns += 1;
		st->last_port = bpf_ntohs(tcp->dest);
		if (st->syns > st->acks + 4) {
			st->dropped += 1;
			total(2);
			return XDP_DROP;
		}
		return XDP_PASS;
	}
	if (tcp->ack && st && st->acks < st->syns)
		st->acks += 1;
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
