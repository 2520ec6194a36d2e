# JMP32 conditions compare only the low 32 bits (signed ones as s32).  r6 holds 0xffffffff00000005:
# as 64 bits it is negative and huge, as 32 bits it is 5.  Each taken branch adds a distinct bit.
# rx_queue_index (0 at run time) keeps both sides of every branch live for verifiers.
# result: 0x3fff
.type xdp
    ldxw r9, [r1+16]        # 0
    lddw r6, 0xffffffff00000005
    add r6, r9
    mov r7, -3              # s32 -3, u32 0xfffffffd
    mov r0, 0
    jeq32 r6, 5, +1
    ja +1
    or r0, 0x1
    jne32 r6, 4, +1
    ja +1
    or r0, 0x2
    jgt32 r6, 4, +1
    ja +1
    or r0, 0x4
    jge32 r6, 5, +1
    ja +1
    or r0, 0x8
    jlt32 r6, 6, +1
    ja +1
    or r0, 0x10
    jle32 r6, 5, +1
    ja +1
    or r0, 0x20
    jsgt32 r6, r7, +1
    ja +1
    or r0, 0x40
    jsge32 r6, -3, +1
    ja +1
    or r0, 0x80
    jslt32 r7, r6, +1
    ja +1
    or r0, 0x100
    jsle32 r7, -3, +1
    ja +1
    or r0, 0x200
    jset32 r6, 4, +1
    ja +1
    or r0, 0x400
    jgt32 r7, r6, +1        # unsigned: 0xfffffffd > 5
    ja +1
    or r0, 0x800
    jlt r6, 6, +1           # the 64-bit compare is not taken: r6 is huge
    or r0, 0x1000
    jslt r6, 0, +1          # the 64-bit signed compare is taken: r6 is negative
    ja +1
    or r0, 0x2000
    jset32 r6, 0x10, +1     # not taken
    ja +1
    or r0, 0x4000
    exit
