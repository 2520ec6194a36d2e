/* Redirect through a DEVMAP, a DEVMAP_HASH and a CPUMAP by packet class, with the flags'
 * fallback action, a broadcast, and a devmap lookup.  In a test run the slots are empty
 * unless user space fills them (a devmap slot needs a real device, e.g. lo). */
#define NFPJIT_XDP_HELPERS
#include "bpf_defs.h"

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, 8);
	__type(key, u32);
	__type(value, u32);
} tx_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, 8);
	__type(key, u32);
	__type(value, u32);
} tx_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_CPUMAP);
	__uint(max_entries, 4);
	__type(key, u32);
	__type(value, u32);
} cpus SEC(".maps");

SEC("xdp")
int xdp_redirect_maps(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	u32 port = 0;

	if ((void *)(eth + 1) > data_end)
		return XDP_DROP;
	if (eth->h_dest[0] & 1)       /* multicast and broadcast frames: flood */
		return bpf_redirect_map(&tx_ports, 0, BPF_F_BROADCAST | BPF_F_EXCLUDE_INGRESS);
	if (eth->h_proto != bpf_htons(ETH_P_IP) || (void *)(ip + 1) > data_end)
		return bpf_redirect_map(&tx_hash, eth->h_source[5], XDP_DROP);
	if (ip->protocol == IPPROTO_UDP)
		return bpf_redirect_map(&cpus, ip->daddr & 3, XDP_PASS);
	port = ip->daddr >> 24;
	u32 *ifindex = bpf_map_lookup_elem(&tx_ports, &port);
	if (ifindex && *ifindex == 1)
		return XDP_TX;
	return bpf_redirect_map(&tx_ports, port & 7, ip->ttl & 3);
}

char _license[] SEC("license") = "GPL";
