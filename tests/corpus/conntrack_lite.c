// Minimal stateful TCP firewall: connections are tracked in an LRU hash keyed by the
// ordered address/port pair, with a state machine SYN_SENT -> SYN_RECV -> ESTABLISHED ->
// FIN_WAIT -> CLOSED.  A segment that does not start a connection (no SYN) and belongs to
// no tracked one is dropped, an RST removes the entry, and established traffic passes.
#include "bpf_defs.h"

enum { CT_NONE, CT_SYN_SENT, CT_SYN_RECV, CT_ESTABLISHED, CT_FIN_WAIT, CT_CLOSED };

struct ct_key {
	u32 lo_addr;
	u32 hi_addr;
	u16 lo_port;
	u16 hi_port;
};

struct ct_entry {
	u32 state;
	u32 initiator;   /* the address that sent the first SYN */
	u64 packets;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct ct_key);
	__type(value, struct ct_entry);
	__uint(max_entries, 128);
} conntrack SEC(".maps");

SEC("xdp")
int xdp_conntrack(struct xdp_md *ctx)
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
		return XDP_DROP;
	struct ct_key key = {};
	u32 s = bpf_ntohl(ip->saddr), d = bpf_ntohl(ip->daddr);
	u16 sp = bpf_ntohs(tcp->source), dp = bpf_ntohs(tcp->dest);
	if (s < d || (s == d && sp <= dp)) {
		key.lo_addr = s; key.hi_addr = d; key.lo_port = sp; key.hi_port = dp;
	} else {
		key.lo_addr = d; key.hi_addr = s; key.lo_port = dp; key.hi_port = sp;
	}
	struct ct_entry *ct = bpf_map_lookup_elem(&conntrack, &key);
	if (tcp->rst) {
		if (ct)
			bpf_map_delete_elem(&conntrack, &key);
		return ct ? XDP_PASS : XDP_DROP;
	}
	if (!ct) {
		if (!tcp->syn || tcp->ack)
			return XDP_DROP;
		struct ct_entry fresh = { .state = CT_SYN_SENT, .initiator = s, .packets = 1 };
		bpf_map_update_elem(&conntrack, &key, &fresh, BPF_ANY);
		return XDP_PASS;
	}
	ct->packets += 1;
	switch (ct->state) {
	case CT_SYN_SENT:
		if (tcp->syn && tcp->ack && s != ct->initiator)
			ct->state = CT_SYN_RECV;
		else if (tcp->syn && s == ct->initiator)
			break;   /* retransmitted SYN */
		else
			return XDP_DROP;
		break;
	case CT_SYN_RECV:
		if (tcp->ack && !tcp->syn && s == ct->initiator)
			ct->state = CT_ESTABLISHED;
		break;
	case CT_ESTABLISHED:
		if (tcp->fin)
			ct->state = CT_FIN_WAIT;
		break;
	case CT_FIN_WAIT:
		if (tcp->fin || tcp->ack)
			ct->state = CT_CLOSED;
		break;
	default:
		return XDP_DROP;
	}
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
