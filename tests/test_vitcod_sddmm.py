"""The ViTCoD SDDMM engines (a head's phase 1) in the Amaranth simulator: DenseSddmm,
SparseSddmm, RowMax and CsrCheck against q @ k.T and the golden row maxima, with the q/k/list
memories modelled in the testbench (q and k at QK_READ_LATENCY cycles of read latency, the
lists at one) and a real MacBank; the exact cycle counts the engines promise; the index-list error flags."""

import random

import pytest
import torch
from amaranth.hdl import Elaboratable, Module
from amaranth.lib import wiring

from celine.engines.vitcod.cycles import CHECK_TAIL
from celine.engines.vitcod.spec import (CSC_READ_LATENCY, CSR_READ_LATENCY, QK_READ_LATENCY,
                                        VitcodParams,
                                        csc_fields, csr_fields, row_words)
from celine.golden.vitcod.attention import softmax_int
from celine.rtl.vitcod.csr_check import CsrCheck
from celine.rtl.vitcod.dense_sddmm import DenseSddmm
from celine.rtl.vitcod.dpu import Dpu, DpuArray, issue_cycle
from celine.rtl.vitcod.mac_bank import MacBank
from celine.rtl.vitcod.row_max import RowMax
from celine.rtl.vitcod.sparse_sddmm import SparseSddmm
from celine.sim.amaranth_sim import run_sim

HEAD = 1          # the head slot the tests use: nonzero bases


def make_params(d, dense_dpus, sparse_dpus, *, max_tokens=9, max_global=5, capacity=40):
    """Engines of `dense_dpus` and `sparse_dpus` DPUs (0: no such engine)."""
    return VitcodParams(head_dim=d, max_tokens=max_tokens, heads=2,
                        max_global=max_global if dense_dpus else 0,
                        sparse_capacity=capacity if sparse_dpus else 0,
                        dense_macs=8 * dense_dpus, sparse_macs=8 * sparse_dpus, out_lanes=8)


# -- test data -----------------------------------------------------------------------------


def pack_row(values, width):
    word = 0
    for c, v in enumerate(values):
        word |= (int(v) & ((1 << width) - 1)) << (c * width)
    return word


def pack_fields(fields, values):
    word, shift = 0, 0
    for (name, width), value in zip(fields, values):
        assert 0 <= value < (1 << width), (name, value)
        word |= value << shift
        shift += width
    return word


def operands(p, tokens, seed, extreme=False):
    """q, k: (tokens, d) int64 tensors, random or all most-negative."""
    if extreme:
        low = p.operand_range[0]
        return (torch.full((tokens, p.head_dim), low, dtype=torch.int64),) * 2
    gen = torch.Generator().manual_seed(seed)
    lo, hi = p.operand_range
    return tuple(torch.randint(lo, hi + 1, (tokens, p.head_dim), generator=gen)
                 for _ in range(2))


def row_memory(p, rows):
    """The q or k buffer's words with `rows` in head HEAD's slot (0 elsewhere), each row in
    p.beats words (spec.row_words)."""
    words = [0] * (p.heads * p.max_tokens * p.beats)
    for i, row in enumerate(rows.tolist()):
        first = (HEAD * p.max_tokens + i) * p.beats
        words[first:first + p.beats] = row_words(p, row)
    return words


def sparse_region(tokens, gcols, density, seed, empty_cols=(), empty_rows=()):
    """A random set of kept (row, col) entries with col not a global column (`gcols`, token
    indices); some rows and columns left empty."""
    rng = random.Random(seed)
    return {(i, j) for i in range(tokens) for j in range(tokens)
            if j not in gcols and i not in empty_rows and j not in empty_cols
            and rng.random() < density}


def index_lists(kept_sparse):
    """CSC entries (col, row, pos) sorted by (col, row), pos the CSR index; CSR (row, col)."""
    csr = sorted(kept_sparse)
    pos = {entry: n for n, entry in enumerate(csr)}
    csc = [(j, i, pos[(i, j)]) for (i, j) in sorted(kept_sparse, key=lambda e: (e[1], e[0]))]
    return csc, csr


def gcols_memory(p, gcols):
    """The gcols buffer's words with `gcols` in head HEAD's slot (0 elsewhere)."""
    words = [0] * max(1, p.heads * p.max_global)
    for j, col in enumerate(gcols):
        words[HEAD * p.max_global + j] = col
    return words


def list_memory(p, fields, entries):
    words = [0] * max(1, p.heads * p.sparse_capacity)
    for n, entry in enumerate(entries):
        words[HEAD * p.sparse_capacity + n] = pack_fields(fields, entry)
    return words


# -- the testbench's memories and recorders ------------------------------------------------


def read_model(port, words, reads=None, latency=1):
    """A synchronous read port: data `latency` cycles after addr (a block RAM's output
    registers after the first); 0 outside the memory."""
    async def process(ctx):
        pending = []
        async for _clk, _rst, addr in ctx.tick().sample(port.addr):
            pending.append(words[addr] if addr < len(words) else 0)
            if len(pending) == latency:
                ctx.set(port.data, pending.pop(0))
            if reads is not None:
                reads.append(addr)
    return process


def row_model(port, words, reads=None):
    """A q or k read port, as the shell builds it (QK_READ_LATENCY)."""
    return read_model(port, words, reads, latency=QK_READ_LATENCY)


def recorder(port, names, log):
    """Appends a tuple of `names` of `port` in every cycle its `en` is high."""
    async def process(ctx):
        signals = [getattr(port, name) for name in names]
        async for _clk, _rst, en, *values in ctx.tick().sample(port.en, *signals):
            if en:
                log.append(tuple(int(v) for v in values))
    return process


def strobe_recorder(strobe, value, log):
    async def process(ctx):
        async for _clk, _rst, hit, v in ctx.tick().sample(strobe, value):
            if hit:
                log.append(int(v))
    return process


class Bench(Elaboratable):
    """Engines sharing one MacBank (each its own slice of it, in order), plus RowMax."""

    def __init__(self, p, *engines, row_max=False):
        self.engines = engines
        self.units = sum(e.mul.a.shape().length for e in engines)
        self.bank = MacBank(self.units)
        self.row_max = RowMax(p) if row_max else None

    def elaborate(self, platform):
        m = Module()
        m.submodules.bank = self.bank
        if self.row_max is not None:
            m.submodules.row_max = self.row_max
        base = 0
        for n, engine in enumerate(self.engines):
            m.submodules[f"engine{n}"] = engine
            for lane in range(engine.mul.a.shape().length):
                m.d.comb += [self.bank.bus.a[base + lane].eq(engine.mul.a[lane]),
                             self.bank.bus.b[base + lane].eq(engine.mul.b[lane]),
                             engine.mul.p[lane].eq(self.bank.bus.p[base + lane])]
            base += engine.mul.a.shape().length
        return m


async def run_until_idle(ctx, dut, inputs, limit=100_000):
    """Pulse start with `inputs`; the cycles from the start cycle to busy low."""
    for name, value in inputs.items():
        ctx.set(getattr(dut, name), value)
    ctx.set(dut.start, 1)
    await ctx.tick()
    ctx.set(dut.start, 0)
    cycles = 1
    while ctx.get(dut.busy):
        await ctx.tick()
        cycles += 1
        assert cycles < limit, "the engine hangs"
    await ctx.tick().repeat(2)          # the recorders' last samples
    return cycles


# -- one head's phase 1: both engines, the row maxima --------------------------------------


def run_phase1(p, tokens, gcols, kept_sparse, q, k, *, with_dense, with_sparse):
    """Runs the engines concurrently on HEAD; returns what the memories and outputs saw."""
    csc, csr = index_lists(kept_sparse)
    q_words, k_words = row_memory(p, q), row_memory(p, k)
    head_base, list_base = HEAD * p.max_tokens, HEAD * p.sparse_capacity
    dense = DenseSddmm(p) if with_dense else None
    sparse = SparseSddmm(p) if with_sparse else None
    engines = [e for e in (dense, sparse) if e is not None]
    bench = Bench(p, *engines, row_max=True)
    rm = bench.row_max
    seen = {"dense": [], "row_max": [], "sparse": [], "score_row": [], "k_fetch": [],
            "cycles": {}, "maxima": {}}
    processes = []
    if dense:
        processes += [row_model(dense.q, q_words), row_model(dense.k, k_words),
                      read_model(dense.gcols, gcols_memory(p, gcols)),
                      recorder(dense.score, ("addr", "data"), seen["dense"]),
                      recorder(dense.row_max, ("row", "value"), seen["row_max"])]
    if sparse:
        processes += [row_model(sparse.q, q_words), row_model(sparse.k, k_words),
                      read_model(sparse.csc, list_memory(p, csc_fields(p), csc),
                                 latency=CSC_READ_LATENCY),
                      recorder(sparse.score, ("addr", "data"), seen["sparse"]),
                      recorder(sparse.score_row, ("row", "value"), seen["score_row"]),
                      strobe_recorder(sparse.k_fetch, sparse.k.addr, seen["k_fetch"])]

    async def testbench(ctx):
        ctx.set(rm.clear, 1)
        await ctx.tick()
        ctx.set(rm.clear, 0)
        for e, name in ((dense, "dense"), (sparse, "sparse")):
            if e is None:
                continue
            ctx.set(e.tokens, tokens)
            ctx.set(e.globals, len(gcols))
            ctx.set(e.head_base, head_base)
            ctx.set(e.start, 1)
        if dense:
            ctx.set(dense.gcols_base, HEAD * p.max_global)
        if sparse:
            ctx.set(sparse.nnz, len(csc))
            ctx.set(sparse.list_base, list_base)
        await ctx.tick()
        for e in engines:
            ctx.set(e.start, 0)
        cycle = 1
        while True:
            for e, name in ((dense, "dense"), (sparse, "sparse")):
                if e is not None and name not in seen["cycles"] and not ctx.get(e.busy):
                    seen["cycles"][name] = cycle
            if len(seen["cycles"]) == len(engines):
                break
            await ctx.tick()
            cycle += 1
            assert cycle < 100_000, "the engines hang"
        if sparse:
            seen["error"] = ctx.get(sparse.error)
        # The row maxima: read in order (RowMax's read walks the rows), from the cycle
        # after RowMax's busy falls, its first address held a cycle.
        while ctx.get(rm.busy):
            await ctx.tick()
        ctx.set(rm.read.addr, 0)
        await ctx.tick()
        for row in range(tokens):
            ctx.set(rm.read.addr, row)
            await ctx.tick().repeat(RowMax.read_latency)
            seen["maxima"][row] = ctx.get(rm.read.data)
        await ctx.tick().repeat(2)

    # RowMax listens to the engines' outputs.
    class Wired(Elaboratable):
        def elaborate(self, platform):
            m = Module()
            m.submodules.bench = bench
            if dense:
                wiring.connect(m, dense.row_max, rm.dense)
            if sparse:
                wiring.connect(m, sparse.score_row, rm.sparse)
            return m

    run_sim(Wired(), testbench, processes=processes)
    return seen, csc


def golden(p, q, k, tokens, gcols, kept_sparse):
    scores = q @ k.T
    kept = torch.zeros(tokens, tokens, dtype=torch.bool)
    kept[:, list(gcols)] = True
    for i, j in kept_sparse:
        kept[i, j] = True
    return scores, kept


def check_phase1(p, tokens, gcols, kept_sparse, seed, extreme=False):
    """Runs the engines the parameters have (the other's share of the mask is not computed)
    and compares scores, addresses, row maxima, K reads and cycle counts."""
    with_dense, with_sparse = p.dense_macs > 0, p.sparse_macs > 0
    q, k = operands(p, tokens, seed, extreme)
    seen, csc = run_phase1(p, tokens, gcols, kept_sparse if with_sparse else set(), q, k,
                           with_dense=with_dense, with_sparse=with_sparse)
    scores, kept = golden(p, q, k, tokens, gcols, kept_sparse)
    g = len(gcols)
    if with_dense:
        want = [(i * p.max_global + j, int(scores[i, c]))
                for i in range(tokens) for j, c in enumerate(gcols)]
        assert seen["dense"] == want                   # in job order, each address once
        want_max = [(i, int(scores[i, list(gcols)].max())) for i in range(tokens)] \
            if g else []
        assert seen["row_max"] == want_max
        assert seen["cycles"]["dense"] == DenseSddmm.run_cycles(p, tokens, g)
    if with_sparse:
        assert seen["sparse"] == [(pos, int(scores[i, j])) for j, i, pos in csc]
        assert seen["score_row"] == [(i, int(scores[i, j])) for j, i, pos in csc]
        cols = sorted({j for j, _, _ in csc})
        # once per column (the address of the row's first word)
        assert seen["k_fetch"] == [(HEAD * p.max_tokens + j) * p.beats for j in cols]
        assert seen["cycles"]["sparse"] == SparseSddmm.run_cycles(p, len(csc))
        assert seen["error"] == 0
    # The row maxima over both engines (rows with a kept entry of an engine that ran).
    ran = torch.zeros_like(kept)
    is_global = torch.zeros(tokens, dtype=torch.bool)
    is_global[list(gcols)] = True
    if with_dense:
        ran[:, is_global] = True
    if with_sparse:
        ran[:, ~is_global] = True
    kept &= ran
    lowest = torch.iinfo(torch.int64).min
    want = torch.where(kept, scores, lowest).amax(dim=-1)
    for row in range(tokens):
        if kept[row].any():
            assert seen["maxima"][row] == int(want[row]), row
    return seen


# (d, dense DPUs, sparse DPUs): the DPUs' sum divides t = d/8 (the MAC units divide d)
POINTS = [(8, 1, 0), (8, 0, 1),                                   # t = 1
          (16, 1, 1), (16, 2, 0), (16, 0, 2),                     # t = 2
          (64, 1, 7), (64, 3, 5), (64, 7, 1), (64, 8, 0), (64, 0, 8)]   # t = 8


@pytest.mark.parametrize("d, dense, sparse", POINTS)
def test_phase1_scores_and_row_maxima(d, dense, sparse):
    p = make_params(d, dense, sparse)
    tokens, gcols = 7, (1, 5)                 # global columns anywhere among the tokens
    kept = sparse_region(tokens, gcols, 0.5, seed=dense + 10 * sparse, empty_cols=(4,),
                         empty_rows=(2,))
    check_phase1(p, tokens, gcols, kept, seed=d + dense)


def test_phase1_edges():
    p = make_params(16, 1, 1)
    # N = 1: one global column, no sparse region.
    check_phase1(p, 1, (0,), set(), seed=1)
    # N = max_tokens, most-negative operands everywhere; a dense region and a sparse one.
    n = p.max_tokens
    check_phase1(p, n, (0, 4, 8), sparse_region(n, (0, 4, 8), 0.4, seed=5), seed=2,
                 extreme=True)
    p = make_params(64, 7, 1, max_tokens=13, max_global=4, capacity=120)
    gcols = (2, 3, 7, 12)
    check_phase1(p, 13, gcols, sparse_region(13, gcols, 0.3, seed=6), seed=3, extreme=True)
    # A larger odd N at d = 64, both engines at partial occupancy.
    p = make_params(64, 3, 5, max_tokens=23, max_global=6, capacity=300)
    gcols = (1, 4, 5, 11, 16, 20)
    check_phase1(p, 21, gcols, sparse_region(21, gcols, 0.3, seed=7, empty_cols=(9, 10),
                                             empty_rows=(0, 20)), seed=4)
    # Full dense (g = N = max_global), no sparse entries: the sparser engine idles.
    p = make_params(16, 1, 1, max_tokens=5, max_global=5, capacity=20)
    check_phase1(p, 5, tuple(range(5)), set(), seed=3)
    # No global columns: the denser engine idles, the sparse region has a whole column.
    kept = sparse_region(5, (), 0.5, seed=4) | {(i, 3) for i in range(5)}
    check_phase1(p, 5, (), kept, seed=4)


@pytest.mark.parametrize("p", [
    VitcodParams(heads=3, dense_macs=8, sparse_macs=56),
    VitcodParams(heads=2)], ids=["1+7dpus", "1+3dpus_beats2"])
def test_phase1_deit_tiny_head(p):
    """d = 64 on N = max_tokens = 197 (head 1): 1 + 7 DPUs with one-word rows, and the
    default's engines (1 + 3 DPUs, rows in two words)."""
    tokens, gcols = p.max_tokens, (0, 100, 196)
    kept = sparse_region(tokens, gcols, 0.02, seed=8)
    assert 0 < len(kept) <= p.sparse_capacity
    check_phase1(p, tokens, gcols, kept, seed=9)


def test_cycle_counts():
    """The formulas at full and partial occupancy, by hand (docstrings' constants; L, the
    bank's latency, was 2 and R, q's and k's read latency, 1 when they were written:
    14 = 11 + R + L; the sparser engine's C, the CSC list's read latency, was 1 then: its
    11 is 10 + C)."""
    L, R, C = MacBank.latency, QK_READ_LATENCY, CSC_READ_LATENCY
    for dense, sparse, t in ((8, 8, 8), (7, 1, 8), (1, 7, 8), (2, 2, 2)):
        p = make_params(8 * t, dense, t - dense)
        p_sparse = make_params(8 * t, t - sparse, sparse)
        tokens, g, nnz = 5, 3, 11
        jobs = tokens * g
        assert issue_cycle(jobs - 1, dense, t) == (jobs - 1) // dense * t + (jobs - 1) % dense
        assert DenseSddmm.run_cycles(p, tokens, g) == (issue_cycle(jobs - 1, dense, t) + t
                                                      + 11 + R + L + dense)
        assert SparseSddmm.run_cycles(p_sparse, nnz) == (issue_cycle(nnz - 1, sparse, t) + t
                                                        + 10 + C + R + L + sparse)
        assert DenseSddmm.run_cycles(p, tokens, 0) == SparseSddmm.run_cycles(p_sparse, 0) == 1
    p = make_params(64, 8, 0)
    assert DenseSddmm.run_cycles(p, 5, 3) == 15 + 8 + 10 + R + L + 8  # a job a cycle
    p = make_params(64, 7, 1)
    assert DenseSddmm.run_cycles(p, 5, 3) == 16 + 8 + 11 + R + L + 7      # 7 of every 8 cycles
    # The ideal g*N*t/n plus the latency, at n | jobs:
    # (jobs/n - 1)*t + n - 1 + t + 11 + R + L + n.
    # Sparse, 14 entries on 7 DPUs: ideally nnz*t/n = 16 cycles; the last issue is in cycle
    # 16 - (t - n) - 1 = 14 (no wait for the idle slot), then t + 10 + C + R + L + n.
    p = make_params(64, 1, 7)
    assert SparseSddmm.run_cycles(p, 14) == 14 + 8 + 10 + C + R + L + 7
    assert SparseSddmm.run_cycles(make_params(64, 0, 8), 14) == 13 + 8 + 10 + C + R + L + 8


# -- the sparser engine's error flag -------------------------------------------------------


def run_sparse(p, tokens, globals_, entries, q, k, runs=1):
    """Runs SparseSddmm on raw CSC `entries` (col, row, pos) `runs` times; per run: error,
    cycles and the scores written."""
    sparse = SparseSddmm(p)
    bench = Bench(p, sparse)
    results = []
    written = []

    async def testbench(ctx):
        for _ in range(runs):
            written.clear()
            cycles = await run_until_idle(ctx, sparse, {
                "tokens": tokens, "globals": globals_, "nnz": len(entries),
                "head_base": HEAD * p.max_tokens, "list_base": HEAD * p.sparse_capacity})
            results.append((ctx.get(sparse.error), cycles, list(written)))

    run_sim(bench, testbench, processes=[
        row_model(sparse.q, row_memory(p, q)), row_model(sparse.k, row_memory(p, k)),
        read_model(sparse.csc, list_memory(p, csc_fields(p), entries),
                   latency=CSC_READ_LATENCY),
        recorder(sparse.score, ("addr", "data"), written)])
    return results


MALFORMED = {            # CSC entries (col, row, pos) with N = 6, g = 2; the good ones
    "col beyond N": ([(2, 0, 0), (6, 1, 1)], [0]),
    "row beyond N": ([(2, 0, 0), (2, 6, 1)], [0]),
    "pos beyond nnz": ([(2, 0, 0), (3, 1, 2)], [0]),
    "col decreasing": ([(3, 0, 0), (2, 1, 1)], [0]),
    "row repeated": ([(2, 1, 0), (2, 1, 1)], [0]),
    "row decreasing": ([(2, 3, 0), (2, 1, 1), (4, 0, 2)], [0, 2]),
}


def test_sparse_error_flags():
    p = make_params(16, 0, 2, max_tokens=8)
    tokens, globals_ = 6, 2
    q, k = operands(p, tokens, 7)
    scores = q @ k.T
    for name, (entries, good) in MALFORMED.items():
        (error, cycles, written), (error2, _, _) = run_sparse(
            p, tokens, globals_, entries, q, k, runs=2)
        assert error == 1 and error2 == 1, name
        assert cycles == SparseSddmm.run_cycles(p, len(entries)), name   # finishes on time
        # The well-formed entries are written, the flagged ones are not.
        want = [(entries[n][2], int(scores[entries[n][1], entries[n][0]])) for n in good]
        assert written == want, name
    # A good list after a bad one: the flag is cleared by start.
    good = [(2, 0, 0), (2, 4, 1), (5, 1, 2)]
    sparse = SparseSddmm(p)
    bench = Bench(p, sparse)
    entries = {"bad": MALFORMED["row repeated"][0], "good": good}
    flags = []

    async def testbench(ctx):
        for base in (0, 1):
            await run_until_idle(ctx, sparse, {
                "tokens": tokens, "globals": globals_, "nnz": 2 + base, "head_base": 0,
                "list_base": base * p.sparse_capacity})
            flags.append(ctx.get(sparse.error))

    memory = [0] * (p.heads * p.sparse_capacity)
    for base, name in ((0, "bad"), (1, "good")):
        for n, entry in enumerate(entries[name]):
            memory[base * p.sparse_capacity + n] = pack_fields(csc_fields(p), entry)
    run_sim(bench, testbench, processes=[
        row_model(sparse.q, [0] * 16), row_model(sparse.k, [0] * 16),
        read_model(sparse.csc, memory, latency=CSC_READ_LATENCY)])
    assert flags == [1, 0]
    # Columns below g are sparse columns like any other (the global ones are a table).
    (error, _, written), = run_sparse(p, tokens, globals_, [(0, 1, 0), (1, 0, 1)], q, k)
    assert error == 0 and written == [(0, int(scores[1, 0])), (1, int(scores[0, 1]))]


# -- CsrCheck ------------------------------------------------------------------------------


def run_csr_check(p, tokens, jobs):
    """CsrCheck over `jobs` [(gcols, CSR entries)], each in the next head's slots; per job
    (error, cycles)."""
    dut = CsrCheck(p)
    results = []
    memory = [0] * (p.heads * p.sparse_capacity)
    gmemory = [0] * (p.heads * p.max_global)

    async def testbench(ctx):
        for n, (gcols, entries) in enumerate(jobs):
            base, gbase = (n % p.heads) * p.sparse_capacity, (n % p.heads) * p.max_global
            for m_, entry in enumerate(entries):
                memory[base + m_] = pack_fields(csr_fields(p), entry)
            for j, col in enumerate(gcols):
                gmemory[gbase + j] = col
            cycles = await run_until_idle(ctx, dut, {
                "tokens": tokens, "globals": len(gcols), "nnz": len(entries),
                "list_base": base, "gcols_base": gbase})
            results.append((ctx.get(dut.error), cycles))

    run_sim(dut, testbench, processes=[read_model(dut.csr, memory, latency=CSR_READ_LATENCY),
                                       read_model(dut.gcols, gmemory)])
    return results


def test_csr_check():
    p = make_params(16, 1, 1, max_tokens=8, capacity=24)
    tokens, gcols = 6, (1, 4)
    kept = sparse_region(tokens, gcols, 0.5, seed=11)
    _, good = index_lists(kept)
    bad = {
        "row beyond N": (gcols, [(0, 2), (6, 3)]),
        "col a global column": (gcols, [(0, 2), (1, 1)]),
        "col the last global column": (gcols, [(0, 2), (5, 4)]),
        "col beyond N": (gcols, [(0, 2), (1, 6)]),
        "row decreasing": (gcols, [(1, 2), (0, 3)]),
        "col repeated": (gcols, [(1, 2), (1, 2)]),
        "col decreasing": (gcols, [(1, 3), (1, 2)]),
        "global columns unsorted": ((4, 1), good),
        "global column repeated": ((1, 1), good),
        "global column beyond N": ((1, 6), good),
        "global columns unsorted, no CSR entry": ((3, 2), []),
        "no global column, no entry": ((), []),
        "no global column, a row without entry": ((), [(0, 0), (2, 1)]),
    }
    jobs = [(gcols, good), (gcols, []), ((0,), []), ((), [(r, 0) for r in range(tokens)])]
    for job in bad.values():
        jobs += [job, (gcols, good)]        # each bad job, then the flag cleared by a good one
    results = run_csr_check(p, tokens, jobs)
    # busy for g + nnz + CHECK_TAIL cycles (the model's constant)
    assert results[0] == (0, 2 + len(good) + CHECK_TAIL) and results[1] == (0, 2 + CHECK_TAIL)
    assert results[2] == (0, 1 + CHECK_TAIL) and results[3] == (0, tokens + CHECK_TAIL)
    for n, (name, (g, entries)) in enumerate(bad.items()):
        assert results[4 + 2 * n] == (1, CsrCheck.run_cycles(len(entries), len(g))), name
        assert results[5 + 2 * n] == (0, 2 + len(good) + CHECK_TAIL), name


def test_csr_check_global_lookup_over_groups():
    """N = 40 (is_global in groups of GLOBAL_GROUP bits, looked up in two steps): a CSR
    entry in any global column is flagged, whatever its group; its neighbours in the same
    group and across a group's edge are not."""
    from celine.rtl.common.pick import GROUP as GLOBAL_GROUP
    p = make_params(16, 1, 1, max_tokens=40, capacity=40)
    tokens, gcols = 40, (3, GLOBAL_GROUP + 5, 2 * GLOBAL_GROUP)
    assert p.token_bits > GLOBAL_GROUP.bit_length() - 1
    neighbours = [(0, 2), (0, 4), (1, GLOBAL_GROUP + 4), (1, GLOBAL_GROUP + 6),
                  (2, 2 * GLOBAL_GROUP - 1), (2, 2 * GLOBAL_GROUP + 1)]
    jobs = [(gcols, neighbours)]
    for col in gcols:
        jobs += [(gcols, [(0, 2), (1, col)]), (gcols, neighbours)]
    results = run_csr_check(p, tokens, jobs)
    assert [error for error, _ in results] == [0] + [1, 0] * len(gcols)


# -- RowMax alone: arbitrary sparse updates, the same row back to back ---------------------


def test_row_max_read_modify_write():
    p = make_params(16, 1, 1, max_tokens=6, capacity=20)
    dut = RowMax(p)
    rng = random.Random(5)
    lo, hi = -(1 << (p.score_width - 1)), (1 << (p.score_width - 1)) - 1
    rounds = []
    for _ in range(8):
        dense = {row: rng.randint(lo, hi) for row in range(p.max_tokens) if rng.random() < 0.5}
        sparse = []
        for _ in range(40):
            row = sparse[-1][0] if sparse and rng.random() < 0.4 else rng.randrange(p.max_tokens)
            sparse.append((row, rng.choice([lo, hi, *(rng.randint(lo, hi) for _ in range(4))])))
        rounds.append((dense, sparse))

    async def testbench(ctx):
        for dense, sparse in rounds:
            ctx.set(dut.clear, 1)
            await ctx.tick()
            ctx.set(dut.clear, 0)
            dense_items = list(dense.items())
            # Sparse scores back to back in the first round, with idle cycles between
            # some in the others (a row's maximum forwarded from s3 across a gap).
            gaps = [False] * len(sparse) if not rounds.index((dense, sparse)) else \
                [rng.random() < 0.3 for _ in sparse]
            n = s = 0
            last_sparse = False
            while n < len(dense_items) or s < len(sparse):
                last_sparse = False
                if n < len(dense_items):
                    ctx.set(dut.dense.row, dense_items[n][0])
                    ctx.set(dut.dense.value, dense_items[n][1])
                    ctx.set(dut.dense.en, 1)
                    n += 1
                if s < len(sparse):
                    if gaps[s]:
                        gaps[s] = False
                    else:
                        ctx.set(dut.sparse.row, sparse[s][0])
                        ctx.set(dut.sparse.value, sparse[s][1])
                        ctx.set(dut.sparse.en, 1)
                        s += 1
                        last_sparse = True
                await ctx.tick()
                ctx.set(dut.dense.en, 0)
                ctx.set(dut.sparse.en, 0)
            assert ctx.get(dut.busy) == last_sparse
            while ctx.get(dut.busy):
                await ctx.tick()
            # The rows in order (the read walks them), the first address held a cycle.
            ctx.set(dut.read.addr, 0)
            await ctx.tick()
            for row in range(p.max_tokens):
                values = [v for r, v in sparse if r == row]
                if row in dense:
                    values.append(dense[row])
                ctx.set(dut.read.addr, row)
                await ctx.tick().repeat(RowMax.read_latency)
                if values:
                    assert ctx.get(dut.read.data) == max(values), row

    run_sim(dut, testbench)


async def _present(ctx, port, items):
    """(row, value) pairs on RowMax's `port` (dense or sparse), one a cycle."""
    for row, value in items:
        ctx.set(port.row, row)
        ctx.set(port.value, value)
        ctx.set(port.en, 1)
        await ctx.tick()
    ctx.set(port.en, 0)


@pytest.mark.parametrize("apart", [1, 2, 3, 4])
def test_row_max_sees_a_row_first_written_apart_scores_before(apart):
    """A row's first score, then the same row `apart` scores later (other rows between):
    the first must count (its valid bit set in flight: forwarded at 1, 2 and 3 apart), and
    the later, smaller score must not replace it. The random test above rarely meets this
    with nothing else (a dense maximum, an earlier round's value) masking it."""
    p = make_params(16, 1, 1, max_tokens=6, capacity=20)
    dut = RowMax(p)
    lo = -(1 << (p.score_width - 1))
    scores = [(0, 100)] + [(1 + k % 5, lo) for k in range(apart - 1)] + [(0, 5)]

    async def testbench(ctx):
        for first in (lo, 100):
            ctx.set(dut.clear, 1)
            await ctx.tick()
            ctx.set(dut.clear, 0)
            await _present(ctx, dut.sparse, [(0, first)] + scores[1:])
            while ctx.get(dut.busy):
                await ctx.tick()
            ctx.set(dut.read.addr, 0)         # held a cycle before the read
            await ctx.tick().repeat(1 + RowMax.read_latency)
            assert ctx.get(dut.read.data) == max(first, 5)

    run_sim(dut, testbench)


def test_row_max_read_walks_the_rows():
    """The read port as the softmax unit drives it: the address holds or steps to the next
    row each cycle (at random, runs of steps included), `load` at random; every cycle
    `data` is the maximum of the row addressed read_latency cycles before when `load`
    was high the cycle before, else what it held (RowMax reads a cycle ahead, at the
    address and the next row, and picks the one the address then names)."""
    p = make_params(16, 1, 1, max_tokens=12, capacity=20)
    dut = RowMax(p)
    rng = random.Random(9)
    lo, hi = -(1 << (p.score_width - 1)), (1 << (p.score_width - 1)) - 1
    dense = {row: rng.randint(lo, hi) for row in range(p.max_tokens) if rng.random() < 0.6}
    sparse = {row: rng.randint(lo, hi) for row in range(p.max_tokens)
              if row not in dense or rng.random() < 0.5}
    sparse[0] = lo                     # the most negative score, against a dense maximum
    dense[0] = lo + 1

    async def testbench(ctx):
        for row, value in sparse.items():
            ctx.set(dut.sparse.row, row)
            ctx.set(dut.sparse.value, value)
            ctx.set(dut.sparse.en, 1)
            if row in dense:
                ctx.set(dut.dense.row, row)
                ctx.set(dut.dense.value, dense[row])
                ctx.set(dut.dense.en, 1)
            await ctx.tick()
            ctx.set(dut.dense.en, 0)
        ctx.set(dut.sparse.en, 0)
        await _present(ctx, dut.dense, [(row, v) for row, v in dense.items() if row not in sparse])
        while ctx.get(dut.busy):
            await ctx.tick()
        def maximum(row):
            return max(v[row] for v in (dense, sparse) if row in v)

        for _walk in range(3):
            # Row 0 read and loaded (its address held, as the walk's first always is).
            ctx.set(dut.read.addr, 0)
            ctx.set(dut.read.load, 1)
            await ctx.tick().repeat(1 + RowMax.read_latency)
            held = maximum(0)
            assert ctx.get(dut.read.data) == held
            addrs, loads = [0] * (1 + RowMax.read_latency), [1] * (1 + RowMax.read_latency)
            while addrs[-1] < p.max_tokens - 1:
                step = rng.random() < 0.6
                addrs.append(addrs[-1] + step)
                loads.append(int(rng.random() < 0.7))
                ctx.set(dut.read.addr, addrs[-1])
                ctx.set(dut.read.load, loads[-1])
                await ctx.tick()
                t = len(addrs)               # the cycle now (addrs[k]: cycle k's address)
                if loads[t - 1]:
                    held = maximum(addrs[t - RowMax.read_latency])
                assert ctx.get(dut.read.data) == held, (addrs, loads)

    run_sim(dut, testbench)


# -- parameters ----------------------------------------------------------------------------


def test_parameters_are_checked():
    with pytest.raises(TypeError, match="^params must be a VitcodParams, not 3$"):
        DenseSddmm(3)
    only_sparse = VitcodParams(head_dim=16, max_tokens=8, max_global=0, dense_macs=0,
                               sparse_macs=16, sparse_capacity=8, out_lanes=8)
    with pytest.raises(ValueError, match="^dense_macs must be at least 8 for a denser engine, "
                                         "not 0$"):
        DenseSddmm(only_sparse)
    only_dense = VitcodParams(head_dim=16, max_tokens=8, max_global=8, dense_macs=16,
                              sparse_macs=0, sparse_capacity=0, out_lanes=8)
    with pytest.raises(ValueError, match="^sparse_macs must be at least 8 for a sparser engine, "
                                         "not 0$"):
        SparseSddmm(only_dense)
    p = make_params(16, 1, 1)
    with pytest.raises(ValueError, match="^dpus must be between 1 and 2, not 3$"):
        DpuArray(p, 3, lead=1)
    with pytest.raises(TypeError, match="^params must be a VitcodParams, not None$"):
        Dpu(None)
