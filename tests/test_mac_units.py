"""Unit tests of the MAC array's parts: parameters, and the brick PE in the Amaranth simulator."""

import random

import pytest
import torch

from celine.rtl.mac.array import MacArray
from celine.engines.mac.spec import MacArrayParams
from celine.golden.quant import reduce_precision
from celine.rtl.mac.pe import ProcessingElement
from celine.sim.amaranth_sim import run_sim


@pytest.mark.parametrize("impl,precisions", [("bricks", (2, 4, 8, 16)), ("bricks", (4, 16)),
                                             ("bricks", (2, 4)), ("dsp", (2, 8, 16))])
def test_pe_accumulates_products(impl, precisions):
    params = MacArrayParams(rows=1, cols=1, impl=impl, precisions=precisions, max_reduction=8)
    dut = ProcessingElement(params)
    # Input register, reduced operands' register, operand register, multiplier stages
    # (bricks: cells and two levels of sums, padded when there is no 8-bit group; dsp: a
    # MULT18X18D's product register), accumulator.
    assert dut.latency == params.pe_latency == {"bricks": 8, "dsp": 6}[impl]
    fusion = params.max_fusion
    rng = random.Random(len(precisions))

    def stored(p):
        """A lane as stored (8-bit, 16-bit at p = 16), extremes likely, and its operand."""
        bits = 16 if p == 16 else 8
        lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
        x = rng.choice([lo, hi, rng.randint(lo, hi)])
        return x, (x if p == 16 else int(reduce_precision(torch.tensor(x), p)))

    async def testbench(ctx):
        for _ in range(12):
            p = rng.choice(params.precisions)
            f = params.fusion(p)
            want = [[0] * fusion for _ in range(fusion)]
            depth = rng.randint(1, params.max_reduction)
            for k in range(depth):
                act, act_op = zip(*(stored(p) for g in range(fusion)))
                weight, weight_op = zip(*(stored(p) for g in range(fusion)))
                for ga in range(f):
                    for gw in range(f):
                        want[ga][gw] += act_op[ga] * weight_op[gw]
                for pass_index in range(params.passes(p)):
                    ctx.set(dut.valid, 1)
                    ctx.set(dut.first, k == 0 and pass_index == 0)
                    ctx.set(dut.last, k == depth - 1 and pass_index == params.passes(p) - 1)
                    ctx.set(dut.precision, params.encode_precision(p))
                    ctx.set(dut.pass_index, pass_index)
                    ctx.set(dut.act, list(act))
                    ctx.set(dut.weight, list(weight))
                    await ctx.tick()
                    ctx.set(dut.valid, 0)
                    ctx.set(dut.last, 0)
                    for _ in range(rng.randint(0, 1)):       # idle cycles between passes
                        await ctx.tick()
            await ctx.tick().repeat(dut.latency - 1)
            for ga in range(f):
                for gw in range(f):
                    assert ctx.get(dut.acc[ga * fusion + gw]) == want[ga][gw], (p, ga, gw)
            # The cycle after, the shadow registers hold the tile (the PE loads them).
            await ctx.tick()
            for ga in range(f):
                for gw in range(f):
                    assert ctx.get(dut.shadow[ga * fusion + gw]) == want[ga][gw], (p, ga, gw)

    run_sim(dut, testbench)


def test_derived_quantities():
    p = MacArrayParams(rows=4, cols=4)
    assert (p.act_lanes, p.weight_lanes, p.operand_width) == (16, 16, 16)
    assert [p.macs_per_cycle_ideal(q) for q in (2, 4, 8, 16)] == [256, 64, 16, 4]
    assert p.needed_acc_width(8) == 26 and p.result_width == 42
    assert p.slot_width(0, 0) == 42 and p.slot_width(1, 0) == 18 and p.slot_width(3, 2) == 14
    d = MacArrayParams(rows=4, cols=4, impl="dsp", precisions=(2, 4, 8))
    assert d.act_lanes == 4 and d.macs_per_cycle_ideal(2) == 16 and d.result_width == 32
    assert MacArrayParams(acc_width=36).acc_width_at(16) == 36
    assert MacArrayParams.from_dict(p.to_dict()) == p


@pytest.mark.parametrize("kwargs,error,message", [
    (dict(rows=0), ValueError, r"^rows must be between 1 and 64, not 0$"),
    (dict(cols="4"), TypeError, r"^cols must be an integer, not '4'$"),
    (dict(rows=True), TypeError, r"^rows must be an integer, not True$"),
    (dict(brick_width=3), ValueError, r"^brick_width must be 1 or 2 or 4 or 8, not 3$"),
    (dict(precisions=()), TypeError, r"^precisions must be a non-empty tuple of integers, not \(\)$"),
    (dict(precisions=8), TypeError, r"^precisions must be a tuple of integers, not 8$"),
    (dict(precisions=(3, 8)), ValueError,
     r"^precisions must be distinct values from \{2, 4, 8, 16\}, not \(3, 8\)$"),
    (dict(precisions=(8, 8)), ValueError,
     r"^precisions must be distinct values from \{2, 4, 8, 16\}, not \(8, 8\)$"),
    (dict(brick_width=4, precisions=(2, 8)), ValueError,
     r"^precisions must be multiples of brick_width 4, not \(2, 8\)$"),
    (dict(impl="lut"), ValueError, r"^impl must be 'bricks' or 'dsp', not 'lut'$"),
    (dict(max_reduction=0), ValueError, r"^max_reduction must be between 1 and 1048576, not 0$"),
    (dict(acc_width=20), ValueError, r"^acc_width must be between 32 and 64, not 20$"),
    (dict(precisions=(2, 4), acc_width=3), ValueError, r"^acc_width must be between 8 and 64, not 3$"),
    (dict(precisions=(2, 4), rps_precisions=(8,)), ValueError,
     r"^rps_precisions must be a subset of precisions \(2, 4\), not \(8,\)$"),
    (dict(lfsr_seed=0), ValueError, r"^lfsr_seed must be between 1 and 65535, not 0$"),
])
def test_bad_parameters(kwargs, error, message):
    with pytest.raises(error, match=message):
        MacArrayParams(**kwargs)


def test_array_wants_params():
    with pytest.raises(TypeError, match=r"^params must be a MacArrayParams, not \{'rows': 2\}$"):
        MacArray({"rows": 2})
