"""Amaranth-simulator unit tests of the brick multiplier that makes a PE precision-scalable."""

import itertools
import random

import pytest

from celine.rtl.mac.fused_multiplier import FusedMultiplier
from celine.sim.amaranth_sim import run_sim


def operand(word, k, width, signed):
    value = (word >> (k * width)) & ((1 << width) - 1)
    if signed and value >> (width - 1):
        value -= 1 << width
    return value


def words(rng, count):
    edge = [0x00, 0xFF, 0x80, 0x7F, 0x88, 0xAA, 0x55, 0x01]
    return [(a, w) for a in edge for w in edge] + \
        [(rng.randrange(256), rng.randrange(256)) for _ in range(count)]


@pytest.mark.parametrize("brick_width,groups", [(2, (2, 4, 8)), (1, (2, 8)), (4, (4, 8)), (2, (4,))])
def test_products_match_integer_multiply(brick_width, groups):
    dut = FusedMultiplier(brick_width=brick_width, group_widths=groups)
    rng = random.Random(brick_width)
    cases = words(rng, 120)

    async def testbench(ctx):
        for k, g in enumerate(dut.group_widths):
            for a_signed, w_signed in ((1, 1), (0, 1), (1, 0), (0, 0)):
                ctx.set(dut.group, k)
                ctx.set(dut.a_signed, a_signed)
                ctx.set(dut.w_signed, w_signed)
                for a, w in cases:
                    ctx.set(dut.a, a)
                    ctx.set(dut.w, w)
                    for ga, gw in itertools.product(range(dut.fusion), repeat=2):
                        got = ctx.get(dut.products[ga * dut.fusion + gw])
                        if max(ga, gw) < 8 // g:
                            want = operand(a, ga, g, a_signed) * operand(w, gw, g, w_signed)
                        else:
                            want = 0
                        assert got == want, (g, a_signed, w_signed, hex(a), hex(w), ga, gw)

    run_sim(dut, testbench)


@pytest.mark.parametrize("kwargs,error,message", [
    (dict(brick_width=3), ValueError, r"^brick_width must be 1 or 2 or 4 or 8, not 3$"),
    (dict(group_widths=(3,)), ValueError, r"^group_widths must be distinct values from \{1, 2, 4, 8\}, not \(3,\)$"),
    (dict(brick_width=4, group_widths=(2, 8)), ValueError,
     r"^group_widths must be at least brick_width 4, not \(2, 8\)$"),
])
def test_bad_parameters(kwargs, error, message):
    with pytest.raises(error, match=message):
        FusedMultiplier(**kwargs)
