"""The ViTCoD softmax unit and its parts (celine/rtl/vitcod/{exp_unit,divider,softmax_unit}.py)
in the Amaranth simulator, bit-exact (==) against celine.golden.vitcod.attention."""

import random

import pytest
import torch
from amaranth.hdl import Elaboratable, Module, Mux, Signal
from amaranth.lib.memory import Memory

from celine.engines.vitcod.spec import CSR_READ_LATENCY, X_BITS, VitcodParams
from celine.golden.vitcod.attention import exp_int, exp_scale, softmax_int
from celine.rtl.vitcod.divider import ReciprocalPipeline
from celine.rtl.vitcod.exp_unit import ExpUnit
from celine.rtl.vitcod.softmax_unit import (ROW_MAX_READ_LATENCY, SCORE_READ_LATENCY,
                                           SoftmaxUnit)
from celine.sim.amaranth_sim import run_sim

PARAMS = VitcodParams(head_dim=64, max_tokens=64, heads=2, max_global=64,
                      sparse_capacity=64 * 64, dense_macs=8, sparse_macs=56)
X_MAX = (1 << X_BITS) - 1
# With `entries` always ready, a head takes at most entries + (its longest row) + this
# many cycles from start to its last entry: the exponential's and the divider's latencies
# and 17 + CSR_READ_LATENCY (a row's first CSR entry waits for the prefetch; stage 1b's
# registers before the subtraction): 50 at PARAMS (measured in
# test_softmax_unit_throughput: 45 with dense columns and, with g = 0, 50, the bound).
THROUGHPUT_CONSTANT = ExpUnit.latency + PARAMS.recip_width + 17 + CSR_READ_LATENCY


# -- the parts: fixed-latency pipelines ------------------------------------------------------


def _drive(dut, vectors, output, seed):
    """Offer `vectors` (dicts of input values) to a fixed-latency pipeline with random idle
    cycles (garbage on the inputs then) and a cycle count as the tag; return `output`
    of each out_valid cycle, checking each comes `dut.latency` cycles after its input."""
    rng = random.Random(seed)
    got, sent, arrived = [], [], []

    async def testbench(ctx):
        pending = list(vectors)
        cycle = 0
        while pending or len(arrived) < len(sent):
            valid = bool(pending) and rng.random() >= 0.2
            values = pending.pop(0) if valid else {k: 0 for k in vectors[0]}
            for name, value in values.items():
                ctx.set(getattr(dut, name), value)
            ctx.set(dut.valid, valid)
            ctx.set(dut.tag, cycle & 0xFF)
            if valid:
                sent.append(cycle)
            await ctx.tick()
            cycle += 1
            if ctx.get(dut.out_valid):
                got.append(ctx.get(getattr(dut, output)))
                arrived.append((ctx.get(dut.out_tag), cycle))

    run_sim(dut, testbench)
    assert [tag for tag, _ in arrived] == [c & 0xFF for c in sent]
    assert [at - c for (_, at), c in zip(arrived, sent)] == [dut.latency] * len(sent)
    return got


def test_exp_unit_matches_exp_int():
    rng = random.Random(11)
    edges = [(x, mult, shift) for x in (0, 1, 4095, 4096, X_MAX) for mult in (0, 1, 65535)
             for shift in (0, 1, 12, 32, 33, 63)]
    # Multipliers of every magnitude, so that z's integer part n covers 0 .. past the
    # clamp at 18, and small x at small shifts (n = 0, every table entry).
    spread = [(rng.randrange(X_MAX + 1), rng.randrange(1 << rng.randrange(1, 17)),
               rng.randrange(64)) for _ in range(2500)]
    small = [(rng.randrange(4096), rng.randrange(1 << 16), rng.randrange(20))
             for _ in range(500)]
    vectors = edges + spread + small
    x, mult, shift = (torch.tensor(column) for column in zip(*vectors))
    want = exp_int(x, mult, shift).tolist()
    got = _drive(ExpUnit(tag=8), [{"x": a, "exp_mult": b, "exp_shift": c}
                                  for a, b, c in vectors], "e", seed=5)
    assert got == want
    assert {0, 1, 1 << 16} <= set(want)


def test_reciprocal_pipeline_matches_division():
    for params in (PARAMS, VitcodParams(), VitcodParams(max_tokens=1024, prob_bits=4)):
        rng = random.Random(params.max_tokens)
        top = (1 << params.sum_width) - 1
        sums = [1 << 16, (1 << 16) + 1, top, top - 1, params.max_tokens << 16]
        sums += [rng.randrange(1 << 16, top + 1) for _ in range(400)]
        sums += [rng.randrange(1 << 16, 1 << 18) for _ in range(100)]
        big_r = params.recip_shift
        got = _drive(ReciprocalPipeline(params, tag=8), [{"s": s} for s in sums], "r",
                     seed=params.sum_width)
        assert got == [((1 << big_r) + s // 2) // s for s in sums]


def test_parts_reject_bad_arguments():
    with pytest.raises(TypeError, match=r"^tag must be a data layout or shape, not 'x'$"):
        ExpUnit(tag="x")
    with pytest.raises(TypeError, match=r"^params must be a VitcodParams, not 3$"):
        ReciprocalPipeline(3)
    with pytest.raises(TypeError, match=r"^tag must be a data layout or shape, not 1.5$"):
        ReciprocalPipeline(PARAMS, tag=1.5)
    with pytest.raises(TypeError, match=r"^params must be a VitcodParams, not None$"):
        SoftmaxUnit(None)


# -- the softmax unit ---------------------------------------------------------------------------


class Head:
    """One head's softmax input as the SDDMM phase leaves it, and the expected stream.

    The kept mask keeps g random columns whole (the global tokens: `gcols`, ascending, or
    the first g with `leading`) and a random `density` of the rest; a row the draw leaves
    empty gets one random sparse entry."""

    def __init__(self, params, tokens, g, density, *, seed, operand=None, exp_mult=None,
                 exp_shift=None, list_base=0, gcols_base=0, leading=False):
        gen = torch.Generator().manual_seed(seed)
        d = params.head_dim
        if operand is None:
            q = torch.randint(-128, 128, (tokens, d), generator=gen)
            k = torch.randint(-128, 128, (tokens, d), generator=gen)
        else:
            q = k = torch.full((tokens, d), operand)
        gcols = list(range(g)) if leading else \
            sorted(torch.randperm(tokens, generator=gen)[:g].tolist())
        others = [j for j in range(tokens) if j not in gcols]
        kept = torch.rand(tokens, tokens, generator=gen) < density
        kept[:, gcols] = True
        for i in range(tokens):
            if not kept[i].any():
                kept[i, others[int(torch.randint(len(others), (1,), generator=gen))]] = True
        scores = q @ k.T
        if exp_mult is None:                    # sq = sk = 0.02: realistic spreads of e
            exp_mult, exp_shift = exp_scale(0.02 * 0.02 / d ** 0.5)
        self.params, self.tokens, self.g = params, tokens, g
        self.exp_mult, self.exp_shift, self.list_base = exp_mult, exp_shift, list_base
        self.gcols, self.gcols_base = gcols, gcols_base
        self.csr = [(i, j) for i in range(tokens) for j in others if kept[i, j]]
        self.scores, self.kept = scores, kept
        self.row_max = [int(scores[i][kept[i]].max()) for i in range(tokens)]
        p = softmax_int(scores, kept, exp_mult=exp_mult, exp_shift=exp_shift,
                        params=params).p
        self.expected = []
        for i in range(tokens):
            row = gcols + [j for r, j in self.csr if r == i]
            self.expected += [{"row": i, "col": j, "p": int(p[i, j]),
                               "last": int(n == len(row) - 1)} for n, j in enumerate(row)]
        self.longest_row = int(kept.sum(dim=-1).max())

    def images(self):
        """The initial contents of the dense and sparse score memories, the CSR buffer
        (the list at list_base), the gcols buffer (at gcols_base) and the row maxima."""
        p, tb = self.params, self.params.token_bits
        dense = [0] * max(1, p.max_tokens * p.max_global)
        for i in range(self.tokens):
            for j, c in enumerate(self.gcols):
                dense[i * p.max_global + j] = int(self.scores[i, c])
        gcols = [0] * max(1, p.heads * p.max_global)
        for j, c in enumerate(self.gcols):
            gcols[self.gcols_base + j] = c
        sparse = [int(self.scores[i, j]) for i, j in self.csr]
        csr = [0] * max(1, p.heads * p.sparse_capacity)
        for n, (i, j) in enumerate(self.csr):
            csr[self.list_base + n] = i | j << tb
        return {"dense_scores": dense, "sparse_scores": sparse, "csr": csr, "gcols": gcols,
                "row_max": self.row_max}


class Bench(Elaboratable):
    """The softmax unit with its memories (synchronous reads, the score memories' and
    the CSR list's through a register more: SCORE_READ_LATENCY, CSR_READ_LATENCY; the row
    maxima's through two more, the last loading with `load`: ROW_MAX_READ_LATENCY),
    holding `images`."""

    def __init__(self, params, images):
        self.dut = SoftmaxUnit(params)
        self.params, self.images = params, images

    def elaborate(self, platform):
        m = Module()
        m.submodules.dut = dut = self.dut
        for name, image in self.images.items():
            port = getattr(dut, name)
            depth = 1 << port.addr.shape().width
            mem = Memory(shape=port.data.shape(), depth=depth,
                         init=image + [0] * (depth - len(image)))
            m.submodules[name] = mem
            read = mem.read_port()
            word = read.data
            if name in ("dense_scores", "sparse_scores", "csr"):
                latency = CSR_READ_LATENCY if name == "csr" else SCORE_READ_LATENCY
                for _ in range(latency - 1):
                    late = Signal.like(word)
                    m.d.sync += late.eq(word)
                    word = late
            if name == "row_max":
                # As RowMax reads (rtl/vitcod/row_max.py): a cycle ahead, at the address
                # and at the next row, then the one the address names a cycle later is
                # picked, and the last register loads with `load`. An address that jumps
                # (not held, not the next row) reads the wrong row, as in the hardware.
                assert ROW_MAX_READ_LATENCY == 3
                read_next = mem.read_port()
                m.d.comb += read_next.addr.eq(port.addr + 1)
                words = [Signal.like(word) for _ in range(2)]
                m.d.sync += [words[0].eq(read.data), words[1].eq(read_next.data)]
                last_addr, stepped = Signal.like(port.addr), Signal()
                m.d.sync += [last_addr.eq(port.addr), stepped.eq(port.addr != last_addr)]
                word = Signal.like(word)
                m.d.sync += word.eq(Mux(stepped, words[1], words[0]))
                held = Signal.like(word)
                with m.If(port.load):
                    m.d.sync += held.eq(word)
                word = held
            m.d.comb += [read.addr.eq(port.addr), port.data.eq(word)]
        return m


async def _run_head(ctx, dut, head, rng, backpressure, poke=False):
    """Start `head`, take its entries with random backpressure; return them and the cycles
    from start to the last one. With `poke`, start is pulsed again (with other inputs)
    a few cycles in: a busy unit ignores it."""
    ctx.set(dut.tokens, head.tokens)
    ctx.set(dut.globals, head.g)
    ctx.set(dut.nnz, len(head.csr))
    ctx.set(dut.exp_mult, head.exp_mult)
    ctx.set(dut.exp_shift, head.exp_shift)
    ctx.set(dut.list_base, head.list_base)
    ctx.set(dut.gcols_base, head.gcols_base)
    ctx.set(dut.start, 1)
    await ctx.tick()
    ctx.set(dut.start, 0)
    assert ctx.get(dut.busy)
    beats, cycles = [], 0
    while len(beats) < len(head.expected):
        ready = rng.random() >= backpressure
        ctx.set(dut.entries.ready, ready)
        if poke:
            ctx.set(dut.start, cycles == 5)
            ctx.set(dut.tokens, 1 if cycles == 5 else head.tokens)
            ctx.set(dut.exp_mult, 0 if cycles == 5 else head.exp_mult)
        _, _, payload, valid = await ctx.tick().sample(dut.entries.payload, dut.entries.valid)
        cycles += 1
        if ready and valid:
            beats.append({name: int(getattr(payload, name)) for name in
                          ("row", "col", "p", "last")})
    ctx.set(dut.entries.ready, 1)
    assert ctx.get(dut.busy)                     # falls the cycle after the last entry
    await ctx.tick()
    assert not ctx.get(dut.busy)
    for _ in range(20):                          # nothing more comes
        assert not ctx.get(dut.entries.valid)
        await ctx.tick()
    return beats, cycles


def _check_heads(params, heads, *, backpressure, seed=0, poke=False):
    """Run `heads` back to back on one unit (their memories' images merged: heads after
    the first differ from it only in their scales, list_base and gcols_base) and compare
    each."""
    images = heads[0].images()
    for head in heads[1:]:
        for name in ("csr", "gcols"):
            for n, word in enumerate(head.images()[name]):
                images[name][n] |= word
    bench = Bench(params, images)
    rng = random.Random(seed)
    results = []

    async def testbench(ctx):
        for head in heads:
            results.append(await _run_head(ctx, bench.dut, head, rng, backpressure, poke))

    run_sim(bench, testbench, deadline=0.05)         # 50,000 cycles: a hang fails fast
    for head, (beats, _) in zip(heads, results):
        assert beats == head.expected
    return [cycles for _, cycles in results]


@pytest.mark.parametrize("tokens, g, density, kw", [
    (1, 0, 1.0, {}),                                   # N = 1, one sparse entry
    (1, 1, 0.0, {"list_base": 64 * 64, "gcols_base": 64}),  # N = 1, one dense entry
    (17, 0, 0.3, {}),                                  # sparse only, rows of sparse entries
    (13, 3, 0.25, {"list_base": 64 * 64, "gcols_base": 64}),  # odd N, both kinds, head 1
    (13, 3, 0.25, {"leading": True}),                  # the global columns first
    (40, 2, 0.1, {}),                                  # 90 % sparse, rows only dense
    (9, 4, 0.0, {}),                                   # nnz = 0: dense only
    (20, 4, 0.3, {"operand": -128}),                   # all scores equal
    (11, 2, 0.4, {"exp_mult": 0, "exp_shift": 0}),     # every e = 2^16
    (12, 0, 0.5, {"exp_mult": 65535, "exp_shift": 0}), # most e = 0 (x clamps)
])
def test_softmax_unit_matches_golden(tokens, g, density, kw):
    head = Head(PARAMS, tokens, g, density, seed=tokens * 100 + g, **kw)
    _check_heads(PARAMS, [head], backpressure=0.3, seed=tokens)


def test_softmax_unit_full_dense():
    """N = max_tokens = max_global: a full mask, every row max_tokens entries long."""
    head = Head(PARAMS, 64, 64, 0.0, seed=64)
    assert len(head.expected) == 64 * 64
    _check_heads(PARAMS, [head], backpressure=0.3, seed=64)


def test_softmax_unit_heads_back_to_back():
    """A second and third start on the same unit: other scales, the list of another head;
    a start while busy is ignored."""
    first = Head(PARAMS, 15, 2, 0.3, seed=7)
    second = Head(PARAMS, 15, 2, 0.3, seed=7, exp_mult=40000, exp_shift=20,
                  list_base=64 * 64, gcols_base=64)
    third = Head(PARAMS, 15, 2, 0.3, seed=7, exp_mult=1, exp_shift=0, list_base=64 * 64,
                 gcols_base=64)
    _check_heads(PARAMS, [first, second, third], backpressure=0.5, seed=8, poke=True)


def test_softmax_unit_without_dense_engine():
    """max_global = 0 (no denser engine): the dense port is a one-word stub."""
    params = VitcodParams(head_dim=16, max_tokens=10, heads=1, max_global=0,
                          sparse_capacity=100, dense_macs=0, sparse_macs=16, prob_bits=8)
    head = Head(params, 10, 0, 0.4, seed=3)
    _check_heads(params, [head], backpressure=0.2, seed=3)


@pytest.mark.parametrize("tokens, g, density", [(64, 64, 0.0), (40, 0, 0.1), (48, 3, 0.2),
                                                (33, 1, 0.0)])
def test_softmax_unit_throughput(tokens, g, density):
    """One entry a cycle with `entries` always ready: start to last entry within entries +
    the longest row + THROUGHPUT_CONSTANT cycles."""
    head = Head(PARAMS, tokens, g, density, seed=tokens + g)
    cycles, = _check_heads(PARAMS, [head], backpressure=0.0)
    overhead = cycles - len(head.expected) - head.longest_row
    print(f"N={tokens} g={g} entries={len(head.expected)} longest row={head.longest_row} "
          f"cycles={cycles} constant={overhead}")
    assert overhead <= THROUGHPUT_CONSTANT
