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
from collections import OrderedDict

from amaranth.lib import data
from amaranth.sim import Simulator

from .payload import unpack

__all__ = ["run_sim", "shared", "stream_put", "stream_get", "stream_put_all", "stream_get_n"]

# Making a Simulator (elaborating the design and compiling it to Python) is most of a short
# test's time: 10.8 of 11.8 s for one small shell-adapter case. `run_sim(..., reuse=True)`
# keeps the last REUSED simulators and runs the same design object again after `reset()` (every
# signal and memory back at its initial value, as in a new Simulator); `shared` gives
# tests of one process the same design object for equal constructor arguments.
REUSED = 4
# A reused simulator's testbenches: this many slots, each running the call's testbench of
# its index (or returning at once), as a Simulator keeps the testbenches it was given.
TESTBENCH_SLOTS = 4
_simulators = OrderedDict()        # id(dut): (dut, period, simulator, jobs)
_designs = OrderedDict()           # constructor arguments: design


def shared(factory, *args, **kwargs):
    """`factory(*args, **kwargs)`, the same object for equal (hashable) arguments within
    a process (the last REUSED of them), so that run_sim(reuse=True) reuses its
    simulator. A design object must not change after it is made (Celine's do not)."""
    key = (factory, args, tuple(sorted(kwargs.items())))
    try:
        design = _designs.pop(key)
    except KeyError:
        design = factory(*args, **kwargs)
    except TypeError:                          # unhashable arguments: not shared
        return factory(*args, **kwargs)
    _designs[key] = design
    while len(_designs) > REUSED:
        _designs.popitem(last=False)
    return design


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


def run_sim(dut, *testbenches, processes=(), vcd=None, period=1e-6, deadline=None,
            reuse=False):
    """Simulate *dut* with a ``sync`` clock of *period* seconds and async testbenches.

    Runs until every testbench has returned. With *deadline* (seconds of simulated time),
    stops there and raises ``TimeoutError`` naming the testbenches still running, so a
    hung handshake fails instead of hanging. *vcd* names a waveform file to write.
    *reuse*: run on this process's simulator of the same *dut* object if it has one
    (reset first), and keep it for the next call (not with *processes* or *vcd*).
    """
    if reuse and not processes and vcd is None and len(testbenches) <= TESTBENCH_SLOTS:
        _run_reused(dut, testbenches, period, deadline)
        return
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


def _run_reused(dut, testbenches, period, deadline):
    entry = _simulators.pop(id(dut), None)
    if entry is None or entry[0] is not dut or entry[1] != period:
        jobs = [None] * TESTBENCH_SLOTS
        sim = Simulator(dut)
        sim.add_clock(period, if_exists=True)
        for slot in range(TESTBENCH_SLOTS):
            sim.add_testbench(_slot(jobs, slot))
    else:
        _, _, sim, jobs = entry
        sim.reset()
    running = set()
    jobs[:] = [_tracked(testbench, running) for testbench in testbenches] + \
        [None] * (TESTBENCH_SLOTS - len(testbenches))
    # Kept even when the run fails: the next run resets it (a design object is elaborated
    # once, so a new Simulator of the same object could not be made).
    _simulators[id(dut)] = (dut, period, sim, jobs)
    while len(_simulators) > REUSED:
        _simulators.popitem(last=False)
    _run(sim, deadline, running, period)


def _slot(jobs, slot):
    async def testbench(ctx):
        if jobs[slot] is not None:
            await jobs[slot](ctx)
    return testbench


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
