"""rtl/common's buffer blocks in Amaranth's simulator: ShapedQueue, BufferReader and
BufferWriter under random idle cycles on their inputs and random backpressure on their
outputs, at several depths and widths; their throughput; their parameter checks."""

import random
import re

import pytest
from amaranth.hdl import Elaboratable, Module, Shape, Signal, Value, signed, unsigned
from amaranth.lib import data
from amaranth.lib.memory import Memory

from celine.rtl.common.buffer_reader import BufferReader
from celine.rtl.common.buffer_writer import BufferWriter
from celine.rtl.common.shaped_queue import ShapedQueue
from celine.rtl.shell.block_ram import MIN_BLOCK_DEPTH
from celine.sim.amaranth_sim import run_sim, stream_get_n, stream_put_all
from celine.sim.payload import pack, unpack

DEADLINE = 1e-6 * 20_000


def random_value(rng, shape):
    """A random Python value (dict, list, int) of a layout or shape."""
    if isinstance(shape, data.StructLayout):
        return {name: random_value(rng, field.shape) for name, field in shape}
    if isinstance(shape, data.ArrayLayout):
        return [random_value(rng, shape.elem_shape) for _ in range(shape.length)]
    shape = unsigned(shape) if isinstance(shape, int) else shape
    if shape.signed:
        return rng.randint(-(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1)
    return rng.randint(0, (1 << shape.width) - 1)


LAYOUTS = {
    "struct": data.StructLayout({"data": data.ArrayLayout(signed(8), 4), "last": 1}),
    "array": data.ArrayLayout(signed(5), 3),
    "wide": data.StructLayout({"a": unsigned(70), "b": signed(3)}),
    "plain": unsigned(12),
}


# -- ShapedQueue -------------------------------------------------------------------------

@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("depth", [1, 2, 3, 8, MIN_BLOCK_DEPTH, 100])
@pytest.mark.parametrize("idle_prob,backpressure_prob", [(0.0, 0.0), (0.5, 0.0), (0.0, 0.6),
                                                         (0.3, 0.5), (0.0, 0.95)])
def test_queue_keeps_every_beat_in_order(layout, depth, idle_prob, backpressure_prob):
    """Also in the block-RAM queue (MIN_BLOCK_DEPTH on), filled to the top and beyond
    (0.95 backpressure) with 250 beats."""
    rng = random.Random(depth)
    beats = [random_value(rng, LAYOUTS[layout]) for _ in range(250 if depth > 8 else 120)]
    dut = ShapedQueue(LAYOUTS[layout], depth)
    received = []

    async def producer(ctx):
        await stream_put_all(ctx, dut.i, beats, rng=random.Random(1), idle_prob=idle_prob)

    async def consumer(ctx):
        received.extend(await stream_get_n(ctx, dut.o, len(beats), rng=random.Random(2),
                                           backpressure_prob=backpressure_prob))

    run_sim(dut, producer, consumer, deadline=DEADLINE)
    assert received == beats


@pytest.mark.parametrize("depth", [1, 2, 3, 4, 8])
def test_queue_throughput_and_level(depth):
    """Filled with the output stalled it takes `depth` beats; then, emptied and refilled at
    once, it moves a beat per cycle from depth 3 on (every other cycle at depth 1 and 2:
    SyncFIFOBuffered's one-entry inner memory)."""
    dut = ShapedQueue(LAYOUTS["struct"], depth)
    levels, in_ready, out_valid = [], [], []

    async def testbench(ctx):
        ctx.set(dut.i.valid, 1)
        taken = 0
        for _ in range(depth + 3):
            ctx.set(dut.i.payload, {"data": [taken, 0, 0, 0], "last": 0})
            _, _, ready = await ctx.tick().sample(dut.i.ready)
            taken += ready
            levels.append(ctx.get(dut.level))
        assert taken == depth and not ctx.get(dut.i.ready)
        ctx.set(dut.o.ready, 1)
        for _ in range(20):
            _, _, ready, valid = await ctx.tick().sample(dut.i.ready, dut.o.valid)
            in_ready.append(int(ready))
            out_valid.append(int(valid))

    run_sim(dut, testbench, deadline=DEADLINE)
    assert levels == sorted(levels) and levels[-1] == depth
    if depth >= 3:
        assert (in_ready, out_valid) == ([0] + [1] * 19, [1] * 20)
    else:
        assert (in_ready, out_valid) == ([0, 1] * 10, [1, 0] * 10 if depth == 1
                                         else [1, 1] + [0, 1] * 9)


@pytest.mark.parametrize("depth", [MIN_BLOCK_DEPTH, 70])
def test_block_queue_latency_throughput_and_level(depth):
    """The block-RAM queue: a beat into an empty queue is offered BLOCK_LATENCY cycles
    later; filled with the output stalled it takes `depth` beats and one more into its
    output's skid entry (`level` counting the depth); then, with the output always ready,
    a beat per cycle in and out."""
    dut = ShapedQueue(LAYOUTS["plain"], depth)
    offered, levels, in_ready, out = [], [], [], []

    async def testbench(ctx):
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.i.payload, 7)
        await ctx.tick()
        ctx.set(dut.i.valid, 0)
        for _ in range(8):
            _, _, valid = await ctx.tick().sample(dut.o.valid)
            offered.append(int(valid))
        ctx.set(dut.o.ready, 1)            # the first beat leaves
        await ctx.tick()
        ctx.set(dut.o.ready, 0)
        ctx.set(dut.i.valid, 1)
        taken = 0
        for _ in range(depth + 8):
            ctx.set(dut.i.payload, taken)
            _, _, ready = await ctx.tick().sample(dut.i.ready)
            taken += ready
            levels.append(ctx.get(dut.level))
        assert taken == depth + 1 and not ctx.get(dut.i.ready)
        ctx.set(dut.o.ready, 1)
        for _ in range(3 * depth):
            ctx.set(dut.i.payload, taken)
            _, _, ready, valid, payload = await ctx.tick().sample(dut.i.ready, dut.o.valid,
                                                                  dut.o.payload)
            taken += ready
            in_ready.append(int(ready))
            if valid:
                out.append(payload)

    run_sim(dut, testbench, deadline=DEADLINE)
    # offered from the BLOCK_LATENCY-th cycle after the one it was taken in
    assert offered == [0] * (ShapedQueue.BLOCK_LATENCY - 1) + [1] * (9 - ShapedQueue.BLOCK_LATENCY)
    assert levels == sorted(levels) and levels[-1] == depth
    # room again two cycles after the output's release (the skid entry's beat taken, then
    # a slot's beat into it), then a beat a cycle
    assert in_ready == [0, 0] + [1] * (3 * depth - 2)
    assert out == list(range(3 * depth))


@pytest.mark.parametrize("layout", [LAYOUTS["struct"], data.ArrayLayout(4, 2), 8, signed(3)])
def test_queue_payload_has_its_shape(layout):
    queue = ShapedQueue(layout, 4)
    assert queue.layout is layout and queue.depth == 4
    for port in (queue.i, queue.o):
        payload = port.payload
        assert (payload.shape() if isinstance(layout, data.Layout) else payload.shape()) == \
            (layout if isinstance(layout, data.Layout) else unsigned(8) if layout == 8
             else layout)


@pytest.mark.parametrize("layout", ["frame", 3.5, -1, None])
def test_queue_layout_must_be_a_layout_or_shape(layout):
    with pytest.raises(TypeError, match=rf"^layout must be a data layout or shape, "
                                        rf"not {re.escape(repr(layout))}$"):
        ShapedQueue(layout, 4)


@pytest.mark.parametrize("depth,error,rule", [(0, ValueError, "at least 1"),
                                              (-3, ValueError, "at least 1"),
                                              (2.0, TypeError, "an integer"),
                                              (True, TypeError, "an integer"),
                                              ("4", TypeError, "an integer")])
def test_queue_depth_must_be_a_positive_integer(depth, error, rule):
    with pytest.raises(error, match=rf"^depth must be {rule}, not {re.escape(repr(depth))}$"):
        ShapedQueue(8, depth)


# -- BufferReader ------------------------------------------------------------------------

class ReaderBench(Elaboratable):
    """A BufferReader over one memory per buffer, with the reader's read latency (each
    cycle past 1 a register after the memory's read port, as the block RAM's address and
    output registers)."""

    def __init__(self, reader, contents):
        self.reader = reader
        width = Shape.cast(reader.payload["data"].shape).width
        self.memories = {name: Memory(shape=unsigned(width), depth=len(words), init=words)
                         for name, words in contents.items()}

    def elaborate(self, platform):
        m = Module()
        m.submodules.reader = self.reader
        for name, memory in self.memories.items():
            m.submodules[name] = memory
            read = memory.read_port(transparent_for=())
            port = getattr(self.reader.mem, name)
            word = read.data
            for _ in range(self.reader.read_latency - 1):
                late = Signal.like(read.data)
                m.d.sync += late.eq(word)
                word = late
            m.d.comb += [read.addr.eq(port.addr), port.data.eq(word)]
        return m


READER_CASES = {
    # name: (payload layout, buffer depth, buffers)
    "one buffer, plain words": (data.StructLayout({"data": unsigned(16), "last": 1}), 32,
                                ("buffer",)),
    "three buffers, lanes and tags": (
        data.StructLayout({"data": data.ArrayLayout(signed(8), 8), "last": 1, "tag": 3}),
        24, ("q", "k", "v")),
    "two buffers, no tags, odd depth": (data.StructLayout({"data": unsigned(9)}), 13,
                                        ("a", "b")),
}


# (read_latency, word_register): at read latency 1 the words are registered anyway.
READ_TIMINGS = [(1, False), (2, False), (3, False), (1, True), (2, True), (3, True)]


def reader_setup(case, queue_depth, seed, read_latency=1, word_register=False):
    payload, depth, buffers = READER_CASES[case]
    rng = random.Random(seed)
    data_shape = payload["data"].shape
    contents = {name: [pack(data_shape, random_value(rng, data_shape)) for _ in range(depth)]
                for name in buffers}
    reader = BufferReader(payload, buffer_depth=depth, buffers=buffers,
                          queue_depth=queue_depth, read_latency=read_latency,
                          word_register=word_register)
    tags = {name: field.shape for name, field in payload if name != "data"}
    requests, expected = [], []
    for _ in range(150):
        request = {"addr": rng.randrange(depth)}
        buffer = rng.randrange(len(buffers))
        if len(buffers) > 1:
            request["buffer"] = buffer
        request.update((name, random_value(rng, shape)) for name, shape in tags.items())
        requests.append(request)
        word = unpack(data_shape, contents[buffers[buffer]][request["addr"]])
        expected.append({"data": word, **{name: request[name] for name in tags}})
    return ReaderBench(reader, contents), requests, expected


@pytest.mark.parametrize("case", list(READER_CASES))
@pytest.mark.parametrize("queue_depth", [2, 3, 4, 5, 8])
@pytest.mark.parametrize("idle_prob,backpressure_prob", [(0.0, 0.0), (0.5, 0.0), (0.0, 0.7),
                                                         (0.3, 0.5)])
@pytest.mark.parametrize("read_latency,word_register", READ_TIMINGS)
def test_reader_returns_every_word_in_request_order(case, queue_depth, idle_prob,
                                                    backpressure_prob, read_latency,
                                                    word_register):
    bench, requests, expected = reader_setup(case, queue_depth, seed=queue_depth,
                                             read_latency=read_latency,
                                             word_register=word_register)
    reader = bench.reader
    received = []

    async def producer(ctx):
        await stream_put_all(ctx, reader.req, requests, rng=random.Random(3),
                             idle_prob=idle_prob)

    async def consumer(ctx):
        received.extend(await stream_get_n(ctx, reader.o, len(expected),
                                           rng=random.Random(4),
                                           backpressure_prob=backpressure_prob))

    run_sim(bench, producer, consumer, deadline=DEADLINE)
    assert received == expected


@pytest.mark.parametrize("queue_depth", [2, 3, 4, 5, 8])
@pytest.mark.parametrize("read_latency,word_register", READ_TIMINGS)
def test_reader_never_reads_more_than_its_queue_takes(queue_depth, read_latency,
                                                      word_register):
    """With the output stalled it takes queue_depth - 1 requests, and loses none of them."""
    bench, requests, expected = reader_setup("three buffers, lanes and tags", queue_depth,
                                             seed=7, read_latency=read_latency,
                                             word_register=word_register)
    reader = bench.reader
    received = []

    async def testbench(ctx):
        ctx.set(reader.req.valid, 1)
        taken = 0
        for _ in range(30):
            ctx.set(reader.req.payload, requests[taken])
            _, _, ready = await ctx.tick().sample(reader.req.ready)
            taken += ready
        ctx.set(reader.req.valid, 0)
        assert taken == queue_depth - 1
        received.extend(await stream_get_n(ctx, reader.o, taken))
        for _ in range(10):
            assert not ctx.get(reader.o.valid)
            await ctx.tick()

    run_sim(bench, testbench, deadline=DEADLINE)
    assert received == expected[:queue_depth - 1]


@pytest.mark.parametrize("queue_depth", [2, 3, 4, 5, 6, 8])
@pytest.mark.parametrize("read_latency,word_register", READ_TIMINGS)
def test_reader_throughput(queue_depth, read_latency, word_register):
    """A request every cycle and `o` always ready: one word per cycle from queue_depth
    latency + 2 on, queue_depth - 1 words every latency + 1 cycles below; each word is on
    `o` the reader's `latency` cycles after its request was taken: 4 at read latency 1
    and 2, 5 at 3 (the address registered), one more with the words registered again
    (read latency 2 or 3 and `word_register`)."""
    bench, requests, _ = reader_setup("one buffer, plain words", queue_depth, seed=1,
                                      read_latency=read_latency,
                                      word_register=word_register)
    reader = bench.reader
    taken_at, out_at = [], []

    async def testbench(ctx):
        ctx.set(reader.req.valid, 1)
        ctx.set(reader.o.ready, 1)
        for cycle in range(64):
            ctx.set(reader.req.payload, requests[len(taken_at)])
            _, _, ready, valid = await ctx.tick().sample(reader.req.ready, reader.o.valid)
            if ready:
                taken_at.append(cycle)
            if valid:
                out_at.append(cycle)

    run_sim(bench, testbench, deadline=DEADLINE)
    lag = reader.latency
    assert lag == (5 if read_latency == 3 else 4) + (word_register and read_latency > 1)
    assert reader.word_register == (word_register and read_latency > 1)
    assert out_at == [cycle + lag for cycle in taken_at if cycle + lag < 64]
    period = lag + 1                  # a request taken -> the next one after a full queue
    per_period = min(queue_depth - 1, period)
    assert taken_at == [period * (k // per_period) + k % per_period
                        for k in range(len(taken_at))]
    assert len(taken_at) == sum(period * (k // per_period) + k % per_period < 64
                                for k in range(64))


def test_reader_request_and_output_layouts():
    payload = data.StructLayout({"data": data.ArrayLayout(signed(8), 8), "last": 1, "tag": 3})
    reader = BufferReader(payload, buffer_depth=24, buffers=("q", "k", "v"), queue_depth=8)
    assert reader.o.payload.shape() == payload
    assert [(name, Shape.cast(field.shape)) for name, field in reader.req.payload.shape()] == [
        ("addr", unsigned(5)), ("buffer", unsigned(2)), ("last", unsigned(1)),
        ("tag", unsigned(3))]
    single = BufferReader(data.StructLayout({"data": 4}), buffer_depth=3)
    assert [name for name, _ in single.req.payload.shape()] == ["addr"]
    assert list(single.mem.signature.members.keys()) == ["buffer"]


@pytest.mark.parametrize("payload,error,message", [
    (8, TypeError, "payload must be a data.StructLayout, not 8"),
    (data.ArrayLayout(8, 2), TypeError,
     "payload must be a data.StructLayout, not ArrayLayout(8, 2)"),
    (data.StructLayout({"word": 8}), ValueError,
     "payload must have a 'data' field and none named 'addr' or 'buffer', "
     "not StructLayout({'word': 8})"),
    (data.StructLayout({"data": 8, "addr": 4}), ValueError,
     "payload must have a 'data' field and none named 'addr' or 'buffer', "
     "not StructLayout({'data': 8, 'addr': 4})"),
    (data.StructLayout({"data": 8, "buffer": 1}), ValueError,
     "payload must have a 'data' field and none named 'addr' or 'buffer', "
     "not StructLayout({'data': 8, 'buffer': 1})"),
])
def test_reader_payload_must_be_a_struct_with_data(payload, error, message):
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        BufferReader(payload, buffer_depth=4)


GOOD_PAYLOAD = data.StructLayout({"data": 8, "last": 1})


@pytest.mark.parametrize("options,error,message", [
    (dict(buffer_depth=0), ValueError, "buffer_depth must be at least 1, not 0"),
    (dict(buffer_depth=4.0), TypeError, "buffer_depth must be an integer, not 4.0"),
    (dict(buffer_depth=4, queue_depth=1), ValueError, "queue_depth must be at least 2, not 1"),
    (dict(buffer_depth=4, queue_depth="8"), TypeError,
     "queue_depth must be an integer, not '8'"),
    (dict(buffer_depth=4, buffers=()), ValueError,
     "buffers must be a non-empty tuple of distinct names, not ()"),
    (dict(buffer_depth=4, buffers=["q", "k"]), ValueError,
     "buffers must be a non-empty tuple of distinct names, not ['q', 'k']"),
    (dict(buffer_depth=4, buffers=("q", "q")), ValueError,
     "buffers must be a non-empty tuple of distinct names, not ('q', 'q')"),
    (dict(buffer_depth=4, buffers=("q", "not a name")), ValueError,
     "buffers must be a non-empty tuple of distinct names, not ('q', 'not a name')"),
    (dict(buffer_depth=4, buffers=("q", 1)), ValueError,
     "buffers must be a non-empty tuple of distinct names, not ('q', 1)"),
    (dict(buffer_depth=4, read_latency=4), ValueError, "read_latency must be 1 or 2 or 3, not 4"),
    (dict(buffer_depth=4, read_latency=True), TypeError,
     "read_latency must be an integer, not True"),
    (dict(buffer_depth=4, read_latency=2, word_register=1), TypeError,
     "word_register must be True or False, not 1"),
])
def test_reader_checks_its_parameters(options, error, message):
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        BufferReader(GOOD_PAYLOAD, **options)


# -- BufferWriter ------------------------------------------------------------------------

class WriterBench(Elaboratable):
    """A BufferWriter into a memory."""

    def __init__(self, writer):
        self.writer = writer
        self.memory = Memory(shape=unsigned(len(Value.cast(writer.mem.data))),
                             depth=writer.depth, init=[])

    def elaborate(self, platform):
        m = Module()
        m.submodules.writer = writer = self.writer
        m.submodules.memory = self.memory
        write = self.memory.write_port()
        m.d.comb += [write.addr.eq(writer.mem.addr), write.data.eq(writer.mem.data),
                     write.en.eq(writer.mem.write)]
        return m


def memory_words(ctx, memory):
    return [ctx.get(memory.data[i]) for i in range(memory.depth)]


@pytest.mark.parametrize("data_shape,depth", [(unsigned(16), 32),
                                              (data.ArrayLayout(signed(8), 8), 24),
                                              (signed(5), 7), (unsigned(1), 1)])
@pytest.mark.parametrize("idle_prob", [0.0, 0.5])
def test_addressed_writer_writes_each_beat_at_its_address(data_shape, depth, idle_prob):
    rng = random.Random(depth)
    writer = BufferWriter(data_shape, depth=depth)
    bench = WriterBench(writer)
    beats = [{"addr": rng.randrange(depth), "data": random_value(rng, data_shape)}
             for _ in range(100)]
    want = [0] * depth
    for beat in beats:
        want[beat["addr"]] = pack(data_shape, beat["data"])
    got = []

    async def producer(ctx):
        assert ctx.get(writer.i.ready) == 1
        await stream_put_all(ctx, writer.i, beats, rng=random.Random(5), idle_prob=idle_prob)
        await ctx.tick()
        got.extend(memory_words(ctx, bench.memory))

    run_sim(bench, producer, deadline=DEADLINE)
    assert got == want


@pytest.mark.parametrize("data_shape,depth", [(unsigned(16), 32),
                                              (data.ArrayLayout(signed(8), 4), 5),
                                              (unsigned(3), 1)])
@pytest.mark.parametrize("idle_prob", [0.0, 0.5])
def test_sequential_writer_counts_from_restart_and_flags_overflow(data_shape, depth,
                                                                  idle_prob):
    rng = random.Random(depth)
    writer = BufferWriter(data_shape, depth=depth, sequential=True)
    bench = WriterBench(writer)
    runs = [[{"data": random_value(rng, data_shape)} for _ in range(n)]
            for n in (depth // 2, depth + 3, depth)]
    seen = []

    async def producer(ctx):
        for beats in runs:
            ctx.set(writer.restart, 1)
            await ctx.tick()
            ctx.set(writer.restart, 0)
            assert (ctx.get(writer.count), ctx.get(writer.overflow)) == (0, 0)
            await stream_put_all(ctx, writer.i, beats, rng=random.Random(6),
                                 idle_prob=idle_prob)
            await ctx.tick()
            seen.append((ctx.get(writer.count), ctx.get(writer.overflow),
                         memory_words(ctx, bench.memory)))

    run_sim(bench, producer, deadline=DEADLINE)
    memory = [0] * depth
    for beats, (count, overflow, words) in zip(runs, seen):
        for index, beat in enumerate(beats[:depth]):
            memory[index] = pack(data_shape, beat["data"])
        assert (count, overflow) == (min(len(beats), depth), int(len(beats) > depth))
        assert words == memory


def test_writer_is_always_ready_and_restart_wins():
    writer = BufferWriter(8, depth=4, sequential=True)
    assert writer.i.signature.always_ready

    async def testbench(ctx):
        ctx.set(writer.i.valid, 1)
        await ctx.tick().repeat(2)
        assert ctx.get(writer.count) == 2
        ctx.set(writer.restart, 1)
        await ctx.tick()
        assert ctx.get(writer.count) == 0

    run_sim(writer, testbench, deadline=DEADLINE)


@pytest.mark.parametrize("args,options,error,message", [
    (("frame",), dict(depth=4), TypeError,
     "data_shape must be a data layout or shape, not 'frame'"),
    ((-1,), dict(depth=4), TypeError, "data_shape must be a data layout or shape, not -1"),
    ((8,), dict(depth=0), ValueError, "depth must be at least 1, not 0"),
    ((8,), dict(depth=None), TypeError, "depth must be an integer, not None"),
    ((8,), dict(depth=4, sequential=1), TypeError, "sequential must be a bool, not 1"),
])
def test_writer_checks_its_parameters(args, options, error, message):
    with pytest.raises(error, match=f"^{re.escape(message)}$"):
        BufferWriter(*args, **options)
