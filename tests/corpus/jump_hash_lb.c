// L4 load balancer with jump consistent hashing (Lamport/Veach style, integer form).
// Flows to the virtual IP 10.0.0.2 on TCP/UDP port 80 or 443 pick a backend from the
// 5-tuple: the hash uses 64-bit multiplications by large odd constants and the jump
// step divides by a variable.  The destination address is rewritten (checksum updated
// incrementally), the MACs are swapped and the frame goes back out (XDP_TX).
#include "bpf_defs.h"

#define VIP 0x0a000002
#define NUM_BACKENDS 5

const volatile u32 backend_addr[8] = {
	0x0a010001, 0x0a010002, 0x0a010003, 0x0a010004, 0x0a010005, 0x0a010006, 0x0a010007, 0x0a010008,
};
const volatile u32 num_backends = NUM_BACKENDS;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, u32);
	__type(value, u64);
	__uint(max_entries, 8);
} backend_packets SEC(".maps");

static __always_inline u64 mix64(u64 h)
{
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdULL;
	h ^= h >> 33;
	h *= 0xc4ceb9fe1a85ec53ULL;
	h ^= h >> 33;
	return h;
}

/* Jump consistent hash: the bucket in [0, buckets) for key, moving few keys when buckets grows. */
static __always_inline u32 jump_hash(u64 key, u32 buckets)
{
	s64 b = -1, j = 0;
#pragma clang loop unroll(disable)
	for (int i = 0; i < 16 && j < buckets; i++) {
		b = j;
		key = key * 2862933555777941757ULL + 1;
		j = (u64)(b + 1) * (1ULL << 31) / ((key >> 33) + 1);
	}
	return (u32)b;
}

static __always_inline u16 csum_replace4(u16 check, u32 from, u32 to)
{
	u32 sum = (u16)~check;
	sum += (u16)~(from & 0xffff) + (u16)~(from >> 16);
	sum += (to & 0xffff) + (to >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (u16)~sum;
}

SEC("xdp")
int xdp_jump_hash_lb(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return XDP_PASS;
	struct iphdr *ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end || ip->ihl != 5 || ip->daddr != bpf_htonl(VIP))
		return XDP_PASS;
	if (ip->protocol != IPPROTO_TCP && ip->protocol != IPPROTO_UDP)
		return XDP_PASS;
	__be16 *ports = (void *)(ip + 1);
	if ((void *)(ports + 2) > data_end)
		return XDP_PASS;
	u16 dport = bpf_ntohs(ports[1]);
	if (dport != 80 && dport != 443)
		return XDP_PASS;

	u64 key = ((u64)ip->saddr << 32 | ip->daddr) ^ ((u64)ports[0] << 16 | ports[1]) ^ ((u64)ip->protocol << 56);
	u32 n = num_backends;
	if (n == 0 || n > 8)
		return XDP_ABORTED;
	u32 b = jump_hash(mix64(key), n);
	if (b >= 8)
		return XDP_ABORTED;
	u32 to = bpf_htonl(backend_addr[b]);
	ip->check = csum_replace4(ip->check, ip->daddr, to);
	ip->daddr = to;

	u8 tmp[ETH_ALEN];
	__builtin_memcpy(tmp, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, tmp, ETH_ALEN);

	u64 *count = bpf_map_lookup_elem(&backend_packets, &b);
	if (count)
		*count += 1;
	return XDP_TX;
}

char _license[] SEC("license") = "GPL";
