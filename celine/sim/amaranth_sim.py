"""Helpers for fast unit tests in Amaranth's own simulator (0.5 async testbench API).

Beats are plain Python values as in :mod:`sim.payload` (dicts, lists, ints), so the same
golden data serves Amaranth-simulator tests and cocotb tests::

    async def producer(ctx):
        await stream_put_all(ctx, dut.i, beats, rng=random.Random(1), idle_prob=0.3)

    async def consumer(ctx):
        received = await stream_get_n(ctx, dut.o, len(beats), rng=..., backpressure_prob=0.3)
        assert received == beats

    run_sim(dut, producer, consumer)
"""

import random

from amaranth.lib import data
from amaranth.sim import Simulator

from .payload import unpack

__all__ = ["run_sim", "stream_put", "stream_get", "stream_put_all", "stream_get_n"]


def _to_python(value, shape):
    """Turn a value sampled from the simulator into dicts, lists and ints."""
    if isinstance(value, data.Const):
        return unpack(shape, value.as_value().value)
    return int(value)


def _payload_shape(stream):
    return stream.payload.shape()


def _encode(stream, payload):
    """Dicts and lists go to ``Layout.const`` as they are; raw ints become layout bits."""
    shape = _payload_shape(stream)
    if isinstance(shape, data.Layout) and isinstance(payload, int):
        return shape.from_bits(payload)
    return payload


async def stream_put(ctx, stream, payload):
    """Offer one beat on *stream* (driven by the testbench) until it is accepted."""
    ctx.set(stream.payload, _encode(stream, payload))
    ctx.set(stream.valid, 1)
    await ctx.tick().until(stream.ready)
    ctx.set(stream.valid, 0)


async def stream_get(ctx, stream):
    """Accept one beat from *stream* (driven by the design) and return it."""
    ctx.set(stream.ready, 1)
    payload, = await ctx.tick().sample(stream.payload).until(stream.valid)
    ctx.set(stream.ready, 0)
    return _to_python(payload, _payload_shape(stream))


async def stream_put_all(ctx, stream, beats, *, rng=None, idle_prob=0.0):
    """Send *beats* in order, inserting seeded random idle cycles (valid low) between them."""
    rng = rng or random.Random(0)
    for beat in beats:
        while rng.random() < idle_prob:
            await ctx.tick()
        await stream_put(ctx, stream, beat)


async def stream_get_n(ctx, stream, count, *, rng=None, backpressure_prob=0.0):
    """Receive *count* beats, holding ``ready`` low on seeded random cycles."""
    rng = rng or random.Random(0)
    beats = []
    while len(beats) < count:
        if rng.random() < backpressure_prob:
            ctx.set(stream.ready, 0)
            await ctx.tick()
            continue
        ctx.set(stream.ready, 1)
        _clk, _rst, payload, valid = await ctx.tick().sample(stream.payload, stream.valid)
        if valid:
            beats.append(_to_python(payload, _payload_shape(stream)))
    ctx.set(stream.ready, 0)
    return beats


def run_sim(dut, *testbenches, processes=(), vcd=None, period=1e-6, deadline=None):
    """Simulate *dut* with a ``sync`` clock of *period* seconds and async testbenches.

    Runs until every testbench has returned. With *deadline* (seconds of simulated time),
    stops there and raises ``TimeoutError`` naming the testbenches still running, so a
    hung handshake fails instead of hanging. *vcd* names a waveform file to write.
    """
    sim = Simulator(dut)
    sim.add_clock(period, if_exists=True)   # purely combinational designs have no clock
    running = set()
    for testbench in testbenches:
        sim.add_testbench(_tracked(testbench, running))
    for process in processes:
        sim.add_process(process)
    if vcd is not None:
        with sim.write_vcd(vcd):
            _run(sim, deadline, running, period)
    else:
        _run(sim, deadline, running, period)


def _tracked(testbench, running):
    name = getattr(testbench, "__name__", repr(testbench))

    async def wrapper(ctx):
        running.add(name)
        await testbench(ctx)
        running.discard(name)
    return wrapper


def _run(sim, deadline, running, period):
    if deadline is None:
        sim.run()
        return
    # In steps of a thousand cycles, so that the run ends soon after the testbenches do
    # (a free-running clock would otherwise keep it going until the deadline).
    step, now = 1000 * period, 0.0
    while running or now == 0.0:
        if now >= deadline:
            break
        now = min(now + step, deadline)
        sim.run_until(now)
    if running:
        raise TimeoutError(f"testbenches {sorted(running)} still running after "
                           f"{deadline} s of simulated time")
