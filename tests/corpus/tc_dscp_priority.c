// TC classifier: map the IPv4 DSCP to skb->priority and tc_classid (a diffserv class table),
// drop TCP/UDP to port 23 (telnet), leave the class decision in cb[0] for a later action.
#include "bpf_defs.h"

#ifndef TC_ACT_PIPE
#define TC_ACT_PIPE 3
#endif

SEC("tc")
int tc_dscp_priority(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return TC_ACT_OK;
	if (skb->protocol != bpf_htons(ETH_P_IP))
		return TC_ACT_PIPE;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return TC_ACT_OK;
	u32 dscp = ip->tos >> 2;
	u32 prio = dscp >= 46 ? 6 : dscp >= 32 ? 5 : dscp >= 8 ? 3 : 0;
	skb->priority = prio;
	skb->tc_classid = (1 << 16) | (prio + 10);
	skb->cb[0] = dscp;
	if (ip->protocol == IPPROTO_TCP || ip->protocol == IPPROTO_UDP) {
		struct udphdr *l4 = (void *)ip + ip->ihl * 4;
		if ((void *)(l4 + 1) > data_end)
			return TC_ACT_OK;
		if (l4->dest == bpf_htons(23))
			return TC_ACT_SHOT;
		skb->cb[1] = bpf_ntohs(l4->dest);
	}
	return TC_ACT_OK;
}

char _license[] SEC("license") = "GPL";
