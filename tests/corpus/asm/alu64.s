# ALU64 with immediate and register operands (RFC 9669 section 4.1); the value is folded into r0.
# result: 0x58cf07df
.type xdp
    mov r0, 0x12345678
    lsh r0, 16              # 0x0000123456780000
    add r0, 0x7f
    mov r2, r0
    sub r2, 0x1000
    mul r2, 3
    or r2, 0x0f00
    and r2, -16             # imm sign-extends to 0xfffffffffffffff0
    xor r0, r2
    rsh r2, 3
    add r0, r2
    mov r3, -8
    arsh r3, 1              # -4
    sub r0, r3
    neg r3                  # 4
    lsh r0, r3
    mov r4, r0
    rsh r4, 32
    xor r0, r4
    mov32 r0, r0            # keep the low 32 bits
    exit
