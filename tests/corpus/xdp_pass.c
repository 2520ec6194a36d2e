// The smallest XDP program: let every packet through.
#include "bpf_defs.h"

SEC("xdp")
int xdp_pass_prog(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
