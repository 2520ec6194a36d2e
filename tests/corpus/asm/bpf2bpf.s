# BPF-to-BPF calls (call with src=1): the callee gets r1-r5, returns in r0, and the caller's
# r6-r9 survive; a callee calls a second-level function too.
# result: 0x1a5
.type xdp
    mov r6, 100
    mov r1, 7
    mov r2, 3
    call mul_add            # r0 = 7 * 3 + 10 = 31
    mov r7, r0
    mov r1, r0
    call square_plus_one    # r0 = 31 * 31 + 1 = 962
    add r0, r7              # 993
    sub r0, r6              # 893
    mov r1, r0
    call local +3           # the same function by offset: square_plus_one(893) = 797450
    and r0, 0x1ff           # 797450 mod 512 = 266
    add r0, 155             # 421 = 0x1a5
    exit
square_plus_one:
    mov r6, 1               # the callee's own r6: the caller's stays 100
    mul r1, r1
    call add_r6_to_r1
    exit
add_r6_to_r1:
    mov r6, 1
    mov r0, r1
    add r0, r6
    exit
mul_add:
    mov r0, r1
    mul r0, r2
    add r0, 10
    exit
