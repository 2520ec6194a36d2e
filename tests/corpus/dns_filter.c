// DNS query filter on UDP port 53: malformed headers, responses arriving at the server
// port, queries with more than one question, a question starting with a compression
// pointer and ANY (255) queries are dropped.  The first question's name (at most 32 bytes
// up to its zero byte, one bounded loop) is hashed (FNV-1a, case folded), and a name
// queried more than 3 times is dropped from then on (a per-name counter in an LRU hash).
// Query types are counted.
#include "bpf_defs.h"

#define MAX_NAME 32

struct dnshdr {
	__be16 id;
	__be16 flags;
	__be16 qdcount;
	__be16 ancount;
	__be16 nscount;
	__be16 arcount;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, u32);
	__type(value, u32);
	__uint(max_entries, 128);
} name_hits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, u16);
	__type(value, u64);
	__uint(max_entries, 32);
} qtypes SEC(".maps");

SEC("xdp")
int xdp_dns_filter(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || ip->protocol != IPPROTO_UDP || ip->ihl != 5)
		return XDP_PASS;
	struct udphdr *udp = (void *)(ip + 1);
	if ((void *)(udp + 1) > data_end || udp->dest != bpf_htons(53))
		return XDP_PASS;
	struct dnshdr *dns = (void *)(udp + 1);
	if ((void *)(dns + 1) > data_end)
		return XDP_DROP;
	u16 flags = bpf_ntohs(dns->flags);
	if (flags & 0x8000)          /* QR: a response sent to the server port */
		return XDP_DROP;
	if ((flags >> 11) & 0xf)     /* only standard queries */
		return XDP_DROP;
	if (dns->qdcount != bpf_htons(1))
		return XDP_DROP;

	u8 *p = (void *)(dns + 1);
	if ((void *)(p + 1) > data_end || (*p & 0xc0))
		return XDP_DROP;   /* a compression pointer cannot start a question */
	u32 hash = 2166136261u;
	u32 off;
	int done = 0;
#pragma clang loop unroll(disable)
	for (off = 0; off < MAX_NAME; off++) {
		u8 *c = p + off;
		if ((void *)(c + 1) > data_end)
			return XDP_DROP;
		u8 ch = *c;
		if (ch == 0) {
			done = 1;
			break;
		}
		ch |= ((u8)(ch - 'A') < 26) << 5;   /* fold case without a branch */
		hash = (hash ^ ch) * 16777619u;
	}
	if (!done)
		return XDP_DROP;
	__be16 *qtype_p = (void *)(p + off + 1);
	if ((void *)(qtype_p + 2) > data_end)
		return XDP_DROP;
	u16 qtype = bpf_ntohs(*qtype_p);

	u64 *tc = bpf_map_lookup_elem(&qtypes, &qtype);
	if (tc) {
		*tc += 1;
	} else {
		u64 one = 1;
		bpf_map_update_elem(&qtypes, &qtype, &one, BPF_NOEXIST);
	}
	if (qtype == 255)
		return XDP_DROP;

	u32 *hits = bpf_map_lookup_elem(&name_hits, &hash);
	if (!hits) {
		u32 one = 1;
		bpf_map_update_elem(&name_hits, &hash, &one, BPF_ANY);
		return XDP_PASS;
	}
	*hits += 1;
	return *hits > 3 ? XDP_DROP : XDP_PASS;
}

char _license[] SEC("license") = "GPL";
