// TC classifier: pick the transmit queue from the frame (broadcast and multicast frames to queue 0,
// IPv6 to queue 2, the rest by a length class), pass the packet type and ingress port on in cb[],
// and hand VLAN-less small frames on unchanged (TC_ACT_UNSPEC).
#include "bpf_defs.h"

#ifndef TC_ACT_UNSPEC
#define TC_ACT_UNSPEC (-1)
#endif

SEC("classifier")
int tc_queue_pick(struct __sk_buff *skb)
{
	skb->cb[2] = skb->pkt_type;
	skb->cb[3] = skb->ingress_ifindex + (skb->ifindex << 8);
	if (skb->pkt_type == 1 || skb->pkt_type == 2)          /* PACKET_BROADCAST, PACKET_MULTICAST */
		skb->queue_mapping = 0;
	else if (skb->protocol == bpf_htons(ETH_P_IPV6))
		skb->queue_mapping = 2;
	else
		skb->queue_mapping = skb->len > 512 ? 3 : 1;
	if (!skb->vlan_present && skb->len < 64)
		return TC_ACT_UNSPEC;
	skb->cb[4] = skb->queue_mapping | (skb->napi_id << 16);
	return TC_ACT_OK;
}

char _license[] SEC("license") = "GPL";
