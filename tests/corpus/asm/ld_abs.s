# Legacy packet loads (TC): ldabs/ldind read big-endian packet bytes from the skb in r6 into r0.
# (The kernel reports only the low 32 bits of r0 for TC programs.)
# packet: 00112233445566778899aabb0800450000540000400040010000c0a80001c0a800020102030405060708090a0b0c0d0e0f1011121314151617181920
# result: 0x1f252100d
.type tc
    mov r6, r1              # ld_abs/ld_ind use the context in r6
    ldabsh 12               # EtherType 0x0800
    mov r7, r0
    ldabsb 14               # 0x45
    mov r8, r0
    and r8, 0xf
    lsh r8, 2               # IP header length: 20
    ldindw r8, 14           # first word after the IP header: 0x01020304
    add r7, r0
    mov r9, 26
    ldindw r9, 4            # destination address 0xc0a80002
    xor r7, r0
    ldabsw 26               # source address 0xc0a80001
    add r7, r0
    ldindh r8, 18           # bytes 38..39: 0x0506
    add r7, r0
    ldindb r8, 20           # byte 40: 0x07
    lsh r0, 28
    add r7, r0
    mov r0, r7
    exit
