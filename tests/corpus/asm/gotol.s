# gotol (ja32, v4): an unconditional jump with its offset in imm, by number and to a label.
# rx_queue_index is 0 when the program runs, but unknown when it is verified, so every path is live.
# result: 0x2a
.type xdp
    mov r0, 1
    ldxw r6, [r1+16]        # xdp_md.rx_queue_index
    jne r6, 0, other
    ja32 +2
other:
    mov r0, 99
    exit
    add r0, 40
    jeq r6, 7, other2
    gotol done
other2:
    mov r0, 98
    exit
done:
    add r0, 1
    exit
