// Drop IPv4 TCP segments to ports 80 and 8080; count drops per destination port.
// The counter is bumped with an atomic add: the NIC does not take plain stores through map value pointers.
#include "bpf_defs.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, u16);
	__type(value, u64);
	__uint(max_entries, 64);
} drop_count SEC(".maps");

SEC("xdp")
int xdp_drop_tcp_ports(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return XDP_PASS;
	if (ip->protocol != IPPROTO_TCP)
		return XDP_PASS;
	struct tcphdr *tcp = (void *)ip + ip->ihl * 4;
	if ((void *)(tcp + 1) > data_end)
		return XDP_PASS;
	u16 port = bpf_ntohs(tcp->dest);
	if (port != 80 && port != 8080)
		return XDP_PASS;
	u64 *count = bpf_map_lookup_elem(&drop_count, &port);
	if (count) {
		__sync_fetch_and_add(count, 1);
	} else {
		u64 one = 1;
		bpf_map_update_elem(&drop_count, &port, &one, BPF_ANY);
	}
	return XDP_DROP;
}

char _license[] SEC("license") = "GPL";
