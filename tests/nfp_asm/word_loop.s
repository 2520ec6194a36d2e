; Loop: add up the first 8 little-endian words of the packet into R0 (low word), copying each word
; to the stack with a post-incremented LM pointer; then read stack word 3 back through LM pointer 1
; (three instructions after setting it) into R0's high word.
.prog_type xdp
.stack 32

    csr_rd a5, pkt_addr
    immed b6, 8                                 ; words left
    immed a0, 0
loop:
    mem_read.ctm $in0, a5, 0, 1, ctx_swap
    add a0, a0, $in0
    mov *l$index0++, $in0
    sub b6, b6, 1
    br.ne loop, defer=1
    add a5, a5, 4                               ;   defer slot: runs on both paths
    immed a7, 12
    csr_wr active_lm_addr_1, a7
    nop
    nop
    nop
    mov a1, *l$index1
    halt 2
