// TC direct-action classifier: mark IPv4 UDP, drop oversized frames.
#include "bpf_defs.h"

SEC("tc")
int tc_classify(struct __sk_buff *skb)
{
	if (skb->len > 1514)
		return TC_ACT_SHOT;
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end)
		return TC_ACT_OK;
	if (skb->protocol != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return TC_ACT_OK;
	if (ip->protocol == IPPROTO_UDP)
		skb->mark = 0x42 + skb->ingress_ifindex;
	skb->tc_classid = skb->vlan_present ? skb->vlan_tci & 0xfff : 0;
	return TC_ACT_OK;
}

char _license[] SEC("license") = "GPL";
