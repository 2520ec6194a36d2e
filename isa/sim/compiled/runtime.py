"""The native runtime of the compiled simulator: context layout, map tables, map cache, RNG, in LLVM IR.

Everything a translated program touches lives in native memory the generated code reads and writes
directly; nothing calls back into Python while packets run:

* the **context** (``ctx``), an array of 64-bit slots (indices ``C_*`` below): pointers to the
  memories, run parameters, the map cache, the RNG, and the result record of the last run;
* **memories**: local memory (4 KiB), the CTM packet buffer (8 KiB), IMEM and CLS (64 KiB each),
  each with a dirty range so that the next packet clears only what the last one touched;
* **map tables**: one descriptor of 16 slots per map (``T_*``): values (EMEM), keys, a per-slot live
  flag and hash, the free-slot stack (the interpreter's free list, popped and pushed in the same
  order, so slots and EMEM addresses are identical), an open-addressing index (linear probing,
  backward-shift deletion) and the LRU stamps of the map cache;
* the **map cache**: LRU over present entries as (table, slot) (equivalent to the interpreter's
  (table id, key) while an entry stays present; updates and deletes evict it first);
* the **RNG**: Python's Mersenne Twister (``random.Random(seed).getrandbits(32)``), state copied
  lazily from the seed's initial state at a run's first draw.

The IR functions here are added to every image's module by :mod:`.translate`.
"""

from __future__ import annotations

import ctypes
import random

from llvmlite import ir

from ..firmware import Routine

# -- context slots (i64 each) -------------------------------------------------------------------------
C_LM, C_CTM, C_IMEM, C_CLS, C_TABLES, C_NTABLES = 0, 1, 2, 3, 4, 5
C_BUDGET, C_RAW, C_RAW_LEN, C_PKT_LEN_IN, C_RXQ, C_IFINDEX = 6, 7, 8, 9, 10, 11
C_RNG_INIT, C_RNG_STATE, C_RNG_IDX = 12, 13, 14
C_CACHE_SIZE, C_CACHE_COUNT, C_CACHE_CLOCK, C_CACHE_LIST, C_CACHE_HITS, C_CACHE_MISSES = 15, 16, 17, 18, 19, 20
C_FW_COST, C_FW_FAULT, C_FW_AUX, C_FW_MEM = 21, 22, 23, 24
C_DIRTY = 25                      # lo/hi byte offsets per memory: LM 25/26, CTM 27/28, IMEM 29/30, CLS 31/32
C_MAPS_DIRTY = 33
C_RAW_END = 34
C_CACHE_COLD = 35                 # 1: every run starts with an empty map cache
C_STOP_ON_DIRTY = 36              # mask of C_MAPS_DIRTY bits after which the batch loop returns
C_STATE = 37                      # the machine-state block (registers, counters: translate's layout)
C_OUT_USED = 38                   # nfp_batch: bytes of the output buffer used (read at entry, written back)
DIRTY_CHANGED, DIRTY_DELETED = 1, 2   # C_MAPS_DIRTY bits: a map changed; a hash entry was deleted
# result record of the last run
C_R = 40
R_STATUS, R_ACTION, R_R0, R_CYCLES, R_INSNS, R_PKT_ADDR, R_PKT_LEN = 0, 1, 2, 3, 4, 5, 6
R_FSITE, R_FPC, R_AUX0, R_AUX1, R_MEM, R_A30 = 7, 8, 9, 10, 11, 12
R_HITS, R_MISSES, R_DIRTY = 13, 14, 15
R_USAGE = 16                      # 9 resources x (accesses, cycles)
R_META = 34                       # the 13 packet-metadata CSRs after the run (PKT_META_CSRS order)
N_META = 13
R_CALLS = R_META + N_META         # one count per firmware routine (firmware.Routine)
R_REDIRECT = R_CALLS + len(Routine)  # fw_redirect's target ifindex, -1 for none
R_SIZE = R_REDIRECT + 1
C_META_IN = C_R + R_SIZE          # the packet-metadata CSRs and TX_QUEUE before the run (N_META + 1)
CTX_SIZE = C_META_IN + N_META + 1 + 8

STATUS_HALT, STATUS_FAULT, STATUS_HANDOFF = 0, 1, 2

# memory index in the dirty table
MEM_LM, MEM_CTM, MEM_IMEM, MEM_CLS = 0, 1, 2, 3

# -- table descriptor slots (i64 each) -----------------------------------------------------------------
T_IS_HASH, T_KEY_SIZE, T_VALUE_SIZE, T_STRIDE, T_MAX, T_ID = 0, 1, 2, 3, 4, 5
T_VALUES, T_VALUES_LEN, T_KEYS, T_LIVE, T_FREE, T_FREE_TOP = 6, 7, 8, 9, 10, 11
T_INDEX, T_MASK, T_STAMP, T_HASH = 12, 13, 14, 15
T_SIZE = 16

# firmware-routine fault codes (C_FW_FAULT): 0 none
FW_OK, FW_BAD_TABLE, FW_LM_OOB = 0, 1, 2

EINVAL, ENOENT, EEXIST, E2BIG = 22, 2, 17, 7

i1, i8, i32, i64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
ptr = ir.PointerType()


def c64(v: int) -> ir.Constant:
    return ir.Constant(i64, v)


def c32(v: int) -> ir.Constant:
    return ir.Constant(i32, v & 0xFFFFFFFF)


class Emit:
    """Small helpers over an IRBuilder: i64 slot access, loops, memcpy/memset/memcmp."""

    def __init__(self, module: ir.Module, builder: ir.IRBuilder | None = None):
        self.m = module
        self.b = builder

    def slot(self, base, index, ty=i64):
        """Pointer to i64 slot ``index`` of ``base`` (index: int or value)."""
        idx = c64(index) if isinstance(index, int) else index
        return self.b.gep(base, [idx], source_etype=i64)

    def ld(self, base, index):
        return self.b.load(self.slot(base, index), typ=i64)

    def st(self, base, index, value):
        self.b.store(value, self.slot(base, index))

    def ldp(self, base, index):
        return self.b.inttoptr(self.ld(base, index), ptr)

    def byte_ptr(self, p, off):
        return self.b.gep(p, [off], source_etype=i8)

    def intrinsic(self, name, ret, args):
        fn = self.m.globals.get(name)
        if fn is None:
            fn = ir.Function(self.m, ir.FunctionType(ret, args), name)
        return fn

    def memcpy(self, dst, src, n):
        f = self.intrinsic("llvm.memcpy.p0.p0.i64", ir.VoidType(), [ptr, ptr, i64, i1])
        self.b.call(f, [dst, src, n, ir.Constant(i1, 0)])

    def memset(self, dst, n):
        f = self.intrinsic("llvm.memset.p0.i64", ir.VoidType(), [ptr, i8, i64, i1])
        self.b.call(f, [dst, ir.Constant(i8, 0), n, ir.Constant(i1, 0)])

    def memcmp(self, a, c, n):
        f = self.intrinsic("memcmp", ir.IntType(32), [ptr, ptr, i64])
        return self.b.call(f, [a, c, n])

    def loop(self, name: str):
        """A while-loop: returns (head, body, done) blocks; caller branches to head and fills them."""
        fn = self.b.function
        return (fn.append_basic_block(name + ".head"), fn.append_basic_block(name + ".body"),
                fn.append_basic_block(name + ".done"))


def _fn(m: ir.Module, name: str, ret, args, linkage="internal"):
    f = ir.Function(m, ir.FunctionType(ret, args), name)
    f.linkage = linkage
    return f


def build_runtime(m: ir.Module) -> dict[str, ir.Function]:
    """Add the runtime functions to ``m``; returns them by name."""
    fns = {}
    fns["hash"] = _build_hash(m)
    fns["find"] = _build_find(m, fns)
    fns["insert"] = _build_insert(m, fns)
    fns["remove"] = _build_remove(m, fns)
    fns["cache_lookup"] = _build_cache_lookup(m)
    fns["cache_evict"] = _build_cache_evict(m)
    fns["update"] = _build_update(m, fns)
    fns["table_by_id"] = _build_table_by_id(m)
    fns["rng_next"] = _build_rng(m)
    fns["fw_lookup"], fns["fw_update"], fns["fw_delete"] = _build_fw_maps(m, fns)
    return fns


def _build_hash(m):
    """FNV-1a over ``n`` key bytes -> i32."""
    f = _fn(m, "rt_hash", i32, [ptr, i64])
    key, n = f.args
    b = ir.IRBuilder(f.append_basic_block("entry"))
    e = Emit(m, b)
    head, body, done = e.loop("h")
    entry = b.block
    b.branch(head)
    b.position_at_end(head)
    i = b.phi(i64)
    h = b.phi(i32)
    i.add_incoming(c64(0), entry)
    h.add_incoming(c32(0x811C9DC5), entry)
    b.cbranch(b.icmp_unsigned("<", i, n), body, done)
    b.position_at_end(body)
    byte = b.zext(b.load(e.byte_ptr(key, i), typ=i8), i32)
    h2 = b.mul(b.xor(h, byte), c32(0x01000193))
    i2 = b.add(i, c64(1))
    i.add_incoming(i2, body)
    h.add_incoming(h2, body)
    b.branch(head)
    b.position_at_end(done)
    b.ret(h)
    return f


def _build_find(m, fns):
    """rt_find(table, key ptr) -> slot or -1 (hash: probe the index; array: u32 index < max)."""
    f = _fn(m, "rt_find", i64, [ptr, ptr])
    t, key = f.args
    b = ir.IRBuilder(f.append_basic_block("entry"))
    e = Emit(m, b)
    arr, hsh = f.append_basic_block("array"), f.append_basic_block("hash")
    b.cbranch(b.icmp_signed("!=", e.ld(t, T_IS_HASH), c64(0)), hsh, arr)
    b.position_at_end(arr)
    idx = b.zext(b.load(key, typ=i32), i64)
    b.ret(b.select(b.icmp_unsigned("<", idx, e.ld(t, T_MAX)), idx, c64(-1)))
    b.position_at_end(hsh)
    ks = e.ld(t, T_KEY_SIZE)
    h = b.call(fns["hash"], [key, ks])
    mask = e.ld(t, T_MASK)
    index, keys, hashes = e.ldp(t, T_INDEX), e.ldp(t, T_KEYS), e.ldp(t, T_HASH)
    head, body, done = e.loop("probe")
    home = b.and_(b.zext(h, i64), mask)
    start = b.block
    b.branch(head)
    b.position_at_end(head)
    cell = b.phi(i64)
    n = b.phi(i64)
    cell.add_incoming(home, start)
    n.add_incoming(c64(0), start)
    s = b.sext(b.load(b.gep(index, [cell], source_etype=i32), typ=i32), i64)
    empty = b.or_(b.icmp_signed("<", s, c64(0)), b.icmp_unsigned(">", n, mask))
    b.cbranch(empty, done, body)
    b.position_at_end(body)
    same_hash = b.icmp_unsigned("==", b.load(b.gep(hashes, [s], source_etype=i32), typ=i32), h)
    cmpb, nextb = f.append_basic_block("cmp"), f.append_basic_block("next")
    b.cbranch(same_hash, cmpb, nextb)
    b.position_at_end(cmpb)
    eq = b.icmp_signed("==", e.memcmp(e.byte_ptr(keys, b.mul(s, ks)), key, ks), ir.Constant(i32, 0))
    found = f.append_basic_block("found")
    b.cbranch(eq, found, nextb)
    b.position_at_end(found)
    b.ret(s)
    b.position_at_end(nextb)
    cell.add_incoming(b.and_(b.add(cell, c64(1)), mask), nextb)
    n.add_incoming(b.add(n, c64(1)), nextb)
    b.branch(head)
    b.position_at_end(done)
    b.ret(c64(-1))
    return f


def _build_insert(m, fns):
    """rt_insert(table, key ptr) -> new slot (key absent, a free slot exists): pop the free stack, index it."""
    f = _fn(m, "rt_insert", i64, [ptr, ptr])
    t, key = f.args
    b = ir.IRBuilder(f.append_basic_block("entry"))
    e = Emit(m, b)
    top = b.sub(e.ld(t, T_FREE_TOP), c64(1))
    e.st(t, T_FREE_TOP, top)
    free = e.ldp(t, T_FREE)
    s = b.sext(b.load(b.gep(free, [top], source_etype=i32), typ=i32), i64)
    ks = e.ld(t, T_KEY_SIZE)
    e.memcpy(e.byte_ptr(e.ldp(t, T_KEYS), b.mul(s, ks)), key, ks)
    h = b.call(fns["hash"], [key, ks])
    b.store(h, b.gep(e.ldp(t, T_HASH), [s], source_etype=i32))
    b.store(ir.Constant(i8, 1), b.gep(e.ldp(t, T_LIVE), [s], source_etype=i8))
    mask = e.ld(t, T_MASK)
    index = e.ldp(t, T_INDEX)
    head, body, done = e.loop("place")
    home = b.and_(b.zext(h, i64), mask)
    start = b.block
    b.branch(head)
    b.position_at_end(head)
    cell = b.phi(i64)
    cell.add_incoming(home, start)
    p = b.gep(index, [cell], source_etype=i32)
    b.cbranch(b.icmp_signed("<", b.load(p, typ=i32), ir.Constant(i32, 0)), done, body)
    b.position_at_end(body)
    cell.add_incoming(b.and_(b.add(cell, c64(1)), mask), body)
    b.branch(head)
    b.position_at_end(done)
    b.store(b.trunc(s, i32), p)
    b.ret(s)
    return f


def _build_remove(m, fns):
    """rt_remove(table, slot): unindex a present hash slot (backward-shift deletion), push it on the free stack."""
    f = _fn(m, "rt_remove", ir.VoidType(), [ptr, i64])
    t, s = f.args
    b = ir.IRBuilder(f.append_basic_block("entry"))
    e = Emit(m, b)
    mask = e.ld(t, T_MASK)
    index, hashes = e.ldp(t, T_INDEX), e.ldp(t, T_HASH)
    h = b.zext(b.load(b.gep(hashes, [s], source_etype=i32), typ=i32), i64)
    # find the cell holding s
    fh, fb, fd = e.loop("findcell")
    home0 = b.and_(h, mask)
    start = b.block
    b.branch(fh)
    b.position_at_end(fh)
    cell = b.phi(i64)
    cell.add_incoming(home0, start)
    here = b.icmp_signed("==", b.sext(b.load(b.gep(index, [cell], source_etype=i32), typ=i32), i64), s)
    b.cbranch(here, fd, fb)
    b.position_at_end(fb)
    cell.add_incoming(b.and_(b.add(cell, c64(1)), mask), fb)
    b.branch(fh)
    b.position_at_end(fd)
    # backward shift
    sh, sb, sd = e.loop("shift")
    pre = b.block
    b.branch(sh)
    b.position_at_end(sh)
    hole = b.phi(i64)
    j = b.phi(i64)
    hole.add_incoming(cell, pre)
    j.add_incoming(cell, pre)
    j2 = b.and_(b.add(j, c64(1)), mask)
    sj = b.load(b.gep(index, [j2], source_etype=i32), typ=i32)
    b.cbranch(b.icmp_signed("<", sj, ir.Constant(i32, 0)), sd, sb)
    b.position_at_end(sb)
    home = b.and_(b.zext(b.load(b.gep(hashes, [b.sext(sj, i64)], source_etype=i32), typ=i32), i64), mask)
    # keep sj where it is when home lies cyclically in (hole, j2]
    in_order = b.icmp_unsigned("<=", hole, j2)
    a1 = b.and_(b.icmp_unsigned("<", hole, home), b.icmp_unsigned("<=", home, j2))
    a2 = b.or_(b.icmp_unsigned("<", hole, home), b.icmp_unsigned("<=", home, j2))
    keep = b.select(in_order, a1, a2)
    moveb = f.append_basic_block("move")
    hole.add_incoming(hole, sb)
    j.add_incoming(j2, sb)
    b.cbranch(keep, sh, moveb)
    b.position_at_end(moveb)
    b.store(sj, b.gep(index, [hole], source_etype=i32))
    hole.add_incoming(j2, moveb)
    j.add_incoming(j2, moveb)
    b.branch(sh)
    b.position_at_end(sd)
    b.store(ir.Constant(i32, -1), b.gep(index, [hole], source_etype=i32))
    b.store(ir.Constant(i8, 0), b.gep(e.ldp(t, T_LIVE), [s], source_etype=i8))
    top = e.ld(t, T_FREE_TOP)
    b.store(b.trunc(s, i32), b.gep(e.ldp(t, T_FREE), [top], source_etype=i32))
    e.st(t, T_FREE_TOP, b.add(top, c64(1)))
    b.ret_void()
    return f


def _table_ptr(e: Emit, ctx, ti):
    return e.b.gep(e.ldp(ctx, C_TABLES), [e.b.mul(ti, c64(T_SIZE))], source_etype=i64)


def _build_cache_lookup(m):
    """rt_cache_lookup(ctx, table index, slot or -1) -> i1 hit; installs a present entry that missed (LRU)."""
    f = _fn(m, "rt_cache_lookup", i1, [ptr, i64, i64])
    ctx, ti, s = f.args
    b = ir.IRBuilder(f.append_basic_block("entry"))
    e = Emit(m, b)
    present = b.icmp_signed(">=", s, c64(0))
    chk, miss = f.append_basic_block("check"), f.append_basic_block("miss")
    b.cbranch(present, chk, miss)
    b.position_at_end(chk)
    t = _table_ptr(e, ctx, ti)
    stamp_p = b.gep(e.ldp(t, T_STAMP), [s], source_etype=i64)
    hit = f.append_basic_block("hit")
    b.cbranch(b.icmp_unsigned("!=", b.load(stamp_p, typ=i64), c64(0)), hit, miss)
    b.position_at_end(hit)
    clock = b.add(e.ld(ctx, C_CACHE_CLOCK), c64(1))
    e.st(ctx, C_CACHE_CLOCK, clock)
    b.store(clock, stamp_p)
    e.st(ctx, C_CACHE_HITS, b.add(e.ld(ctx, C_CACHE_HITS), c64(1)))
    b.ret(ir.Constant(i1, 1))
    b.position_at_end(miss)
    e.st(ctx, C_CACHE_MISSES, b.add(e.ld(ctx, C_CACHE_MISSES), c64(1)))
    size = e.ld(ctx, C_CACHE_SIZE)
    install, out = f.append_basic_block("install"), f.append_basic_block("out")
    b.cbranch(b.and_(present, b.icmp_signed(">", size, c64(0))), install, out)
    b.position_at_end(out)
    b.ret(ir.Constant(i1, 0))
    b.position_at_end(install)
    t = _table_ptr(e, ctx, ti)
    clock = b.add(e.ld(ctx, C_CACHE_CLOCK), c64(1))
    e.st(ctx, C_CACHE_CLOCK, clock)
    b.store(clock, b.gep(e.ldp(t, T_STAMP), [s], source_etype=i64))
    lst = e.ldp(ctx, C_CACHE_LIST)
    count = e.ld(ctx, C_CACHE_COUNT)
    b.store(b.or_(b.shl(ti, c64(32)), s), b.gep(lst, [count], source_etype=i64))
    count1 = b.add(count, c64(1))
    e.st(ctx, C_CACHE_COUNT, count1)
    evict = f.append_basic_block("evict")
    b.cbranch(b.icmp_signed(">", count1, size), evict, out)
    b.position_at_end(evict)
    # find the least recently used entry (smallest stamp)
    head, body, done = e.loop("lru")
    start = b.block
    b.branch(head)
    b.position_at_end(head)
    k = b.phi(i64)
    best = b.phi(i64)
    best_stamp = b.phi(i64)
    k.add_incoming(c64(0), start)
    best.add_incoming(c64(0), start)
    best_stamp.add_incoming(c64(-1), start)
    b.cbranch(b.icmp_signed("<", k, count1), body, done)
    b.position_at_end(body)
    ent = b.load(b.gep(lst, [k], source_etype=i64), typ=i64)
    et = _table_ptr(e, ctx, b.lshr(ent, c64(32)))
    st_ = b.load(b.gep(e.ldp(et, T_STAMP), [b.and_(ent, c64(0xFFFFFFFF))], source_etype=i64), typ=i64)
    better = b.icmp_unsigned("<", st_, best_stamp)
    k.add_incoming(b.add(k, c64(1)), body)
    best.add_incoming(b.select(better, k, best), body)
    best_stamp.add_incoming(b.select(better, st_, best_stamp), body)
    b.branch(head)
    b.position_at_end(done)
    bp = b.gep(lst, [best], source_etype=i64)
    ent = b.load(bp, typ=i64)
    et = _table_ptr(e, ctx, b.lshr(ent, c64(32)))
    b.store(c64(0), b.gep(e.ldp(et, T_STAMP), [b.and_(ent, c64(0xFFFFFFFF))], source_etype=i64))
    last = b.sub(count1, c64(1))
    b.store(b.load(b.gep(lst, [last], source_etype=i64), typ=i64), bp)
    e.st(ctx, C_CACHE_COUNT, last)
    b.ret(ir.Constant(i1, 0))
    return f


def _build_cache_evict(m):
    """rt_cache_evict(ctx, table index, slot or -1): drop the entry from the cache if cached."""
    f = _fn(m, "rt_cache_evict", ir.VoidType(), [ptr, i64, i64])
    ctx, ti, s = f.args
    b = ir.IRBuilder(f.append_basic_block("entry"))
    e = Emit(m, b)
    chk, out = f.append_basic_block("check"), f.append_basic_block("out")
    b.cbranch(b.icmp_signed(">=", s, c64(0)), chk, out)
    b.position_at_end(out)
    b.ret_void()
    b.position_at_end(chk)
    t = _table_ptr(e, ctx, ti)
    stamp_p = b.gep(e.ldp(t, T_STAMP), [s], source_etype=i64)
    rm = f.append_basic_block("remove")
    b.cbranch(b.icmp_unsigned("!=", b.load(stamp_p, typ=i64), c64(0)), rm, out)
    b.position_at_end(rm)
    b.store(c64(0), stamp_p)
    lst = e.ldp(ctx, C_CACHE_LIST)
    count = e.ld(ctx, C_CACHE_COUNT)
    want = b.or_(b.shl(ti, c64(32)), s)
    head, body, done = e.loop("find")
    start = b.block
    b.branch(head)
    b.position_at_end(head)
    k = b.phi(i64)
    k.add_incoming(c64(0), start)
    kp = b.gep(lst, [k], source_etype=i64)
    b.cbranch(b.or_(b.icmp_signed(">=", k, count), b.icmp_unsigned("==", b.load(kp, typ=i64), want)), done, body)
    b.position_at_end(body)
    k.add_incoming(b.add(k, c64(1)), body)
    b.branch(head)
    b.position_at_end(done)
    last = b.sub(count, c64(1))
    b.store(b.load(b.gep(lst, [last], source_etype=i64), typ=i64), kp)
    e.st(ctx, C_CACHE_COUNT, last)
    b.ret_void()
    return f


def _build_update(m, fns):
    """rt_update(table, key ptr, value ptr, flags) -> 0 or -errno, the interpreter's MapTable.update."""
    f = _fn(m, "rt_update", i64, [ptr, ptr, ptr, i64], linkage="external")
    t, key, val, flags = f.args
    b = ir.IRBuilder(f.append_basic_block("entry"))
    e = Emit(m, b)
    bad, go = f.append_basic_block("einval"), f.append_basic_block("go")
    b.cbranch(b.icmp_unsigned(">", flags, c64(2)), bad, go)
    b.position_at_end(bad)
    b.ret(c64(-EINVAL))
    b.position_at_end(go)
    s = b.call(fns["find"], [t, key])
    absent = b.icmp_signed("<", s, c64(0))
    write = f.append_basic_block("write")
    wslot = None
    arr, hsh = f.append_basic_block("array"), f.append_basic_block("hash")
    b.cbranch(b.icmp_signed("!=", e.ld(t, T_IS_HASH), c64(0)), hsh, arr)
    # array
    b.position_at_end(arr)
    e2big, arr2 = f.append_basic_block("e2big"), f.append_basic_block("arr2")
    b.cbranch(absent, e2big, arr2)
    b.position_at_end(e2big)
    b.ret(c64(-E2BIG))
    b.position_at_end(arr2)
    eexist = f.append_basic_block("eexist")
    b.cbranch(b.icmp_unsigned("==", flags, c64(1)), eexist, write)
    b.position_at_end(eexist)
    b.ret(c64(-EEXIST))
    # hash
    b.position_at_end(hsh)
    new, old = f.append_basic_block("new"), f.append_basic_block("old")
    b.cbranch(absent, new, old)
    b.position_at_end(old)
    b.cbranch(b.icmp_unsigned("==", flags, c64(1)), eexist, write)
    b.position_at_end(new)
    enoent, new2 = f.append_basic_block("enoent"), f.append_basic_block("new2")
    b.cbranch(b.icmp_unsigned("==", flags, c64(2)), enoent, new2)
    b.position_at_end(enoent)
    b.ret(c64(-ENOENT))
    b.position_at_end(new2)
    e2big_h, ins = f.append_basic_block("e2big_h"), f.append_basic_block("insert")
    b.cbranch(b.icmp_signed("<=", e.ld(t, T_FREE_TOP), c64(0)), e2big_h, ins)
    b.position_at_end(e2big_h)
    b.ret(c64(-E2BIG))
    b.position_at_end(ins)
    s_new = b.call(fns["insert"], [t, key])
    b.branch(write)
    b.position_at_end(write)
    wslot = b.phi(i64)
    wslot.add_incoming(s, arr2)
    wslot.add_incoming(s, old)
    wslot.add_incoming(s_new, ins)
    vs = e.ld(t, T_VALUE_SIZE)
    e.memcpy(e.byte_ptr(e.ldp(t, T_VALUES), b.mul(wslot, e.ld(t, T_STRIDE))), val, vs)
    b.ret(c64(0))
    return f


def _build_table_by_id(m):
    """rt_table_by_id(ctx, table id) -> table index or -1."""
    f = _fn(m, "rt_table_by_id", i64, [ptr, i64])
    ctx, tid = f.args
    b = ir.IRBuilder(f.append_basic_block("entry"))
    e = Emit(m, b)
    n = e.ld(ctx, C_NTABLES)
    head, body, done = e.loop("t")
    start = b.block
    b.branch(head)
    b.position_at_end(head)
    k = b.phi(i64)
    k.add_incoming(c64(0), start)
    b.cbranch(b.icmp_signed("<", k, n), body, done)
    b.position_at_end(body)
    found = f.append_basic_block("found")
    nxt = f.append_basic_block("next")
    b.cbranch(b.icmp_unsigned("==", e.ld(_table_ptr(e, ctx, k), T_ID), tid), found, nxt)
    b.position_at_end(found)
    b.ret(k)
    b.position_at_end(nxt)
    k.add_incoming(b.add(k, c64(1)), nxt)
    b.branch(head)
    b.position_at_end(done)
    b.ret(c64(-1))
    return f


def _build_rng(m):
    """rt_rng_next(ctx) -> i32: MT19937 genrand_uint32, state copied from the seed's at the run's first draw."""
    f = _fn(m, "rt_rng_next", i32, [ptr])
    (ctx,) = f.args
    b = ir.IRBuilder(f.append_basic_block("entry"))
    e = Emit(m, b)
    st = e.ldp(ctx, C_RNG_STATE)
    idx0 = e.ld(ctx, C_RNG_IDX)
    init, ready = f.append_basic_block("init"), f.append_basic_block("ready")
    entry = b.block
    b.cbranch(b.icmp_signed("<", idx0, c64(0)), init, ready)
    b.position_at_end(init)
    src = e.ldp(ctx, C_RNG_INIT)
    e.memcpy(st, src, c64(624 * 4))
    idx_init = b.zext(b.load(b.gep(src, [c64(624)], source_etype=i32), typ=i32), i64)
    b.branch(ready)
    b.position_at_end(ready)
    idx = b.phi(i64)
    idx.add_incoming(idx0, entry)
    idx.add_incoming(idx_init, init)
    twist, gen = f.append_basic_block("twist"), f.append_basic_block("gen")
    b.cbranch(b.icmp_signed(">=", idx, c64(624)), twist, gen)
    b.position_at_end(twist)
    head, body, done = e.loop("tw")
    b.branch(head)
    b.position_at_end(head)
    kk = b.phi(i64)
    kk.add_incoming(c64(0), twist)
    b.cbranch(b.icmp_signed("<", kk, c64(624)), body, done)
    b.position_at_end(body)

    def mt(i):
        return b.gep(st, [i], source_etype=i32)

    k1 = b.urem(b.add(kk, c64(1)), c64(624))
    k397 = b.urem(b.add(kk, c64(397)), c64(624))
    y = b.or_(b.and_(b.load(mt(kk), typ=i32), c32(0x80000000)), b.and_(b.load(mt(k1), typ=i32), c32(0x7FFFFFFF)))
    mag = b.select(b.icmp_unsigned("!=", b.and_(y, c32(1)), c32(0)), c32(0x9908B0DF), c32(0))
    b.store(b.xor(b.xor(b.load(mt(k397), typ=i32), b.lshr(y, c32(1))), mag), mt(kk))
    kk.add_incoming(b.add(kk, c64(1)), body)
    b.branch(head)
    b.position_at_end(done)
    b.branch(gen)
    b.position_at_end(gen)
    i = b.phi(i64)
    i.add_incoming(idx, ready)
    i.add_incoming(c64(0), done)
    y = b.load(mt(i), typ=i32)
    e.st(ctx, C_RNG_IDX, b.add(i, c64(1)))
    y = b.xor(y, b.lshr(y, c32(11)))
    y = b.xor(y, b.and_(b.shl(y, c32(7)), c32(0x9D2C5680)))
    y = b.xor(y, b.and_(b.shl(y, c32(15)), c32(0xEFC60000)))
    y = b.xor(y, b.lshr(y, c32(18)))
    b.ret(y)
    return f


def _build_fw_maps(m, fns):
    """fw_lookup/update/delete(ctx, lm, a2, a4, a6, flags) -> i64 result; cost, fault in ctx slots."""
    out = []
    for name in ("lookup", "update", "delete"):
        f = _fn(m, f"rt_fw_{name}", i64, [ptr, ptr, i64, i64, i64, i64])
        ctx, lm, tid, kaddr, vaddr, flags = f.args
        b = ir.IRBuilder(f.append_basic_block("entry"))
        e = Emit(m, b)
        ti = b.call(fns["table_by_id"], [ctx, tid])
        badt, ok = f.append_basic_block("badtable"), f.append_basic_block("ok")
        b.cbranch(b.icmp_signed("<", ti, c64(0)), badt, ok)
        b.position_at_end(badt)
        e.st(ctx, C_FW_FAULT, c64(FW_BAD_TABLE))
        e.st(ctx, C_FW_AUX, tid)
        b.ret(c64(0))
        b.position_at_end(ok)
        t = _table_ptr(e, ctx, ti)

        def lm_arg(addr, length):
            bad = b.icmp_unsigned(">", b.add(addr, length), c64(4096))
            badb, okb = f.append_basic_block("lmoob"), f.append_basic_block("lmok")
            b.cbranch(bad, badb, okb)
            b.position_at_end(badb)
            e.st(ctx, C_FW_FAULT, c64(FW_LM_OOB))
            e.st(ctx, C_FW_AUX, length)
            e.st(ctx, C_FW_MEM, addr)
            b.ret(c64(0))
            b.position_at_end(okb)
            return e.byte_ptr(lm, addr)

        key = lm_arg(kaddr, e.ld(t, T_KEY_SIZE))
        if name == "lookup":
            s = b.call(fns["find"], [t, key])
            hit = b.call(fns["cache_lookup"], [ctx, ti, s])
            e.st(ctx, C_FW_COST, b.select(hit, c64(300), c64(1000)))
            addr = b.add(b.add(c64(0x10_0000_0000), b.shl(ti, c64(32))), b.mul(s, e.ld(t, T_STRIDE)))
            b.ret(b.select(b.icmp_signed("<", s, c64(0)), c64(0), addr))
        elif name == "update":
            val = lm_arg(vaddr, e.ld(t, T_VALUE_SIZE))
            s = b.call(fns["find"], [t, key])
            b.call(fns["cache_evict"], [ctx, ti, s])
            e.st(ctx, C_FW_COST, c64(1000))
            e.st(ctx, C_MAPS_DIRTY, b.or_(e.ld(ctx, C_MAPS_DIRTY), c64(DIRTY_CHANGED)))
            b.ret(b.call(fns["update"], [t, key, val, flags]))
        else:
            s = b.call(fns["find"], [t, key])
            b.call(fns["cache_evict"], [ctx, ti, s])
            e.st(ctx, C_FW_COST, c64(1000))
            arr, hsh = f.append_basic_block("array"), f.append_basic_block("hash")
            b.cbranch(b.icmp_signed("!=", e.ld(t, T_IS_HASH), c64(0)), hsh, arr)
            b.position_at_end(arr)
            b.ret(c64(-EINVAL))
            b.position_at_end(hsh)
            absent, rm = f.append_basic_block("absent"), f.append_basic_block("rm")
            b.cbranch(b.icmp_signed("<", s, c64(0)), absent, rm)
            b.position_at_end(absent)
            b.ret(c64(-ENOENT))
            b.position_at_end(rm)
            b.call(fns["remove"], [t, s])
            e.st(ctx, C_MAPS_DIRTY, b.or_(e.ld(ctx, C_MAPS_DIRTY), c64(DIRTY_CHANGED | DIRTY_DELETED)))
            b.ret(c64(0))
        out.append(f)
    return out


# -- Python side: native buffers for the memories and the tables ------------------------------------------


def _pow2_at_least(n: int) -> int:
    p = 8
    while p < n:
        p <<= 1
    return p


class NativeTable:
    """The native buffers of one map table; ``desc`` is its 16-slot descriptor."""

    def __init__(self, name: str, is_hash: bool, key_size: int, value_size: int, max_entries: int, table_id: int):
        self.name, self.is_hash = name, is_hash
        self.key_size, self.value_size, self.max_entries, self.table_id = key_size, value_size, max_entries, table_id
        self.stride = (max(value_size, 1) + 7) & ~7
        n = max(max_entries, 1)
        self.values = (ctypes.c_uint8 * (self.stride * n))()
        self.keys = (ctypes.c_uint8 * (max(key_size, 1) * n))()
        self.live = (ctypes.c_uint8 * n)()
        self.free = (ctypes.c_int32 * n)(*range(max_entries - 1, -1, -1))
        cap = _pow2_at_least(2 * n)
        self.index = (ctypes.c_int32 * cap)(*([-1] * cap))
        self.stamp = (ctypes.c_uint64 * n)()
        self.hashes = (ctypes.c_uint32 * n)()
        self.mask = cap - 1
        self.values_len = self.stride * max_entries

    def fill(self, desc, base: int) -> None:
        a = ctypes.addressof
        vals = [int(self.is_hash), self.key_size, self.value_size, self.stride, self.max_entries, self.table_id,
                a(self.values), self.values_len, a(self.keys), a(self.live), a(self.free), self.max_entries,
                a(self.index), self.mask, a(self.stamp), a(self.hashes)]
        for i, v in enumerate(vals):
            desc[base + i] = v

    def dump(self, desc, base: int) -> dict[bytes, bytes]:
        stride, vs = self.stride, self.value_size
        if not self.is_hash:
            raw = bytes(self.values)
            return {i.to_bytes(4, "little"): raw[i * stride:i * stride + vs] for i in range(self.max_entries)}
        live = bytes(self.live)
        ks = self.key_size
        kbase, vbase = ctypes.addressof(self.keys), ctypes.addressof(self.values)
        out = {}
        pos = live.find(1)
        while pos >= 0:
            out[ctypes.string_at(kbase + pos * ks, ks)] = ctypes.string_at(vbase + pos * stride, vs)
            pos = live.find(1, pos + 1)
        return out


def rng_initial_state(seed: int):
    """The 624 words and index of ``random.Random(seed)``, as 625 u32 (the native RNG starts from it)."""
    state = random.Random(seed).getstate()[1]
    return (ctypes.c_uint32 * 625)(*state)


# -- per-packet set-up and the batch loop ------------------------------------------------------------------

_MEM_SIZES = (4096, 8192, 0x1_0000, 0x1_0000)     # LM, CTM, IMEM, CLS (ctx slots C_LM..C_CLS)
DIRTY_EMPTY = 1 << 40
PACKET_START = 256                                  # HEADROOM: the packet's offset in the CTM buffer
CTM_ADDR = 0x1000


def build_driver(m: ir.Module, run: ir.Function) -> None:
    """``nfp_setup(ctx, data, len)`` and ``nfp_batch(ctx, n, data, offs, lens, recs, out, out_offs, out_cap)``."""
    f = _fn(m, "nfp_setup", ir.VoidType(), [ptr, ptr, i64], linkage="external")
    ctx, data, n = f.args
    b = ir.IRBuilder(f.append_basic_block("entry"))
    e = Emit(m, b)
    for mem in range(4):
        lo_i, hi_i = C_DIRTY + 2 * mem, C_DIRTY + 2 * mem + 1
        lo, hi = e.ld(ctx, lo_i), e.ld(ctx, hi_i)
        clear, nxt = f.append_basic_block(f"clear{mem}"), f.append_basic_block(f"next{mem}")
        b.cbranch(b.icmp_signed(">", hi, lo), clear, nxt)
        b.position_at_end(clear)
        e.memset(e.byte_ptr(e.ldp(ctx, C_LM + mem), lo), b.sub(hi, lo))
        b.branch(nxt)
        b.position_at_end(nxt)
        e.st(ctx, lo_i, c64(DIRTY_EMPTY))
        e.st(ctx, hi_i, c64(0))
    e.memcpy(e.byte_ptr(e.ldp(ctx, C_CTM), c64(PACKET_START)), data, n)
    e.st(ctx, C_DIRTY + 2 * MEM_CTM, c64(PACKET_START))
    e.st(ctx, C_DIRTY + 2 * MEM_CTM + 1, b.add(n, c64(PACKET_START)))
    e.st(ctx, C_PKT_LEN_IN, n)
    e.st(ctx, C_RAW_LEN, n)
    rounded = b.and_(b.add(n, c64(3)), c64(-4))
    rounded = b.select(b.icmp_signed("<", rounded, c64(8)), c64(8), rounded)
    e.st(ctx, C_RAW_END, b.add(c64(CTM_ADDR + PACKET_START), rounded))
    e.st(ctx, C_RNG_IDX, c64(-1))
    e.st(ctx, C_MAPS_DIRTY, c64(0))
    cold, done = f.append_basic_block("cold"), f.append_basic_block("done")
    b.cbranch(b.icmp_signed("!=", e.ld(ctx, C_CACHE_COLD), c64(0)), cold, done)
    b.position_at_end(cold)
    lst = e.ldp(ctx, C_CACHE_LIST)
    count = e.ld(ctx, C_CACHE_COUNT)
    head, body, out = e.loop("uncache")
    b.branch(head)
    b.position_at_end(head)
    k = b.phi(i64)
    k.add_incoming(c64(0), cold)
    b.cbranch(b.icmp_signed("<", k, count), body, out)
    b.position_at_end(body)
    ent = b.load(b.gep(lst, [k], source_etype=i64), typ=i64)
    t = _table_ptr(e, ctx, b.lshr(ent, c64(32)))
    b.store(c64(0), b.gep(e.ldp(t, T_STAMP), [b.and_(ent, c64(0xFFFFFFFF))], source_etype=i64))
    k.add_incoming(b.add(k, c64(1)), body)
    b.branch(head)
    b.position_at_end(out)
    e.st(ctx, C_CACHE_COUNT, c64(0))
    b.branch(done)
    b.position_at_end(done)
    b.ret_void()
    setup = f

    f = _fn(m, "nfp_batch", i64, [ptr, i64, ptr, ptr, ptr, ptr, ptr, ptr, i64], linkage="external")
    ctx, n, data, offs, lens, recs, out, out_offs, out_cap = f.args
    b = ir.IRBuilder(f.append_basic_block("entry"))
    e = Emit(m, b)
    head, body, done = e.loop("pkt")
    used_start = e.ld(ctx, C_OUT_USED)
    entry = b.block
    b.branch(head)
    b.position_at_end(head)
    k = b.phi(i64)
    used = b.phi(i64)
    k.add_incoming(c64(0), entry)
    used.add_incoming(used_start, entry)
    room = b.icmp_signed("<=", b.add(used, c64(8192)), out_cap)
    b.cbranch(b.and_(b.icmp_signed("<", k, n), room), body, done)
    b.position_at_end(body)
    b.call(setup, [ctx, e.byte_ptr(data, b.load(b.gep(offs, [k], source_etype=i64), typ=i64)),
                   b.load(b.gep(lens, [k], source_etype=i64), typ=i64)])
    status = b.call(run, [ctx, e.ldp(ctx, C_STATE)])
    rec = b.gep(recs, [b.mul(k, c64(R_SIZE))], source_etype=i64)
    e.memcpy(rec, e.slot(ctx, C_R), c64(R_SIZE * 8))
    addr, length = e.ld(ctx, C_R + R_PKT_ADDR), e.ld(ctx, C_R + R_PKT_LEN)
    ok = b.and_(b.icmp_signed(">=", addr, c64(CTM_ADDR)), b.icmp_signed("<=", b.add(addr, length), c64(CTM_ADDR + 8192)))
    ok = b.and_(ok, b.icmp_signed(">=", length, c64(0)))
    ok = b.and_(ok, b.icmp_signed("!=", status, c64(STATUS_HANDOFF)))
    copy, skip, nxt = f.append_basic_block("copy"), f.append_basic_block("skip"), f.append_basic_block("next")
    b.cbranch(ok, copy, skip)
    b.position_at_end(copy)
    e.memcpy(e.byte_ptr(out, used), e.byte_ptr(e.ldp(ctx, C_CTM), b.sub(addr, c64(CTM_ADDR))), length)
    b.store(used, b.gep(out_offs, [k], source_etype=i64))
    used_copy = b.add(used, length)
    b.branch(nxt)
    b.position_at_end(skip)
    b.store(c64(-1), b.gep(out_offs, [k], source_etype=i64))
    b.branch(nxt)
    b.position_at_end(nxt)
    used2 = b.phi(i64)
    used2.add_incoming(used_copy, copy)
    used2.add_incoming(used, skip)
    k1 = b.add(k, c64(1))
    stop, cont = f.append_basic_block("stop"), f.append_basic_block("cont")
    dirty_stop = b.icmp_signed("!=", b.and_(e.ld(ctx, C_STOP_ON_DIRTY), e.ld(ctx, C_MAPS_DIRTY)), c64(0))
    b.cbranch(b.or_(b.icmp_signed("==", status, c64(STATUS_HANDOFF)), dirty_stop), stop, cont)
    b.position_at_end(stop)
    e.st(ctx, C_OUT_USED, used2)
    b.ret(k1)
    b.position_at_end(cont)
    k.add_incoming(k1, cont)
    used.add_incoming(used2, cont)
    b.branch(head)
    b.position_at_end(done)
    e.st(ctx, C_OUT_USED, used)
    b.ret(k)
