// Lock-free statistics with the eBPF v3 atomics: per IP protocol, a packet count (fetch-add),
// the OR of every TCP flag byte seen, the AND of every TTL (a "common bits" mask), an XOR
// checksum of the IPv4 ids, the last length stored with an exchange and a "first source"
// claimed with compare-and-exchange.  32-bit and 64-bit forms are both used.  The last
// packet's count is exchanged into a global slot; a packet of a protocol seen less often
// than the one before it is dropped (a rule that gives the fetched old value a use).
// build: -mcpu=v3
#include "bpf_defs.h"

struct proto_stats {
	u64 packets;
	u64 id_xor;
	u32 flags_or;
	u32 ttl_and;
	u32 last_len;
	u32 first_src;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, u32);
	__type(value, struct proto_stats);
	__uint(max_entries, 256);
} by_proto SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, u32);
	__type(value, u64);
	__uint(max_entries, 1);
} previous_total SEC(".maps");

SEC("xdp")
int xdp_atomic_flow_stats(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return XDP_PASS;
	u32 proto = ip->protocol;
	struct proto_stats *s = bpf_map_lookup_elem(&by_proto, &proto);
	if (!s)
		return XDP_PASS;
	u64 before = __sync_fetch_and_add(&s->packets, 1);
	if (before == 0)
		__sync_fetch_and_or(&s->ttl_and, 0xff);   /* the first packet starts the AND mask at all ones */
	__sync_fetch_and_and(&s->ttl_and, (u32)ip->ttl);
	__sync_fetch_and_xor(&s->id_xor, (u64)bpf_ntohs(ip->id) << (before & 31));
	if (proto == IPPROTO_TCP) {
		u8 *tcp = (void *)ip + ip->ihl * 4;
		if ((void *)(tcp + 14) <= data_end)
			__sync_fetch_and_or(&s->flags_or, (u32)tcp[13]);
	}
	__atomic_exchange_n(&s->last_len, (u32)(data_end - data), __ATOMIC_SEQ_CST);
	__sync_val_compare_and_swap(&s->first_src, 0, ip->saddr);
	u32 zero = 0;
	u64 *prev = bpf_map_lookup_elem(&previous_total, &zero);
	if (prev) {
		u64 old = __atomic_exchange_n(prev, before + 1, __ATOMIC_SEQ_CST);
		if (old > before + 1)
			return XDP_DROP;
	}
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
