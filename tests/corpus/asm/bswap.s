# Byte swaps: le/be (ALU class, to little/big endian; a host-order no-op or swap, truncating) and
# the v4 unconditional bswap (ALU64 class).  The kernel and this corpus run little-endian.
# result: 0xe1bcd356
.type xdp
    lddw r1, 0x0123456789abcdef
    mov r2, r1
    be16 r2                 # 0xefcd
    mov r3, r1
    be32 r3                 # 0xefcdab89
    mov r4, r1
    be64 r4                 # 0xefcdab8967452301
    mov r5, r1
    le16 r5                 # 0xcdef (truncates)
    mov r6, r1
    le32 r6                 # 0x89abcdef
    mov r7, r1
    le64 r7                 # unchanged
    mov r8, r1
    bswap16 r8              # 0xefcd
    mov r9, r1
    bswap32 r9              # 0xefcdab89
    mov r0, r1
    bswap64 r0              # 0xefcdab8967452301
    xor r0, r4              # 0
    add r0, r2
    add r0, r3
    add r0, r5
    add r0, r6
    xor r0, r7
    add r0, r8
    add r0, r9
    mov r1, r0
    rsh r1, 32
    xor r0, r1
    mov32 r0, r0
    exit
