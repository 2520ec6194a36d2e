; Packet counter: counters[rx_queue] += 1 through the firmware map lookup, then XDP_PASS.
; An rx queue outside the array makes the lookup return 0: XDP_DROP.
.prog_type xdp
.stack 8
.map counters array key=4 value=8 entries=4

    csr_rd a5, rx_queue
    mov *l$index0, a5                 ; key on the stack: LM[0..3] (LM pointer 0 = 0 at start)
    immed a4, 0                       ; R2 = key address (LM byte address)
    immed a2, map(counters)           ; R1 = map table id
    br.always 0x3f00, defer=1         ; fw_map_lookup
    load_addr a30, back               ;   defer slot: return address
back:
    or --, a0, b1                     ; R0 == 0: no such entry
    br.eq drop
    immed $out0, 1
    immed $out1, 0
    mem_add64.emem $out0, a1, b0, 2, ctx_swap   ; *value += 1 (40-bit address a1:b0)
    halt 2
drop:
    halt 1
