/* A Katran-style L4 balancer: per-queue LRU connection tables live in an ARRAY_OF_MAPS
 * (inner-map template from __array(values, ...)), the backends of each VIP in a HASH_OF_MAPS.
 * A flow keeps its backend while its LRU entry lives; new flows pick one by hash. */
#define NFPJIT_XDP_HELPERS
#include "bpf_defs.h"

struct flow_key {
	u32 src;
	u32 dst;
	u16 sport;
	u16 dport;
	u8 proto;
	u8 pad[3];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct flow_key);
	__type(value, u32);
} conn_q0 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct flow_key);
	__type(value, u32);
} conn_q1 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 4);
	__type(key, u32);
	__array(values, typeof(conn_q0));   /* the inner-map template */
} lru_mapping SEC(".maps") = {
	.values = { [0] = &conn_q0, [1] = (void *)&conn_q1 },
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, u32);
	__type(value, u32);
} reals_web SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__uint(max_entries, 8);
	__type(key, u32);
	__array(values, typeof(reals_web));
} vip_reals SEC(".maps") = {
	.values = { [1] = &reals_web },
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, u32);
	__type(value, u64);
} lb_stats SEC(".maps");

static __always_inline void count(u32 what)
{
	u64 *c = bpf_map_lookup_elem(&lb_stats, &what);

	if (c)
		__sync_fetch_and_add(c, 1);
}

SEC("xdp")
int katran_lb(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = data + sizeof(*eth);
	struct flow_key key = {};
	u32 queue = ctx->rx_queue_index;
	u32 vip = 1;
	u32 *real;

	if ((void *)(ip + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP) || ip->ihl != 5)
		return XDP_PASS;
	if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP)
		return XDP_PASS;
	u16 *ports = (void *)(ip + 1);
	if ((void *)(ports + 2) > data_end)
		return XDP_PASS;
	key.src = ip->saddr;
	key.dst = ip->daddr;
	key.sport = ports[0];
	key.dport = ports[1];
	key.proto = ip->protocol;

	void *conns = bpf_map_lookup_elem(&lru_mapping, &queue);
	if (!conns) {
		count(3);
		return XDP_DROP;
	}
	real = bpf_map_lookup_elem(conns, &key);
	if (real) {
		count(0);
		return *real & 1 ? XDP_TX : XDP_PASS;
	}
	if (key.dport != bpf_htons(80))
		vip = 2;
	void *reals = bpf_map_lookup_elem(&vip_reals, &vip);
	if (!reals) {
		count(2);
		return XDP_PASS;
	}
	u32 slot = (key.src ^ key.sport ^ key.dport) & 3;
	u32 *backend = bpf_map_lookup_elem(reals, &slot);
	if (!backend)
		return XDP_ABORTED;
	u32 chosen = *backend + slot;
	*backend += 1;
	bpf_map_update_elem(conns, &key, &chosen, BPF_ANY);
	count(1);
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
