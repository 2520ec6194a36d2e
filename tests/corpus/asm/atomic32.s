# Every 32-bit atomic on a 4-byte stack slot.  Fetching forms and cmpxchg zero-extend the old
# 32-bit value into the register; upper register bits of the operand are ignored.
# result: 0x8007e9cb
.type xdp
    mov r1, 0
    stxw [r10-8], r1        # M = 0
    lddw r2, 0x700000010
    lock add32 [r10-8], r2  # M = 0x10 (the upper half of r2 plays no part)
    mov r3, 0x5
    lock fetch add32 [r10-8], r3   # r3 = 0x10, M = 0x15
    mov r2, 0x300
    lock or32 [r10-8], r2   # M = 0x315
    mov r4, 0x700
    lock fetch or32 [r10-8], r4    # r4 = 0x315, M = 0x715
    mov32 r2, 0xff0f
    lock and32 [r10-8], r2  # M = 0x705
    mov r5, 0xff
    lock fetch and32 [r10-8], r5   # r5 = 0x705, M = 0x5
    mov r2, 0x66
    lock xor32 [r10-8], r2  # M = 0x63
    lddw r6, 0x380000001
    lock fetch xor32 [r10-8], r6   # r6 = 0x63, M = 0x80000062
    mov r7, 0x1234
    lock xchg32 [r10-8], r7 # r7 = 0x80000062, M = 0x1234
    lddw r0, 0xff00000000001234
    mov r8, 0x4321
    lock cmpxchg32 [r10-8], r8     # low halves equal: M = 0x4321, r0 = 0x1234
    mov r9, r0
    mov r0, 0x1
    mov r8, 0x5555
    lock cmpxchg32 [r10-8], r8     # not equal: M stays 0x4321, r0 = 0x4321
    ldxw r1, [r10-8]
    add r0, r1              # 0x8642
    add r0, r3
    mul r0, 3
    add r0, r4
    xor r0, r5
    add r0, r6
    mul r0, 5
    add r0, r7
    add r0, r9
    mov r1, r0
    rsh r1, 32
    xor r0, r1
    mov32 r0, r0
    exit
