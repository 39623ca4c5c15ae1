"""The Taylor pipeline's context memory (rtl/taylor/context_memory.py) in the Amaranth
simulator against a model of its promise: a read returns the block as it was before that
cycle's write, CONTEXT_READ_LATENCY cycles after its address; the centering pass's write
changes only its row; both builds (block RAMs with output registers, and the Memory kept
for reads during writes) alike, at shapes whose rows need padding to whole bytes."""

import random

import pytest

from celine.engines.taylor.spec import CONTEXT_READ_LATENCY, TaylorParams
from celine.rtl.taylor.context_memory import ContextMemory, row_bytes
from celine.sim.amaranth_sim import run_sim


def elements(value, count, width):
    """A word of `count` `width`-bit two's complement elements, as Python ints."""
    mask = (1 << width) - 1
    return [((value >> (k * width)) & mask) - ((value >> (k * width + width - 1) & 1) << width)
            for k in range(count)]


def pack(values, width):
    return sum((v & ((1 << width) - 1)) << (k * width) for k, v in enumerate(values))


def run(params, reads_during_writes, cycles=300, seed=0):
    p = params
    r, c, ew = p.tile_rows, p.tile_cols, p.element_width
    rng = random.Random(seed)
    dut = ContextMemory(p, reads_during_writes=reads_during_writes)
    lo, hi = -(1 << (ew - 1)), (1 << (ew - 1)) - 1

    def value():
        return rng.choice([lo, hi, 0, -1, rng.randint(lo, hi)])

    model = [[0] * p.mac_units for _ in range(p.blocks)]
    mismatches, compared = [], []

    async def bench(ctx):
        pending = []                                     # (due cycle, expected block)
        for cycle in range(cycles):
            addr = rng.randrange(p.blocks)
            ctx.set(dut.read_addr, addr)
            pending.append((cycle + CONTEXT_READ_LATENCY, list(model[addr])))
            kind = rng.choice(["center", "tile", "none"])
            ctx.set(dut.center_write, kind == "center")
            ctx.set(dut.tile_write, kind == "tile")
            # Often the block being read, so that reads during writes are covered.
            waddr = addr if rng.random() < 0.3 else rng.randrange(p.blocks)
            if kind == "center":
                row = rng.randrange(r)
                data = [value() for _ in range(c)]
                ctx.set(dut.center_addr, waddr)
                ctx.set(dut.center_row, row)
                ctx.set(dut.center_data, data)
                model[waddr][row * c:(row + 1) * c] = data
            elif kind == "tile":
                data = [value() for _ in range(p.mac_units)]
                ctx.set(dut.tile_addr, waddr)
                ctx.set(dut.tile_data, pack(data, ew))
                model[waddr] = data
            if pending and pending[0][0] == cycle:
                _, expected = pending.pop(0)
                got = elements(ctx.get(dut.read_data), p.mac_units, ew)
                compared.append(cycle)
                if got != expected:
                    mismatches.append((cycle, got, expected))
            await ctx.tick()

    run_sim(dut, bench)
    assert len(compared) == cycles - CONTEXT_READ_LATENCY
    return mismatches


SHAPES = [
    dict(head_dim=8, max_tokens=5, mac_units=1, heads=1, operand_width=5),   # 12-bit rows
    dict(head_dim=8, max_tokens=13, mac_units=2, heads=2, operand_width=5),  # 26 -> 32
    dict(head_dim=24, max_tokens=40, mac_units=8, heads=3, operand_width=6),
    dict(),                                                                # the default
]


@pytest.mark.parametrize("shape", range(len(SHAPES)))
@pytest.mark.parametrize("reads_during_writes", [False, True])
def test_reads_and_writes_as_promised(shape, reads_during_writes):
    p = TaylorParams(**SHAPES[shape])
    assert run(p, reads_during_writes, seed=shape) == []


def test_reads_during_writes_must_be_a_bool():
    with pytest.raises(TypeError, match=r"^reads_during_writes must be True or False, not 1$"):
        ContextMemory(TaylorParams(), reads_during_writes=1)


def test_rows_padded_to_bytes():
    p = TaylorParams(**SHAPES[0])
    assert (p.tile_cols * p.element_width, row_bytes(p)) == (12, 2)
    assert row_bytes(TaylorParams()) * 8 == TaylorParams().tile_cols * TaylorParams().element_width
