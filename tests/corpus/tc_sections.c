// Old-style TC section names (classifier, action) and a call between functions of one section.
#include "bpf_defs.h"

static __noinline __attribute__((section("classifier"))) int is_small(struct __sk_buff *skb)
{
	return skb->len < 128;
}

SEC("classifier")
int cls_small(struct __sk_buff *skb)
{
	if (is_small(skb))
		skb->priority = 6;
	return TC_ACT_OK;
}

SEC("action")
int act_mark(struct __sk_buff *skb)
{
	skb->mark = skb->hash & 0xff;
	return TC_ACT_OK;
}

char _license[] SEC("license") = "GPL";
