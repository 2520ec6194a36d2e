// TC rate marker: count packets per flow (keyed by the receive hash and the protocol) and mark
// the packets of a flow past its first four with skb->mark = 0xbad; the previous mark (set by an
// earlier filter) chooses whether counting applies at all.
#include "bpf_defs.h"

struct flow_key {
	u32 hash;
	u32 protocol;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct flow_key);
	__type(value, u64);
	__uint(max_entries, 256);
} flow_packets SEC(".maps");

SEC("tc")
int tc_flow_marker(struct __sk_buff *skb)
{
	if (skb->mark == 0xfeed)
		return TC_ACT_OK;       /* an earlier filter said: exempt */
	struct flow_key key = { .hash = skb->hash, .protocol = skb->protocol };
	u64 *count = bpf_map_lookup_elem(&flow_packets, &key);
	if (!count) {
		u64 one = 1;
		bpf_map_update_elem(&flow_packets, &key, &one, BPF_ANY);
		return TC_ACT_OK;
	}
	u64 seen = *count + 1;          /* a copy: the NIC writes map values through the update routine */
	bpf_map_update_elem(&flow_packets, &key, &seen, BPF_EXIST);
	if (seen > 4) {
		skb->mark = 0xbad;
		skb->tc_index = skb->len & 0xffff;
	}
	return TC_ACT_OK;
}

char _license[] SEC("license") = "GPL";
