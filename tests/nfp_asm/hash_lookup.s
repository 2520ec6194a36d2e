; Per-source verdict: look the IPv4 source address up in a hash map through the firmware routine;
; a hit returns the verdict stored in the value's first word, a miss passes the packet.
.prog_type xdp
.stack 8
.map verdicts hash key=4 value=8 entries=16

    csr_rd a5, pkt_addr
    mem_read.ctm $in0, a5, 26, 1, ctx_swap      ; IPv4 source address (packet offset 26)
    mov *l$index0, $in0                         ; key on the stack, packet byte order
    immed a4, 0
    immed a2, map(verdicts)
    br.always 0x3f00, defer=2                   ; fw_map_lookup
    load_addr a30, back
    nop
back:
    or --, a0, b1
    br.eq miss
    mem_read.emem $in0, a1, b0, 2, ctx_swap     ; the value
    halt $in0
miss:
    halt 2
