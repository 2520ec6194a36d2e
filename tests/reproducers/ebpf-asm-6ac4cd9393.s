# xdp_parse
.type xdp
.section xdp
.license GPL
.map l4_seen array key=4 value=8 entries=4
xdp_parse:
    ldxw %r2, [%r1+4]
    ldxw %r3, [%r1+0]
    mov %r1, %r3
    add %r1, 14
    jgt %r1, %r2, +88
    ldxb %r5, [%r3+12]
    ldxb %r4, [%r3+13]
    lsh %r4, 8
    or %r4, %r5
    jsgt %r4, 0xa887, +14
    jeq %r4, 8, +37
    jeq %r4, 129, +14
    mov %r6, 2
    stxw [%r10-4], %r6
    mov %r2, %r10
    add %r2, -4
    lddw %r1, map:l4_seen
    call 1
    jeq %r0, 0, +85
    ldxdw %r1, [%r0+0]
    add %r1, 1
    stxdw [%r0+0], %r1
    jeq %r4, 0xdd86, +35
    jne %r4, 0xa888, -14
    mov %r1, %r3
    add %r1, 18
    jgt %r1, %r2, +64
    ldxb %r5, [%r3+16]
    ldxb %r4, [%r3+17]
    lsh %r4, 8
    or %r4, %r5
    jsgt %r4, 0xa887, +3
    jeq %r4, 8, +13
    jeq %r4, 129, +3
    ja -25
    jeq %r4, 0xdd86, +22
    jne %r4, 0xa888, -27
    mov %r1, %r3
    add %r1, 22
    jgt %r1, %r2, +51
    ldxb %r4, [%r3+20]
    ldxb %r3, [%r3+21]
    lsh %r3, 8
    or %r3, %r4
    jeq %r3, 0xdd86, +13
    jne %r3, 8, -36
    mov %r3, %r1
    add %r3, 20
    jgt %r3, %r2, +42
    ldxb %r4, [%r1+0]
    and %r4, 15
    mov %r3, 5
    jgt %r3, %r4, +38
    lsh %r4, 2
    mov %r3, %r1
    add %r3, %r4
    add %r1, 9
    ja +4
    mov %r3, %r1
    add %r3, 40
    jgt %r3, %r2, +30
    add %r1, 6
    ldxb %r1, [%r1+0]
    jeq %r1, 17, +16
    jne %r1, 6, +40
    add %r3, 20
    jgt %r3, %r2, +24
    mov %r1, 0
    stxw [%r10-4], %r1
    mov %r2, %r10
    add %r2, -4
    lddw %r1, map:l4_seen
    call 1
    jeq %r0, 0, +3
    ldxdw %r1, [%r0+0]
    add %r1, 1
    stxdw [%r0+0], %r1
    mov %r6, 2
    ja +23
    add %r3, 8
    jgt %r3, %r2, +9
    mov %r1, 1
    stxw [%r10-4], %r1
    mov %r2, %r10
    add %r2, -4
    lddw %r1, map:l4_seen
    call 1
    jeq %r0, 0, -12
    ja -16
    mov %r1, 3
    stxw [%r10-4], %r1
    mov %r2, %r10
    add %r2, -4
    lddw %r1, map:l4_seen
    call 1
    jeq %r0, 0, +3
    ldxdw %r1, [%r0+0]
    add %r1, 1
    stxdw [%r0+0], %r1
    mov %r6, 1
    mov %r0, %r6
    exit
    mov %r6, 2
    stxw [%r10-4], %r6
    mov %r2, %r10
    add %r2, -4
    lddw %r1, map:l4_seen
    call 1
    jeq %r0, 0, -10
    ja -96
