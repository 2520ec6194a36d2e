/* Keep the last sources seen in a QUEUE (oldest overwritten) and a STACK (bounded); every
 * fourth packet pops one of each and peeks at the next. */
#define NFPJIT_XDP_HELPERS
#include "bpf_defs.h"

struct {
	__uint(type, BPF_MAP_TYPE_QUEUE);
	__uint(max_entries, 8);
	__type(value, u32);
} recent SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK);
	__uint(max_entries, 4);
	__type(value, u64);
} undo SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__type(key, u32);
	__type(value, u64);
} queue_stats SEC(".maps");

SEC("xdp")
int xdp_queue_user(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	u32 k0 = 0, k1 = 1, k2 = 2;
	u64 *pkts = bpf_map_lookup_elem(&queue_stats, &k0);
	u64 *fails = bpf_map_lookup_elem(&queue_stats, &k1);
	u64 *last = bpf_map_lookup_elem(&queue_stats, &k2);

	if (!pkts || !fails || !last)
		return XDP_ABORTED;
	u64 n = ++*pkts;
	u32 src = 0;
	if ((void *)(ip + 1) <= data_end && eth->h_proto == bpf_htons(ETH_P_IP))
		src = ip->saddr;
	bpf_map_push_elem(&recent, &src, BPF_EXIST);
	if (bpf_map_push_elem(&undo, &n, 0))
		(*fails)++;
	if (n % 4 == 0) {
		u32 old;
		u64 top;

		if (bpf_map_pop_elem(&recent, &old))
			(*fails)++;
		if (bpf_map_pop_elem(&undo, &top) == 0)
			*last = top;
		if (bpf_map_peek_elem(&recent, &old) == 0 && old == src)
			return XDP_DROP;
	}
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
