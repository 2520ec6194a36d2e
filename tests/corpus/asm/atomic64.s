# Every 64-bit atomic (RFC 9669 section 5.3) on a stack slot: add/or/and/xor with and without
# fetch, xchg and cmpxchg (which compares with r0 and loads the old value into r0).
# result: 0x7e9eb
.type xdp
    lddw r1, 0x100000000
    stxdw [r10-8], r1       # M = 0x100000000
    mov r2, 0x10
    lock add [r10-8], r2    # M = 0x100000010
    mov r3, 0x5
    lock fetch add [r10-8], r3   # r3 = 0x100000010, M = 0x100000015
    mov r2, 0x300
    lock or [r10-8], r2     # M = 0x100000315
    mov r4, 0x700
    lock fetch or [r10-8], r4    # r4 = 0x100000315, M = 0x100000715
    lddw r2, 0xffffffff0000ff0f
    lock and [r10-8], r2    # M = 0x100000705
    lddw r5, 0x1000000ff
    lock fetch and [r10-8], r5   # r5 = 0x100000705, M = 0x100000005
    mov r2, 0x66
    lock xor [r10-8], r2    # M = 0x100000063
    lddw r6, 0x300000001
    lock fetch xor [r10-8], r6   # r6 = 0x100000063, M = 0x200000062
    mov r7, 0x1234
    lock xchg [r10-8], r7   # r7 = 0x200000062, M = 0x1234
    mov r0, 0x1234
    mov r8, 0x4321
    lock cmpxchg [r10-8], r8     # equal: M = 0x4321, r0 = 0x1234
    mov r9, r0
    mov r0, 0x1
    mov r8, 0x5555
    lock cmpxchg [r10-8], r8     # not equal: M stays 0x4321, r0 = 0x4321
    ldxdw r1, [r10-8]
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
