// Port filter with per-CPU statistics: TCP/UDP datagrams to a blocked port are dropped.
// Each verdict has a per-CPU {packets, bytes} slot, bumped with plain stores (no atomics
// are needed: a CPU owns its slot), the way most XDP statistics examples count.
#include "bpf_defs.h"

struct verdict_stats {
	u64 packets;
	u64 bytes;
};

enum { STAT_PASS, STAT_DROP, STAT_NOT_IP, STAT_MAX };

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, u32);
	__type(value, struct verdict_stats);
	__uint(max_entries, STAT_MAX);
} verdicts SEC(".maps");

static __always_inline int account(u32 slot, u64 len, int action)
{
	struct verdict_stats *s = bpf_map_lookup_elem(&verdicts, &slot);
	if (s) {
		s->packets += 1;
		s->bytes += len;
	}
	return action;
}

static __always_inline int blocked(u16 port)
{
	switch (port) {
	case 23:    /* telnet */
	case 135:   /* msrpc */
	case 445:   /* smb */
	case 1900:  /* ssdp */
	case 11211: /* memcached */
		return 1;
	}
	return 0;
}

SEC("xdp")
int xdp_pcpu_port_filter(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	u64 len = data_end - data;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return account(STAT_NOT_IP, len, XDP_PASS);
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || ip->ihl < 5)
		return account(STAT_NOT_IP, len, XDP_PASS);
	if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP)
		return account(STAT_PASS, len, XDP_PASS);
	if (ip->frag_off & bpf_htons(0x1fff))   /* later fragments carry no ports */
		return account(STAT_PASS, len, XDP_PASS);
	__be16 *ports = (void *)ip + ip->ihl * 4;
	if ((void *)(ports + 2) > data_end)
		return account(STAT_PASS, len, XDP_PASS);
	if (blocked(bpf_ntohs(ports[1])))
		return account(STAT_DROP, len, XDP_DROP);
	return account(STAT_PASS, len, XDP_PASS);
}

char _license[] SEC("license") = "GPL";
