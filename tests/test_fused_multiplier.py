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


@pytest.mark.parametrize("brick_width,groups,latency", [
    (2, (2, 4, 8), 4), (1, (2, 8), 4), (4, (4, 8), 4), (2, (4,), 2), (1, (1, 2, 4, 8), 4),
    (1, (1,), 1), (8, (8,), 4),
])
def test_products_match_integer_multiply(brick_width, groups, latency):
    dut = FusedMultiplier(brick_width=brick_width, group_widths=groups)
    assert dut.latency == latency
    rng = random.Random(brick_width)
    passes = [(k, a_signed, w_signed, a, w)
              for k in range(len(dut.group_widths))
              for a_signed, w_signed in ((1, 1), (0, 1), (1, 0), (0, 0))
              for a, w in words(rng, 120)]
    rng.shuffle(passes)            # the group and the signs change from one cycle to the next

    def expected(k, a_signed, w_signed, a, w):
        g = dut.group_widths[k]
        return [operand(a, ga, g, a_signed) * operand(w, gw, g, w_signed)
                if max(ga, gw) < 8 // g else 0
                for ga, gw in itertools.product(range(dut.fusion), repeat=2)]

    async def testbench(ctx):
        in_flight = []
        for cycle in range(len(passes) + dut.latency - 1):
            if cycle < len(passes):
                k, a_signed, w_signed, a, w = passes[cycle]
                ctx.set(dut.group, k)
                ctx.set(dut.a_signed, a_signed)
                ctx.set(dut.w_signed, w_signed)
                ctx.set(dut.a, a)
                ctx.set(dut.w, w)
                in_flight.append(passes[cycle])
            await ctx.tick()
            if cycle >= dut.latency - 1:
                case = in_flight.pop(0)
                got = [ctx.get(dut.products[s]) for s in range(dut.fusion ** 2)]
                assert got == expected(*case), (case, got)

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
