# Sign-extending moves (v4): movsx from 8, 16 and 32 bits into 64- and 32-bit destinations.
# result: 0x90abce4d
.type xdp
    lddw r1, 0x1234567890abcdef
    movsx864 r2, r1         # s8(0xef)   = 0xffffffffffffffef
    movsx1664 r3, r1        # s16(0xcdef) = 0xffffffffffffcdef
    movsx3264 r4, r1        # s32(0x90abcdef) = 0xffffffff90abcdef
    movsx832 r5, r1         # 0xffffffef, upper half zero
    movsx1632 r6, r1        # 0xffffcdef
    mov32 r7, 0x7f
    movsx864 r7, r7         # 0x7f stays positive
    mov r0, r2
    xor r0, r3              # 0x3200
    add r0, r4              # 0xffffffff90abffef
    add r0, r5              # carries into the upper half
    add r0, r6
    add r0, r7
    mov r1, r0
    rsh r1, 32
    xor r0, r1
    mov32 r0, r0
    exit
