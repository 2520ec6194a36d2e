# Sign-extending loads (v4) ldxsb/ldxsh/ldxsw next to the zero-extending ones, on the stack.
# result: 0x7e1f0d
.type xdp
    lddw r1, 0x80f1f2f3f4f5f6f7
    stxdw [r10-8], r1
    ldxsb r2, [r10-8]       # s8(0xf7) = -9
    ldxb r3, [r10-8]        # 0xf7
    ldxsh r4, [r10-6]       # s16(0xf4f5) = -2827
    ldxh r5, [r10-6]        # 0xf4f5
    ldxsw r6, [r10-4]       # s32(0x80f1f2f3)
    ldxw r7, [r10-4]        # 0x80f1f2f3
    mov r0, r3
    sub r0, r2              # 0xf7 + 9 = 0x100
    add r0, r5
    sub r0, r4              # + 0xf4f5 + 2827
    sub r7, r6              # 0x100000000 (the difference between zero and sign extension)
    rsh r7, 20              # 0x1000
    add r0, r7
    arsh r6, 8              # 0xffffffff80f1f2
    xor r0, r6
    mov r1, r0
    rsh r1, 32
    xor r0, r1
    mov32 r0, r0
    exit
