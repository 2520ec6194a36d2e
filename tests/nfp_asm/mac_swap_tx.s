; Swap the Ethernet destination and source MAC addresses and send the packet back out (XDP_TX).
; Bytes d0..d5 s0..s5 are the words w0 = d0d1d2d3, w1 = d4d5s0s1, w2 = s2s3s4s5 (little-endian);
; the result is (w2:w1)>>16, (w0:w2)>>16, (w1:w0)>>16.
.prog_type xdp

    csr_rd a5, pkt_addr
    mem_read.ctm $in0, a5, 0, 3, ctx_swap
    mov b0, $in0
    mov b1, $in1
    mov b2, $in2
    dbl_shf $out0, $in2, b1, 16
    dbl_shf $out1, $in0, b2, 16
    dbl_shf $out2, $in1, b0, 16
    mem_write.ctm $out0, a5, 0, 3, ctx_swap
    halt 3
