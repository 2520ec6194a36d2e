; Fill in the IPv4 header checksum (header at packet offset 14, 20 bytes, checksum field zero on input).
; The one's-complement sum does not depend on byte order, so the little-endian words are summed as
; they are and the 16-bit result is stored back in the same order.
.prog_type xdp

    csr_rd a5, pkt_addr
    mem_read.ctm $in0, a5, 14, 5, ctx_swap      ; the five header words
    mov b3, $in0
    add b3, $in1, b3
    addc b3, $in2, b3
    addc b3, $in3, b3
    addc b3, $in4, b3
    addc b3, 0, b3                              ; end-around carries
    addc b3, 0, b3
    immed a20, 0xffff
    and a6, a20, b3                             ; fold 32 -> 16 bits, twice
    alu_shf b6, a6, add, b3, shr 16
    and a7, a20, b6
    alu_shf b7, a7, add, b6, shr 16
    andnot b8, a20, b7                          ; ~sum & 0xffff
    alu_shf $out0, $in2, or, b8, shl 16         ; header bytes 8..11 with the checksum in 10..11
    mem_write.ctm $out0, a5, 22, 1, ctx_swap
    halt 2
