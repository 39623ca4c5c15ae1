"""A buffer with two read ports (BufferSpec.read_ports), and one the engine also writes
(BufferSpec.engine_writes), and one the engine watches (BufferSpec.watched): their checks,
their place in the engine <-> shell contract, and the shell and the adapter bench serving
them."""

import random

import pytest
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from celine.rtl.shell.contract import buffer_port_signature, check_engine, engine_signature
from celine.rtl.shell.shell import Shell
from celine.sim.adapter_bench import AdapterBench
from celine.sim.amaranth_sim import run_sim
from celine.spec.fields import BufferSpec, Register, RegisterMap
from celine.spec.protocol import (Command, Status, encode_reply, encode_request, read_payload,
                                  write_payload)

DEPTH = 32
BUFFERS = [BufferSpec("q", 16, DEPTH, True, read_ports=2),     # two read ports
           BufferSpec("k", 8, 8, True),                       # one
           BufferSpec("out", 8, 4, False)]                    # written by the engine
REGISTERS = RegisterMap([Register("count")])


# -- BufferSpec ------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [0, 3])
def test_read_ports_is_1_or_2(value):
    with pytest.raises(ValueError, match=rf"^read_ports must be 1 or 2, not {value}$"):
        BufferSpec("q", 8, 4, True, read_ports=value)


def test_read_ports_is_an_integer():
    with pytest.raises(TypeError, match=r"^read_ports must be an integer, not True$"):
        BufferSpec("q", 8, 4, True, read_ports=True)


def test_a_buffer_the_engine_writes_has_one_read_port():
    with pytest.raises(ValueError, match=r"^read_ports must be 1 for a buffer the engine "
                                         r"writes, not 2$"):
        BufferSpec("out", 8, 4, False, read_ports=2)


@pytest.mark.parametrize("make, error, message", [
    (lambda: BufferSpec("q", 8, 4, True, read_latency=4), ValueError,
     "read_latency must be 1 or 2 or 3, not 4"),
    (lambda: BufferSpec("q", 8, 4, True, read_latency=2.0), TypeError,
     "read_latency must be an integer, not 2.0"),
    (lambda: BufferSpec("out", 8, 4, False, read_latency=2), ValueError,
     "read_latency must be 1 for a buffer the engine writes (it does not read it), not 2"),
])
def test_read_latency_checks(make, error, message):
    with pytest.raises(error) as info:
        make()
    assert str(info.value) == message
    assert BufferSpec("q", 8, 4, True).read_latency == 1
    assert (BufferSpec("q", 8, 4, True, read_latency=2).describe()
            == BufferSpec("q", 8, 4, True).describe())


def test_read_ports_is_a_keyword_and_not_in_info():
    with pytest.raises(TypeError):
        BufferSpec("q", 8, 4, True, 2)              # pylint: disable=too-many-function-args
    assert BufferSpec("q", 8, 4, True).read_ports == 1
    assert (BufferSpec("q", 8, 4, True, read_ports=2).describe()
            == BufferSpec("q", 8, 4, True).describe()
            == {"name": "q", "word_bytes": 1, "word_stride": 1, "depth": 4, "writable": True})


# -- the contract ----------------------------------------------------------------------------

def ports(signature):
    return {".".join(map(str, path)): (member.flow, member.shape)
            for path, member in signature.members.flatten() if member.is_port}


def test_port_b_is_in_the_contract_exactly_with_two_read_ports():
    q, k, out = BUFFERS
    assert ports(buffer_port_signature(q)) == {
        "addr": (Out, range(DEPTH)), "data": (In, 16),
        "b.addr": (Out, range(DEPTH)), "b.data": (In, 16)}
    assert ports(buffer_port_signature(k)) == {"addr": (Out, range(8)), "data": (In, 8)}
    assert set(ports(buffer_port_signature(out))) == {"addr", "data", "write"}
    paths = ports(engine_signature(BUFFERS, REGISTERS))
    assert {p for p in paths if ".b." in p} == {"mem.q.b.addr", "mem.q.b.data"}


def component(signature):
    class Partial(wiring.Component):
        def __init__(self):
            super().__init__(signature)

        def elaborate(self, platform):
            return Module()
    return Partial()


def test_check_engine_names_a_missing_port_b():
    one_port = [BufferSpec("q", 16, DEPTH, True)] + BUFFERS[1:]
    with pytest.raises(TypeError, match=r"^engine must have a member 'mem\.q\.b\.addr' of "
                                        r"Out\(unsigned\(5\)\) \(the shell contract\), "
                                        r"not none$"):
        check_engine(component(engine_signature(one_port, REGISTERS)), BUFFERS, REGISTERS)
    narrow = [BufferSpec("q", 8, DEPTH, True, read_ports=2)] + BUFFERS[1:]
    with pytest.raises(TypeError, match=r"^engine member 'mem\.q\.data' must be "
                                        r"In\(unsigned\(16\)\), not In\(unsigned\(8\)\)$"):
        check_engine(component(engine_signature(narrow, REGISTERS)), BUFFERS, REGISTERS)


# -- the shell and the adapter bench serve both ports ---------------------------------------

async def read_both_ports(ctx, port, words, rng, cycles=60, latency=1):
    """Drive two random addresses a cycle on ports A and B of `port`; each port returns its
    word `latency` cycles later."""
    sent = []
    for _ in range(cycles):
        a, b = rng.randrange(len(words)), rng.randrange(len(words))
        ctx.set(port.addr, a)
        ctx.set(port.b.addr, b)
        sent.append((a, b))
        await ctx.tick()
        if len(sent) >= latency:
            a, b = sent[-latency]
            assert (ctx.get(port.data), ctx.get(port.b.data)) == (words[a], words[b]), (a, b)


def with_latency(buffers, latency):
    """`buffers` with the first (q) read at `latency` (BufferSpec.read_latency)."""
    q = buffers[0]
    return [BufferSpec(q.name, q.width, q.depth, q.writable, read_ports=q.read_ports,
                       read_latency=latency)] + buffers[1:]


@pytest.mark.parametrize("latency", [1, 2, 3])
def test_the_adapter_bench_serves_port_b(latency):
    buffers = with_latency(BUFFERS, latency)
    engine = component(engine_signature(buffers, REGISTERS))
    engine.buffers = buffers
    rng = random.Random(1)
    words = [rng.randrange(1 << 16) for _ in range(DEPTH)]

    async def testbench(ctx):
        await read_both_ports(ctx, engine.mem.q, words, rng, latency=latency)

    run_sim(AdapterBench(engine, {"q": words}), testbench)


DIVISOR = 4        # clock cycles per UART bit


async def uart_send(ctx, pin, data):
    for byte in data:
        for bit in [0] + [(byte >> k) & 1 for k in range(8)] + [1]:
            ctx.set(pin, bit)
            await ctx.tick().repeat(DIVISOR)


async def uart_receive(ctx, pin, count, timeout=20_000):
    """`count` bytes from a TX pin, each bit sampled in its middle."""
    out = bytearray()
    for _ in range(timeout):
        if len(out) == count:
            return bytes(out)
        if ctx.get(pin):
            await ctx.tick()
            continue
        await ctx.tick().repeat(DIVISOR + DIVISOR // 2)
        byte = 0
        for k in range(8):
            byte |= ctx.get(pin) << k
            await ctx.tick().repeat(DIVISOR)
        out.append(byte)
    raise TimeoutError(f"received {bytes(out)!r}, wanted {count} bytes")


@pytest.mark.parametrize("latency", [1, 2, 3])
def test_the_shell_serves_two_read_ports_from_host_written_words(latency):
    """The host writes the buffer over the UART; then the engine (here the testbench,
    driving the outputs of an engine without logic) owns it and reads two random addresses
    a cycle on ports A and B, each word `latency` cycles after its address (2: the block
    RAM's output register); then the host reads it back through port A."""
    buffers = with_latency(BUFFERS, latency)

    class Engine(wiring.Component):
        def __init__(self):
            super().__init__(engine_signature(buffers, REGISTERS))

        def elaborate(self, platform):
            return Module()

    engine = Engine()
    dut = Shell(engine, buffers=buffers, registers=REGISTERS, description={"engine": "test"},
                clock_hz=DIVISOR * 1_000_000, baud=1_000_000, max_payload=128)
    rng = random.Random(2)
    words = [rng.randrange(1 << 16) for _ in range(DEPTH)]
    data = b"".join(word.to_bytes(2, "little") for word in words)

    async def exchange(ctx, command, seq, payload, reply):
        await uart_send(ctx, dut.rx, encode_request(command, seq, payload))
        expected = encode_reply(Status.OK, seq, reply)
        assert await uart_receive(ctx, dut.tx, len(expected)) == expected

    async def testbench(ctx):
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(10)
        await exchange(ctx, Command.WRITE, 1, write_payload(0, 0, data), b"")
        ctx.set(engine.busy, 1)
        await ctx.tick()        # the engine owns the buffers from the cycle after `busy` rises
        await read_both_ports(ctx, engine.mem.q, words, rng, latency=latency)
        ctx.set(engine.busy, 0)
        await exchange(ctx, Command.READ, 2, read_payload(0, 6, 20), data[6:26])

    run_sim(dut, testbench)


# -- a host-writable buffer the engine writes too (engine_writes) ---------------------------

WRITTEN = [BufferSpec("q", 16, DEPTH, True, read_ports=2, engine_writes=True),
           BufferSpec("out", 8, 4, False)]


def written(latency):
    """WRITTEN with q read at `latency` (at 3 the shell registers port A's write with its
    address: it lands a cycle later)."""
    q = WRITTEN[0]
    return [BufferSpec(q.name, q.width, q.depth, True, read_ports=2, engine_writes=True,
                       read_latency=latency)] + WRITTEN[1:]


@pytest.mark.parametrize("make, error, message", [
    (lambda: BufferSpec("q", 8, 4, True, read_ports=2, engine_writes=1), TypeError,
     "engine_writes must be True or False, not 1"),
    (lambda: BufferSpec("out", 8, 4, False, engine_writes=True), ValueError,
     "engine_writes must be False for a buffer the host does not write, not True"),
    (lambda: BufferSpec("q", 8, 4, True, engine_writes=True), ValueError,
     "engine_writes must be False for a buffer with 1 read port, not True"),
])
def test_engine_writes_checks(make, error, message):
    with pytest.raises(error) as info:
        make()
    assert str(info.value) == message


def test_engine_writes_in_the_contract_not_in_info():
    q = WRITTEN[0]
    assert ports(buffer_port_signature(q)) == {
        "addr": (Out, range(DEPTH)), "data": (In, 16), "wdata": (Out, 16), "write": (Out, 1),
        "b.addr": (Out, range(DEPTH)), "b.data": (In, 16)}
    assert q.describe() == BUFFERS[0].describe()
    with pytest.raises(TypeError, match=r"^engine must have a member 'mem\.q\.wdata' of "
                                        r"Out\(unsigned\(16\)\) \(the shell contract\), "
                                        r"not none$"):
        check_engine(component(engine_signature(BUFFERS[:1] + WRITTEN[1:], REGISTERS)),
                     WRITTEN, REGISTERS)


async def write_through_port_a(ctx, port, words, rng, count=40, latency=1):
    """The engine writes `count` random words through port A (some cycles idle, reading
    port B meanwhile, each word `latency` cycles after its address: the word as it was
    before the cycle's own write); `words` follows."""
    sent = []
    for _ in range(count + latency - 1):
        a, b = rng.randrange(len(words)), rng.randrange(len(words))
        write = len(sent) < count and rng.random() < 0.7
        value = rng.randrange(1 << 16)
        ctx.set(port.addr, a)
        ctx.set(port.b.addr, b)
        ctx.set(port.wdata, value)
        ctx.set(port.write, write)
        sent.append((b, words[b]))
        await ctx.tick()
        if len(sent) >= latency:
            b, word = sent[-latency]
            assert ctx.get(port.b.data) == word, b       # the word before that cycle's write
        if write:
            words[a] = value
    ctx.set(port.write, 0)


@pytest.mark.parametrize("latency", [1, 3])
def test_the_adapter_bench_serves_engine_writes(latency):
    buffers = written(latency)
    engine = component(engine_signature(buffers, REGISTERS))
    engine.buffers = buffers
    rng = random.Random(3)
    words = [rng.randrange(1 << 16) for _ in range(DEPTH)]
    bench = AdapterBench(engine, {"q": list(words)})

    async def testbench(ctx):
        await write_through_port_a(ctx, engine.mem.q, words, rng, latency=latency)
        await ctx.tick()             # the last write lands (a cycle late at latency 3)
        await read_both_ports(ctx, engine.mem.q, words, rng, latency=latency)
        assert [ctx.get(bench.memories["q"].data[i]) for i in range(DEPTH)] == words

    run_sim(bench, testbench)


@pytest.mark.parametrize("latency", [1, 3])
def test_the_shell_serves_engine_writes_through_port_a(latency):
    """The host writes the buffer; the engine owns it and writes random words through port
    A while reading port B, then reads both ports; the host reads every word back. At read
    latency 3 the block RAM registers the write with its address (and the host's too)."""
    buffers = written(latency)

    class Engine(wiring.Component):
        def __init__(self):
            super().__init__(engine_signature(buffers, REGISTERS))

        def elaborate(self, platform):
            return Module()

    engine = Engine()
    dut = Shell(engine, buffers=buffers, registers=REGISTERS, description={"engine": "test"},
                clock_hz=DIVISOR * 1_000_000, baud=1_000_000, max_payload=128)
    rng = random.Random(4)
    words = [rng.randrange(1 << 16) for _ in range(DEPTH)]

    def as_bytes(values):
        return b"".join(word.to_bytes(2, "little") for word in values)

    async def exchange(ctx, command, seq, payload, reply):
        await uart_send(ctx, dut.rx, encode_request(command, seq, payload))
        expected = encode_reply(Status.OK, seq, reply)
        assert await uart_receive(ctx, dut.tx, len(expected)) == expected

    async def testbench(ctx):
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(10)
        await exchange(ctx, Command.WRITE, 1, write_payload(0, 0, as_bytes(words)), b"")
        ctx.set(engine.busy, 1)
        await ctx.tick()        # the engine owns the buffers from the cycle after `busy` rises
        await write_through_port_a(ctx, engine.mem.q, words, rng, latency=latency)
        await ctx.tick()             # the last write lands (a cycle late at latency 3)
        await read_both_ports(ctx, engine.mem.q, words, rng, latency=latency)
        ctx.set(engine.busy, 0)
        await exchange(ctx, Command.READ, 2, read_payload(0, 0, 64), as_bytes(words))

    run_sim(dut, testbench)


# -- a buffer the engine watches (watched) ----------------------------------------------------

WATCHED = [BufferSpec("w", 8, 8, True, watched=True), BufferSpec("out", 8, 4, False)]


@pytest.mark.parametrize("make, error, message", [
    (lambda: BufferSpec("w", 8, 4, True, watched=1), TypeError,
     "watched must be True or False, not 1"),
    (lambda: BufferSpec("out", 8, 4, False, watched=True), ValueError,
     "watched must be False for a buffer the host does not write, not True"),
])
def test_watched_checks(make, error, message):
    with pytest.raises(error) as info:
        make()
    assert str(info.value) == message


def test_the_shell_tells_the_engine_when_the_host_writes_a_watched_buffer():
    """`host_wrote` is in the contract only for a watched buffer, not in INFO, and is high
    in exactly the cycles the host's WRITE stores a word: three words, three cycles."""
    w = WATCHED[0]
    assert ports(buffer_port_signature(w)) == {"addr": (Out, range(8)), "data": (In, 8),
                                               "host_wrote": (In, 1)}
    assert w.describe() == BufferSpec("w", 8, 8, True).describe()

    class Engine(wiring.Component):
        def __init__(self):
            super().__init__(engine_signature(WATCHED, REGISTERS))

        def elaborate(self, platform):
            return Module()

    engine = Engine()
    dut = Shell(engine, buffers=WATCHED, registers=REGISTERS, description={"engine": "test"},
                clock_hz=DIVISOR * 1_000_000, baud=1_000_000, max_payload=128)
    pulses = []

    async def watch(ctx):
        async for _clk, _rst, pulse in ctx.tick().sample(engine.mem.w.host_wrote):
            pulses.append(pulse)

    async def testbench(ctx):
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(10)
        await uart_send(ctx, dut.rx, encode_request(Command.WRITE, 1,
                                                    write_payload(0, 2, b"\x01\x02\x03")))
        expected = encode_reply(Status.OK, 1, b"")
        assert await uart_receive(ctx, dut.tx, len(expected)) == expected
        assert sum(pulses) == 3

    run_sim(dut, testbench, processes=[watch])
