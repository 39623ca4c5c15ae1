"""Amaranth-simulator unit tests of rtl/common against golden/ (LFSR, requantizer), and of
sim/amaranth_sim's reused simulators."""

import random

import pytest
from amaranth.hdl import Module, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
import torch

from celine.golden.lfsr import LFSR as GoldenLFSR
from celine.golden.quant import requantize
from celine.rtl.common.lfsr import LFSR
from celine.rtl.common.requant import Requantizer
from celine.sim.amaranth_sim import run_sim


@pytest.mark.parametrize("width,seed", [(16, 0xACE1), (8, 1), (16, 0xFFFF)])
def test_lfsr_matches_golden(width, seed):
    dut = LFSR(width=width, seed=seed)
    golden = GoldenLFSR(width=width, seed=seed)
    rng = random.Random(width)

    async def testbench(ctx):
        for _ in range(300):
            enable = rng.random() < 0.7
            ctx.set(dut.en, enable)
            assert ctx.get(dut.value) == golden.state
            await ctx.tick()
            if enable:
                golden.step()

    run_sim(dut, testbench)


def test_lfsr_is_maximal_length():
    golden = GoldenLFSR(width=8, seed=1)
    states = {golden.step() for _ in range(255)}
    assert len(states) == 255 and golden.state == 1


def test_requantizer_matches_golden():
    dut = Requantizer(in_width=24)
    rng = random.Random(3)
    cases = [(-(1 << 23), 65535, 0, 0), ((1 << 23) - 1, 65535, 63, 0), (-1, 1, 1, 0),
             (5, 1, 1, 0), (-5, 1, 1, 0), (123456, 7, 0, 1), (-(1 << 23), 1, 0, 1)]
    cases += [(rng.randint(-(1 << 23), (1 << 23) - 1), rng.randint(0, 65535),
               rng.randint(0, 63), int(rng.random() < 0.2)) for _ in range(300)]

    async def testbench(ctx):
        results = []
        ctx.set(dut.en, 1)
        for x, mult, shift, bypass in cases + [(0, 0, 0, 0)] * Requantizer.latency:
            ctx.set(dut.x, x)
            ctx.set(dut.multiplier, mult)
            ctx.set(dut.shift, shift)
            ctx.set(dut.bypass, bypass)
            await ctx.tick()
            results.append(ctx.get(dut.y))
        for (x, mult, shift, bypass), got in zip(cases, results[Requantizer.latency - 1:]):
            want = x if bypass else int(requantize(torch.tensor(x), mult, shift))
            assert got == want, (x, mult, shift, bypass)

    run_sim(dut, testbench)


def _boundary_cases(in_width, multiplier_width, shift_width, out_width, rng):
    """Values just around each shift's rounding and clamp boundaries (M = 1: p = x), the
    extreme products, and random ones: (x, multiplier, shift)."""
    lo_x, hi_x = -(1 << (in_width - 1)), (1 << (in_width - 1)) - 1
    lo, hi = -(1 << (out_width - 1)), (1 << (out_width - 1)) - 1
    max_mult = (1 << multiplier_width) - 1
    cases = []
    for shift in range(1 << shift_width):
        unit = 1 << shift
        for edge in (lo * unit - unit // 2, hi * unit + unit // 2, 0, unit // 2, -(unit // 2)):
            for delta in (-1, 0, 1):
                cases.append((min(max(edge + delta, lo_x), hi_x), 1, shift))
        cases += [(lo_x, max_mult, shift), (hi_x, max_mult, shift), (lo_x, 1, shift),
                  (rng.randint(lo_x, hi_x), rng.randint(0, max_mult), shift)]
    return cases


def _requantize_reference(x, mult, shift, out_width):
    """The golden requantize, computed in int64: where x * M + 2^(S-1) does not fit int64
    (the widest x or a shift past 62, which no engine uses) its formula in Python integers."""
    if abs(x * mult) < 1 << 62 and shift < 63:
        return int(requantize(torch.tensor(x), mult, shift, out_width))
    lo, hi = -(1 << (out_width - 1)), (1 << (out_width - 1)) - 1
    return min(max((x * mult + ((1 << shift) >> 1)) >> shift, lo), hi)


@pytest.mark.parametrize("in_width, multiplier_width, shift_width, out_width", [
    (28, 16, 6, 8), (9, 1, 6, 9), (40, 16, 6, 24), (12, 4, 3, 8), (20, 16, 6, 40), (8, 16, 6, 2),
    # x in one, two (17 + 18), three and four multiplier chunks; M too wide for a block.
    (18, 17, 6, 8), (35, 17, 6, 8), (52, 16, 6, 16), (64, 16, 7, 8), (64, 32, 7, 8),
    (2, 16, 6, 2),
    # M in two chunks: times one or two chunks of x (Taylor's divide: 33 x 25; an 18-bit
    # M: a 1-bit high chunk); three chunks of x by two of M: one wide multiply.
    (18, 32, 6, 8), (33, 25, 6, 33), (35, 18, 6, 8), (40, 25, 6, 16)])
def test_requantizer_boundaries(in_width, multiplier_width, shift_width, out_width):
    """Every shift, at the edges where rounding and saturation change, at the widths the
    engines use (and a result wider than the product, where nothing ever saturates)."""
    dut = Requantizer(in_width=in_width, multiplier_width=multiplier_width,
                      shift_width=shift_width, out_width=out_width)
    cases = _boundary_cases(in_width, multiplier_width, shift_width, out_width,
                            random.Random(in_width))

    async def testbench(ctx):
        results = []
        ctx.set(dut.en, 1)
        for x, mult, shift in cases + [(0, 0, 0)] * Requantizer.latency:
            ctx.set(dut.x, x)
            ctx.set(dut.multiplier, mult)
            ctx.set(dut.shift, shift)
            await ctx.tick()
            results.append(ctx.get(dut.y))
        for (x, mult, shift), got in zip(cases, results[Requantizer.latency - 1:]):
            assert got == _requantize_reference(x, mult, shift, out_width), (x, mult, shift)

    run_sim(dut, testbench)


def test_requantizer_holds_without_enable():
    dut = Requantizer(in_width=16)

    async def testbench(ctx):
        ctx.set(dut.en, 1)
        ctx.set(dut.x, 300)
        ctx.set(dut.multiplier, 1)
        ctx.set(dut.shift, 1)
        await ctx.tick().repeat(Requantizer.latency)
        assert ctx.get(dut.y) == 127          # (300 + 1) >> 1 = 150, saturated
        ctx.set(dut.en, 0)
        ctx.set(dut.x, -300)
        await ctx.tick().repeat(3)
        assert ctx.get(dut.y) == 127

    run_sim(dut, testbench)


@pytest.mark.parametrize("make,error,message", [
    (lambda: LFSR(width=12), ValueError, r"^width must be 8 or 16 or 24 or 32, not 12$"),
    (lambda: LFSR(width=8, seed=0), ValueError, r"^seed must be between 1 and 255, not 0$"),
    (lambda: LFSR(seed="1"), TypeError, r"^seed must be an integer, not '1'$"),
    (lambda: Requantizer(in_width=1), ValueError, r"^in_width must be between 2 and 64, not 1$"),
    (lambda: Requantizer(in_width=8, out_width=65), ValueError,
     r"^out_width must be between 2 and 64, not 65$"),
    (lambda: Requantizer(in_width=8.0), TypeError, r"^in_width must be an integer, not 8.0$"),
])
def test_bad_parameters(make, error, message):
    with pytest.raises(error, match=message):
        make()


# -- comparisons with a constant, as logic ----------------------------------------------------

@pytest.mark.parametrize("shape", [unsigned(1), unsigned(4), signed(2), signed(5)],
                         ids=["u1", "u4", "s2", "s5"])
def test_constant_compares_match_python_for_every_value(shape):
    """greater_than / less_than against Python's `>` / `<` for every value of the shape and
    every constant from below its range to above it."""
    from amaranth.hdl import Module, Signal
    from celine.rtl.common.compare import greater_than, less_than
    from celine.sim.amaranth_sim import run_sim
    width = shape.width
    low = -(1 << (width - 1)) if shape.signed else 0
    values = range(low, low + (1 << width))
    constants = range(low - 2, low + (1 << width) + 2)
    m = Module()
    x = Signal(shape)
    outs = {}
    for c in constants:
        outs[c] = (Signal(name=f"gt_{c - low + 2}"), Signal(name=f"lt_{c - low + 2}"))
        m.d.comb += [outs[c][0].eq(greater_than(x, c)), outs[c][1].eq(less_than(x, c))]

    async def bench(ctx):
        for v in values:
            ctx.set(x, v)
            for c in constants:
                assert (ctx.get(outs[c][0]), ctx.get(outs[c][1])) == (v > c, v < c), (v, c)

    run_sim(m, bench)


@pytest.mark.parametrize("widths", [(1, 1), (4, 4), (3, 5), (5, 2)], ids=str)
def test_exceeds_matches_python_for_every_pair(widths):
    """exceeds(a, b) against Python's `a > b` for every pair of unsigned values (equal and
    unequal widths, the extremes included)."""
    from amaranth.hdl import Module, Signal
    from celine.rtl.common.compare import exceeds
    from celine.sim.amaranth_sim import run_sim
    a, b, out = Signal(widths[0]), Signal(widths[1]), Signal()
    m = Module()
    m.d.comb += out.eq(exceeds(a, b))

    async def bench(ctx):
        for x in range(1 << widths[0]):
            for y in range(1 << widths[1]):
                ctx.set(a, x)
                ctx.set(b, y)
                assert ctx.get(out) == (x > y), (x, y)

    run_sim(m, bench)


def test_exceeds_takes_unsigned_values():
    from amaranth.hdl import Signal
    from celine.rtl.common.compare import exceeds
    with pytest.raises(TypeError, match=r"^exceeds compares unsigned values \(bias signed ones "
                                        r"first\)$"):
        exceeds(Signal(signed(4)), Signal(4))


# -- amaranth_sim's reused simulators ------------------------------------------------------------

class _Counter(wiring.Component):
    """A count of cycles with `en` and a 4-word memory written at the count."""
    en: In(1)
    count: Out(8)

    def __init__(self, init=0):
        self.init = init
        super().__init__()
        self.memory = Memory(shape=8, depth=4, init=[9, 9, 9, 9])

    def elaborate(self, platform):
        m = Module()
        m.submodules.memory = self.memory
        write = self.memory.write_port()
        m.d.comb += [write.addr.eq(self.count), write.data.eq(self.count), write.en.eq(self.en)]
        with m.If(self.en):
            m.d.sync += self.count.eq(self.count + 1)
        return m


# The failed run leaves the other slots' testbenches unstarted; the reset discards them.
@pytest.mark.filterwarnings("ignore:coroutine .* was never awaited:RuntimeWarning")
def test_a_reused_simulator_starts_each_run_from_the_initial_state():
    from celine.sim.amaranth_sim import shared
    dut = shared(_Counter, init=0)
    assert shared(_Counter, init=0) is dut and shared(_Counter, init=1) is not dut
    assert shared(_Counter, init=[0]) is not shared(_Counter, init=[0])   # unhashable
    seen = []

    def bench(cycles):
        async def testbench(ctx):
            seen.append((ctx.get(dut.count), [ctx.get(dut.memory.data[i]) for i in range(4)]))
            ctx.set(dut.en, 1)
            await ctx.tick().repeat(cycles)
            seen.append(ctx.get(dut.count))
        return testbench

    async def idle(ctx):
        await ctx.tick()

    run_sim(dut, bench(3), reuse=True)
    run_sim(dut, idle, bench(2), reuse=True)      # other testbenches, in other slots
    with pytest.raises(AssertionError):
        run_sim(dut, lambda ctx: _fail(), reuse=True)
    run_sim(dut, bench(1), reuse=True)
    assert seen == [(0, [9] * 4), 3, (0, [9] * 4), 2, (0, [9] * 4), 1]


async def _fail():
    raise AssertionError("a failing testbench")
