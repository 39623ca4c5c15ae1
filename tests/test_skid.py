"""SkidBuffer in Amaranth's simulator: ordering, throughput, and the parameter check."""

import random
import re

import pytest
from amaranth.hdl import signed
from amaranth.lib import data

from celine.rtl.common.skid import SkidBuffer
from celine.sim.amaranth_sim import run_sim, stream_get_n, stream_put_all

FRAME = data.StructLayout({"data": data.ArrayLayout(signed(8), 4), "last": 1})


def random_frames(rng, count):
    return [{"data": [rng.randint(-128, 127) for _ in range(4)], "last": int(i % 5 == 4)}
            for i in range(count)]


@pytest.mark.parametrize("registered_output", [True, False])
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("idle_prob,backpressure_prob", [(0.0, 0.0), (0.5, 0.0), (0.0, 0.5), (0.3, 0.6)])
def test_random_valid_ready_keeps_every_beat_in_order(seed, idle_prob, backpressure_prob,
                                                      registered_output):
    rng = random.Random(seed)
    beats = random_frames(rng, 200)
    beats[0]["data"] = [-128, 127, -1, 0]   # extremes of the signed lanes
    dut = SkidBuffer(FRAME, registered_output=registered_output)
    received = []

    async def producer(ctx):
        await stream_put_all(ctx, dut.i, beats, rng=random.Random(seed + 100), idle_prob=idle_prob)

    async def consumer(ctx):
        received.extend(await stream_get_n(ctx, dut.o, len(beats), rng=random.Random(seed + 200),
                                           backpressure_prob=backpressure_prob))

    run_sim(dut, producer, consumer, deadline=1e-6 * 5000)
    assert received == beats


def test_full_throughput_and_one_cycle_latency():
    dut = SkidBuffer(8)
    trace = []

    async def testbench(ctx):
        ctx.set(dut.o.ready, 1)
        for cycle in range(12):
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.payload, cycle)
            _clk, _rst, i_ready, o_valid, o_payload = await ctx.tick().sample(
                dut.i.ready, dut.o.valid, dut.o.payload)
            trace.append((i_ready, o_valid, o_payload))

    run_sim(dut, testbench)
    assert all(i_ready for i_ready, _, _ in trace)
    # The beat sent before edge t is on the output before edge t + 1.
    assert [payload for _, valid, payload in trace if valid] == list(range(11))


def test_ready_is_registered():
    """Dropping o.ready must not change i.ready in the same cycle."""
    dut = SkidBuffer(8)

    async def testbench(ctx):
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.i.valid, 1)
        await ctx.tick().repeat(2)
        assert ctx.get(dut.i.ready) == 1
        ctx.set(dut.o.ready, 0)
        assert ctx.get(dut.i.ready) == 1          # no combinational path
        await ctx.tick()
        assert ctx.get(dut.i.ready) == 0          # the skid entry is now full

    run_sim(dut, testbench)


def test_pass_through_output_adds_no_latency_and_registers_ready():
    """registered_output=False: a beat is on `o` in the cycle it is on `i`; a beat offered
    while `o.ready` is low waits in the skid entry (i.ready falls the cycle after, not in
    the same cycle), and the consumer then sees the beats in the cycles it would have
    seen them straight from the producer."""
    dut = SkidBuffer(8, registered_output=False)
    seen = []

    async def testbench(ctx):
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.i.payload, 5)
        ctx.set(dut.o.ready, 0)
        assert (ctx.get(dut.o.valid), ctx.get(dut.o.payload), ctx.get(dut.i.ready)) == (1, 5, 1)
        await ctx.tick()                               # 5 parked in the skid entry
        ctx.set(dut.i.payload, 6)
        assert (ctx.get(dut.o.valid), ctx.get(dut.o.payload), ctx.get(dut.i.ready)) == (1, 5, 0)
        ctx.set(dut.o.ready, 1)
        for _ in range(3):
            _, _, valid, payload, ready = await ctx.tick().sample(dut.o.valid, dut.o.payload,
                                                                  dut.i.ready)
            seen.append((int(valid), payload, int(ready)))
            ctx.set(dut.i.payload, ctx.get(dut.i.payload) + ready)

    run_sim(dut, testbench)
    # the parked 5 (the producer held back), then 6 and 7 straight through
    assert seen == [(1, 5, 0), (1, 6, 1), (1, 7, 1)]


@pytest.mark.parametrize("value", [1, 0, None, "yes"])
def test_registered_output_must_be_a_bool(value):
    with pytest.raises(TypeError, match=rf"^registered_output must be True or False, "
                                        rf"not {re.escape(repr(value))}$"):
        SkidBuffer(8, registered_output=value)


@pytest.mark.parametrize("layout", ["frame", 3.5, -1, None])
def test_layout_must_be_a_layout_or_shape(layout):
    with pytest.raises(TypeError, match=rf"^layout must be a data layout or shape, not {re.escape(repr(layout))}$"):
        SkidBuffer(layout)
