# ALU32: every operation writes the low 32 bits and zeroes the upper half.
# result: 0x2d9
.type xdp
    lddw r1, 0xffffffff80000001
    mov r2, r1
    add32 r2, 1             # 0x80000002, upper half cleared
    mov r3, r1
    mul32 r3, 3             # 0x80000003
    mov r4, r1
    lsh32 r4, 31            # 0x80000000
    arsh32 r4, 4            # 0xf8000000
    mov r5, r1
    rsh32 r5, 28            # 0x8
    neg32 r5                # 0xfffffff8
    xor32 r5, -1            # 0x7
    mov32 r6, -1            # 0xffffffff (zero-extended)
    sub32 r6, r5            # 0xfffffff8
    and32 r6, 0xff0         # 0xff0
    or32 r6, 0x9            # 0xff9
    mov r0, r2
    rsh r0, 24              # 0x80
    add r0, r3              # 0x80000083
    rsh r0, 20              # 0x800
    add r0, r6              # 0x17f9
    xor r0, r4              # 0xf80017f9
    rsh32 r0, 4             # 0x0f80017f
    mov32 r7, r0
    sub32 r7, 0x0f800000    # 0x17f
    mov r0, r7
    add32 r0, r5            # 0x186
    mul32 r0, 3             # 0x492
    sub32 r0, 0x1b9         # 0x2d9
    exit
