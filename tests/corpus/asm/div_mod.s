# Unsigned and signed division and remainder, 64 and 32 bit, with eBPF's rules:
# x / 0 == 0, x % 0 == x, INT_MIN / -1 == INT_MIN, INT_MIN % -1 == 0 (RFC 9669 section 4.1).
# result: 0xffffb7f1
.type xdp
    mov r9, 0               # divisor zero in a register (an immediate zero is refused by verifiers)
    mov r1, 1000
    div r1, 7               # 142
    mov r2, 1000
    mod r2, 7               # 6
    mov r3, 1000
    div r3, r9              # 0
    mov r4, 1000
    mod r4, r9              # 1000
    mov r5, -1000
    sdiv r5, 7              # -142
    mov r6, -1000
    smod r6, 7              # -6
    mov r7, 1000
    smod r7, -7             # 6
    mov r0, r1
    add r0, r2
    add r0, r3
    add r0, r4              # 1148
    add r0, r5              # 1006
    add r0, r6              # 1000
    add r0, r7              # 1006
    lddw r8, 0x8000000000000000
    mov r1, -1
    sdiv r8, r1             # INT64_MIN
    rsh r8, 60              # 8
    add r0, r8              # 1014
    mov32 r8, 0x80000000
    sdiv32 r8, -1           # 0x80000000
    add r0, r8              # 0x800003f6
    mov32 r8, 0x80000000
    smod32 r8, -1           # 0
    add r0, r8
    mov32 r8, -7
    div32 r8, 2             # 0x7ffffffc
    xor r0, r8              # 0xfffffc0a
    mov32 r8, -7
    sdiv32 r8, 2            # -3 -> 0xfffffffd
    add r0, r8              # 0x1fffffc07
    mov32 r8, -7
    smod32 r8, r9           # -7 -> 0xfffffff9 (x % 0 == x)
    mul r0, r8
    mov32 r8, 12345
    mod32 r8, r9            # 12345
    add r0, r8
    mov r1, r0
    rsh r1, 32
    xor r0, r1
    mov32 r0, r0
    exit
