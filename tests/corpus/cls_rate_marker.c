// TC rate marker (a single-rate three-colour marker in the spirit of RFC 2697): a token
// bucket per source IPv4 address, refilled from bpf_ktime_get_ns at 1 byte per 100 us
// with a committed burst of 1000 bytes and an excess burst of 1000 more.  Green packets
// pass with mark 1, yellow ones with mark 2 and tc_classid 1:20, red ones are dropped.
// Each colour's count is kept in the bucket (map-value stores).
#include "bpf_defs.h"

#define CBS 1000
#define EBS 1000
#define NS_PER_BYTE 100000

struct meter {
	u64 committed;
	u64 excess;
	u64 last_ns;
	u32 colour_count[3];
	u32 pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, u32);
	__type(value, struct meter);
	__uint(max_entries, 64);
} meters SEC(".maps");

SEC("tc")
int cls_rate_marker(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end || skb->protocol != bpf_htons(ETH_P_IP))
		return TC_ACT_OK;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return TC_ACT_OK;
	u32 src = ip->saddr;
	u64 len = skb->len;
	u64 now = bpf_ktime_get_ns();
	struct meter *m = bpf_map_lookup_elem(&meters, &src);
	if (!m) {
		struct meter fresh = { .committed = CBS, .excess = EBS, .last_ns = now };
		if (bpf_map_update_elem(&meters, &src, &fresh, BPF_NOEXIST))
			return TC_ACT_OK;
		m = bpf_map_lookup_elem(&meters, &src);
		if (!m)
			return TC_ACT_OK;
	}
	u64 tokens = (now - m->last_ns) / NS_PER_BYTE;
	m->last_ns = now;
	u64 c = m->committed + tokens;
	if (c > CBS) {
		u64 spill = c - CBS;
		c = CBS;
		m->excess = m->excess + spill > EBS ? EBS : m->excess + spill;
	}
	m->committed = c;
	if (m->committed >= len) {
		m->committed -= len;
		m->colour_count[0]++;
		skb->mark = 1;
		return TC_ACT_OK;
	}
	if (m->excess >= len) {
		m->excess -= len;
		m->colour_count[1]++;
		skb->mark = 2;
		skb->tc_classid = 0x10020;
		return TC_ACT_OK;
	}
	m->colour_count[2]++;
	return TC_ACT_SHOT;
}

char _license[] SEC("license") = "GPL";
