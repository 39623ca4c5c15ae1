"""Unit tests of the Taylor pipeline's parts in the Amaranth simulator, its parameters and
the cycle model's bookkeeping."""

import random

import pytest
import torch

from celine.engines.taylor.cycles import cycles, estimate
from celine.golden.taylor import TaylorRegisters, reciprocal, taylor_head_int, taylor_int
from celine.golden.quant import requantize, round_shift, saturate
from celine.rtl.taylor.centering import CenteringUnit
from celine.rtl.taylor.output_lane import OutputLane
from celine.engines.taylor.spec import TaylorParams, registers
from celine.rtl.taylor.pipeline import TaylorPipeline
from celine.rtl.taylor.reciprocal import Reciprocal
from celine.rtl.taylor.shell_adapter import TaylorShellAdapter
from celine.sim.adapter_bench import AdapterBench
from celine.sim.amaranth_sim import run_sim, stream_get_n, stream_put_all
from celine.sim.taylor_cases import make_run, operands
from celine.spec.lanes import pack_lanes, unpack_lanes


def test_reciprocal_matches_golden():
    max_tokens = 300
    shift = TaylorParams(max_tokens=max_tokens).recip_shift
    dut = Reciprocal(shift=shift, n_width=max_tokens.bit_length())

    async def testbench(ctx):
        for n in [1, 2, 3, 7, 196, 197, 255, 256, 299, 300]:
            ctx.set(dut.n, n)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)
            await ctx.tick().repeat(dut.latency - 2)       # start was high in cycle 0
            assert not ctx.get(dut.done), n
            await ctx.tick()
            assert ctx.get(dut.done), n
            assert ctx.get(dut.recip) == reciprocal(n, max_tokens), n

    run_sim(dut, testbench)


def test_centering_unit_matches_golden():
    p = TaylorParams(head_dim=16, max_tokens=20, mac_units=16, heads=1)
    dut = CenteringUnit(p)
    rng = random.Random(3)
    lo, hi = p.operand_range
    kv_lo, kv_hi = p.max_tokens * lo * hi, p.max_tokens * lo * lo
    sum_lo, sum_hi = p.max_tokens * lo, p.max_tokens * hi
    cases = []
    for _ in range(40):
        extreme = rng.random() < 0.3
        kv = [rng.choice([kv_lo, kv_hi]) if extreme else rng.randint(kv_lo, kv_hi)
              for _ in range(p.tile_cols)]
        sum_k = sum_lo if extreme else rng.randint(sum_lo, sum_hi)
        sums_v = [rng.choice([sum_lo, sum_hi]) if extreme else rng.randint(sum_lo, sum_hi)
                  for _ in range(p.tile_cols)]
        tokens, shift = rng.randint(1, p.max_tokens), rng.choice([0, 1, 9, 20, 63])
        want = [int(saturate(round_shift(tokens * x - sum_k * y, shift), p.context_width))
                for x, y in zip(kv, sums_v)]
        cases.append((kv, sum_k, sums_v, tokens, shift, want))

    async def testbench(ctx):
        for kv, sum_k, sums_v, tokens, shift, want in cases:
            ctx.set(dut.kv, kv)
            ctx.set(dut.token_sum_k, sum_k)
            ctx.set(dut.token_sums_v, sums_v)
            ctx.set(dut.tokens, tokens)
            ctx.set(dut.ctx_shift, shift)
            await ctx.tick().repeat(dut.latency)
            assert [ctx.get(dut.context[j]) for j in range(p.tile_cols)] == want

    run_sim(dut, testbench)


def test_output_lane_matches_golden():
    p = TaylorParams(head_dim=8, max_tokens=9, mac_units=4, heads=1)
    dut = OutputLane(p)
    rng = random.Random(5)
    lo, hi = p.operand_range
    sums_v = [rng.choice([p.max_tokens * lo, p.max_tokens * hi, rng.randint(-300, 300)])
              for _ in range(p.head_dim)]
    score_max = (1 << (p.score_width - 1)) - 1
    elements = [(rng.choice([-score_max - 1, score_max, rng.randint(-5000, 5000)]),
                 rng.randrange(p.head_dim)) for _ in range(30)]
    tokens, v_mult, v_shift, out_mult, out_shift = 7, 65535, 3, 40000, 30

    def expected(score, column):
        num = score + int(round_shift(sums_v[column] * v_mult, v_shift))
        quot = int(round_shift(num * reciprocal(tokens, p.max_tokens), p.recip_shift))
        return int(requantize(quot, out_mult, out_shift, p.operand_width))

    async def testbench(ctx):
        ctx.set(dut.token_sums_v, sums_v)
        for name, value in (("v_mult", v_mult), ("v_shift", v_shift), ("out_mult", out_mult),
                            ("out_shift", out_shift),
                            ("recip", reciprocal(tokens, p.max_tokens))):
            ctx.set(getattr(dut, name), value)
        got = []
        for k in range(len(elements) + dut.latency):
            if k < len(elements):
                ctx.set(dut.valid, 1)
                ctx.set(dut.score, elements[k][0])
                ctx.set(dut.column, elements[k][1])
            else:
                ctx.set(dut.valid, 0)
            _clk, _rst, valid, out = await ctx.tick().sample(dut.out_valid, dut.out)
            if valid:
                got.append(out)
        assert got == [expected(*e) for e in elements]

    run_sim(dut, testbench)


# Each head its own output scale, a factor 2^5 apart (as a small-output and a large-output
# head would be calibrated): the pipeline must use head h's registers for head h's output.
PER_HEAD = TaylorRegisters(ctx_shift=9, v_mult=40000, v_shift=14, out_mult=(40000, 40000, 50000),
                           out_shift=(16, 21, 19))


@pytest.mark.parametrize("params,tokens,mask,kind,registers", [
    (dict(head_dim=8, max_tokens=6, mac_units=4, heads=2), 6, 0b00, "random", None),
    (dict(head_dim=8, max_tokens=6, mac_units=8, heads=2), 3, 0b01, "extreme", None),
    (dict(head_dim=8, max_tokens=6, mac_units=2, heads=3), 5, 0b000, "random", PER_HEAD),
    (dict(head_dim=8, max_tokens=6, mac_units=2, heads=3), 4, 0b010, "random", PER_HEAD),
])
def test_pipeline_in_amaranth_sim(params, tokens, mask, kind, registers):
    """The whole pipeline, stalls on both streams, checked beat for beat; the cycle model
    is checked on the same run without stalls."""
    p = TaylorParams(**params)
    run = make_run(p, tokens, seed=2, head_mask=mask, kind=kind, registers=registers)
    for idle, backpressure in ((0.3, 0.4), (0.0, 0.0)):
        dut = TaylorPipeline(p)
        rng = random.Random(7)
        got, timing = [], {}

        async def control(ctx):
            ctx.set(dut.tokens, tokens)
            ctx.set(dut.head_mask, mask)
            for name, value in run["registers"].items():
                ctx.set(getattr(dut, name), value)
            ctx.set(dut.start, 1)
            await ctx.tick()
            ctx.set(dut.start, 0)

        async def source(ctx):
            await ctx.tick()
            await stream_put_all(ctx, dut.i, run["beats"], rng=rng, idle_prob=idle)

        async def sink(ctx):
            if backpressure:
                got.extend(await stream_get_n(ctx, dut.o, len(run["expected"]), rng=rng,
                                              backpressure_prob=backpressure))
                return
            ctx.set(dut.o.ready, 1)
            edges = 0
            while len(got) < len(run["expected"]):
                _clk, _rst, beat, valid = await ctx.tick().sample(dut.o.payload, dut.o.valid)
                edges += 1
                if valid:
                    got.append({"data": [beat.data[n] for n in range(8)], "last": beat.last})
            timing["cycles"] = edges

        run_sim(dut, control, source, sink, deadline=1.0)
        assert got == run["expected"]
    assert timing["cycles"] == cycles(p, tokens, mask)


def test_pipeline_settings_are_the_registers():
    """One setting port per register but `tokens`, with its width and reset value; each
    head has its own output registers."""
    p = TaylorParams(heads=3, out_mult=9, out_shift=4)
    pipeline = TaylorPipeline(p)
    regs = registers(p)
    assert pipeline.settings == regs.names[1:] == (
        "head_mask", "ctx_shift", "v_mult", "v_shift", "out_mult_0", "out_shift_0",
        "out_mult_1", "out_shift_1", "out_mult_2", "out_shift_2")
    for name in pipeline.settings:
        port = getattr(pipeline, name)
        assert (len(port), port.init) == (regs[name].width, regs[name].reset), name


def operand_words(params, depth, x):
    """Tensor `x` (heads x tokens x head_dim) as a q/k/v buffer's words."""
    words = [0] * depth
    for h in range(x.shape[0]):
        for i in range(x.shape[1]):
            for b in range(params.row_beats):
                words[(h * params.max_tokens + i) * params.row_beats + b] = pack_lanes(
                    x[h, i, 8 * b:8 * b + 8].tolist(), params.operand_width)
    return words


def test_shell_adapter_gives_each_head_its_output_registers():
    """The registers out_mult_<h>, out_shift_<h> reach the pipeline through the adapter."""
    p = TaylorParams(head_dim=8, max_tokens=6, mac_units=2, heads=3)
    regs = PER_HEAD
    tokens, mask = 5, 0b010
    q, k, v = operands(p, tokens, seed=4)
    engine = TaylorShellAdapter(p)
    bench = AdapterBench(engine, {name: operand_words(p, engine.depth, x)
                                  for name, x in zip("qkv", (q, k, v))})
    words = []

    async def testbench(ctx):
        for name, value in {"tokens": tokens, "head_mask": mask, **regs.values(3)}.items():
            ctx.set(engine.registers[engine.register_map.index(name)], value)
        await ctx.tick()            # registers settle a cycle before start (docs/engines.md)
        ctx.set(engine.start, 1)
        await ctx.tick()
        ctx.set(engine.start, 0)
        for _ in range(5000):
            if not ctx.get(engine.busy):
                break
            await ctx.tick()
        assert ctx.get(engine.errors) == 0
        words.extend(ctx.get(bench.memories["out"].data[i]) for i in range(engine.depth))

    run_sim(bench, testbench)
    expected = taylor_int(q, k, v, regs, head_mask=mask, max_tokens=p.max_tokens)
    for h, want in zip((0, 2), expected):
        got = [sum((unpack_lanes(words[(h * p.max_tokens + i) * p.row_beats + b], 8, 8)
                    for b in range(p.row_beats)), []) for i in range(tokens)]
        assert got == want.tolist(), f"head {h}"


def test_skipped_heads_cost_nothing():
    p = TaylorParams(heads=3)
    full, one = estimate(p, 197, 0b000), estimate(p, 197, 0b101)
    assert one.useful_macs * 3 == full.useful_macs
    assert abs(full.cycles / one.cycles - 3) < 0.01
    assert cycles(p, 197, 0b111) == 0


def test_derived_quantities():
    p = TaylorParams()
    assert (p.tile_rows, p.tile_cols, p.blocks, p.row_beats) == (4, 4, 256, 8)
    assert (p.sum_width, p.kv_width, p.context_width, p.score_width) == (16, 24, 16, 30)
    assert p.recip_shift == 24 and p.useful_macs(197) == 2 * 197 * 64 * 64
    assert p.softmax_macs(197) / p.useful_macs(197) == pytest.approx(197 / 64)
    wide = TaylorParams(mac_units=64)
    assert (wide.tile_rows, wide.tile_cols, wide.blocks) == (8, 8, 64)
    assert TaylorParams(mac_units=32).tile_rows == 4 and TaylorParams(mac_units=2).tile_cols == 2


def test_widths_hold_the_worst_case():
    """The golden trace of the most negative operands at max_tokens fits every width."""
    p = TaylorParams(head_dim=8, max_tokens=50, mac_units=4, heads=1)
    lo = p.operand_range[0]
    q = k = v = torch.full((p.max_tokens, p.head_dim), lo)
    regs = TaylorRegisters(ctx_shift=0, v_mult=65535, v_shift=0, out_mult=65535, out_shift=0)
    trace = taylor_head_int(q, k, v, regs, width=8, max_tokens=p.max_tokens)

    def fits(x, width):
        x = torch.as_tensor(x)
        return int(x.min()) >= -(1 << (width - 1)) and int(x.max()) < 1 << (width - 1)

    assert fits(trace.token_sums_k, p.sum_width) and fits(trace.kv, p.kv_width)
    assert fits(trace.centered, p.centered_width) and fits(trace.numerator, p.numerator_width)
    assert int(trace.token_sums_k[0]) == p.max_tokens * lo


BAD = [
    (dict(head_dim=12), ValueError, r"^head_dim must be a multiple of 8, not 12$"),
    (dict(head_dim=4), ValueError, r"^head_dim must be between 8 and 256, not 4$"),
    (dict(head_dim=64.0), TypeError, r"^head_dim must be an integer, not 64\.0$"),
    (dict(max_tokens=0), ValueError, r"^max_tokens must be between 1 and 4096, not 0$"),
    (dict(mac_units=128), ValueError, r"^mac_units must be between 1 and 64, not 128$"),
    (dict(mac_units=24), ValueError, r"^mac_units must be a power of two, not 24$"),
    (dict(head_dim=136, mac_units=128), ValueError,
     r"^head_dim must be a multiple of the 8x16 MAC tile, not 136$"),
    (dict(operand_width=1), ValueError, r"^operand_width must be between 2 and 16, not 1$"),
    (dict(heads=0), ValueError, r"^heads must be between 1 and 16, not 0$"),
    (dict(heads=True), TypeError, r"^heads must be an integer, not True$"),
    (dict(out_mult=1 << 16), ValueError, r"^out_mult must be between 0 and 65535, not 65536$"),
    (dict(out_shift=64), ValueError, r"^out_shift must be between 0 and 63, not 64$"),
]


@pytest.mark.parametrize("kwargs,error,message", BAD)
def test_bad_parameters(kwargs, error, message):
    with pytest.raises(error, match=message):
        TaylorParams(**kwargs)


def test_pipeline_wants_params():
    with pytest.raises(TypeError, match=r"^params must be a TaylorParams, not 3$"):
        TaylorPipeline(3)


def test_cycle_model_rejects_bad_tokens():
    with pytest.raises(ValueError, match=r"^tokens must be between 1 and 256, not 257$"):
        cycles(TaylorParams(), 257)
