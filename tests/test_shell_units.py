"""Amaranth-simulator unit tests of the shell's parts: UART, CRC-16, and a protocol smoke test."""

import json
import random

import pytest

from celine.firmware.protocol import Command, Status, crc16, encode_request
from celine.engines.mac.spec import MacArrayParams
from celine.rtl.shell.crc16 import CRC16
from celine.rtl.shell.shell import build_shell, uart_divisor
from celine.rtl.shell.uart import UARTReceiver, UARTTransmitter
from celine.sim.amaranth_sim import run_sim

DIVISOR = 4


async def send_uart(ctx, pin, data, divisor=DIVISOR, gap=0):
    for byte in data:
        for bit in [0] + [(byte >> k) & 1 for k in range(8)] + [1]:
            ctx.set(pin, bit)
            await ctx.tick().repeat(divisor)
        for _ in range(gap):
            await ctx.tick()


async def receive_uart(ctx, pin, count, divisor=DIVISOR, timeout=200_000):
    """Decode `count` bytes from a TX pin (sampling in the middle of each bit)."""
    out = []
    waited = 0
    while len(out) < count:
        if ctx.get(pin):
            await ctx.tick()
            waited += 1
            if waited > timeout:
                raise TimeoutError(f"received {out!r}, wanted {count} bytes")
            continue
        await ctx.tick().repeat(divisor + divisor // 2)
        byte = 0
        for k in range(8):
            byte |= ctx.get(pin) << k
            await ctx.tick().repeat(divisor)
        out.append(byte)
        waited = 0
    return bytes(out)


def test_crc16_matches_reference():
    dut = CRC16()
    message = b"123456789" + bytes(range(256))

    async def testbench(ctx):
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        ctx.set(dut.en, 1)
        for k, byte in enumerate(message):
            ctx.set(dut.data, byte)
            await ctx.tick()
            if k == 8:
                assert ctx.get(dut.value) == 0x29B1
        assert ctx.get(dut.value) == crc16(message)

    run_sim(dut, testbench)


def test_uart_loopback_with_stalls():
    from amaranth.hdl import Module
    tx, rx = UARTTransmitter(divisor=5), UARTReceiver(divisor=5)
    m = Module()
    m.submodules.tx, m.submodules.rx = tx, rx
    m.d.comb += rx.rx.eq(tx.tx)
    data = bytes([0x00, 0xFF, 0x55, 0xAA, 0xA5, 0x5A]) + bytes(random.Random(1).randrange(256)
                                                              for _ in range(20))
    got = []

    async def producer(ctx):
        rng = random.Random(2)
        for byte in data:
            ctx.set(tx.i.payload, byte)
            ctx.set(tx.i.valid, 1)
            await ctx.tick().until(tx.i.ready)
            ctx.set(tx.i.valid, 0)
            for _ in range(rng.randrange(3) * 7):
                await ctx.tick()

    async def consumer(ctx):
        ctx.set(rx.o.ready, 1)
        while len(got) < len(data):
            _, _, valid, payload = await ctx.tick().sample(rx.o.valid, rx.o.payload)
            if valid:
                got.append(payload)

    run_sim(m, producer, consumer, deadline=1e-6 * 20 * 5 * 12 * len(data))
    assert bytes(got) == data


def test_uart_receiver_drops_a_frame_without_stop_bit():
    dut = UARTReceiver(divisor=4)

    async def testbench(ctx):
        ctx.set(dut.rx, 1)
        ctx.set(dut.o.ready, 1)
        await ctx.tick().repeat(8)
        for bit in [0] + [1] * 8 + [0]:          # stop bit missing
            ctx.set(dut.rx, bit)
            await ctx.tick().repeat(4)
        ctx.set(dut.rx, 1)
        seen = 0
        for _ in range(40):
            await ctx.tick()
            seen |= ctx.get(dut.o.valid)
        assert not seen

    run_sim(dut, testbench)


def test_uart_divisor_rule():
    assert uart_divisor(50_000_000, 3_000_000) == 17
    with pytest.raises(ValueError, match=r"^baud must be between 1200 and 12500000 and reachable "
                                         r"from 50 MHz within 2%, not 12000000 \(error 4\.2%\)$"):
        uart_divisor(50_000_000, 12_000_000)


def test_shell_answers_status_info_write_read():
    """A small shell in the Amaranth simulator, driven through its UART pins."""
    clock = 1_000_000
    dut = build_shell(accel_params=MacArrayParams(rows=1, cols=1, precisions=(8,)),
                      clock_hz=clock * DIVISOR, baud=clock, operand_depth=4, result_depth=4,
                      max_payload=1024)
    info = json.loads(dut.info)

    def reply(status, seq, payload=b""):
        body = bytes([status, seq, len(payload) & 0xFF, len(payload) >> 8]) + payload
        crc = crc16(body)
        return bytes([0x5A]) + body + bytes([crc & 0xFF, crc >> 8])

    async def testbench(ctx):
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(10)
        exchanges = [
            (encode_request(Command.STATUS, 1), reply(Status.OK, 1, bytes(8))),
            (encode_request(Command.WRITE, 2, bytes([0, 1, 0, 0, 0, 0x11, 0x22])),
             reply(Status.OK, 2)),
            (encode_request(Command.READ, 3, bytes([0, 0, 0, 0, 0, 4, 0])),
             reply(Status.OK, 3, bytes([0, 0x11, 0x22, 0]))),
            (b"\x00\x13" + encode_request(9, 4), reply(Status.UNKNOWN_COMMAND, 4)),
            (encode_request(Command.READ, 5, bytes([2, 0, 1, 0, 0, 1, 0])), reply(Status.BAD_ADDRESS, 5)),
        ]
        for request, expected in exchanges:
            await send_uart(ctx, dut.rx, request)
            got = await receive_uart(ctx, dut.tx, len(expected))
            assert got == expected, (request.hex(), got.hex(), expected.hex())
        await send_uart(ctx, dut.rx, encode_request(Command.INFO, 6))
        got = await receive_uart(ctx, dut.tx, 7 + len(dut.info))
        assert got == reply(Status.OK, 6, dut.info)
        assert info["buffers"][0]["name"] == "act"

    run_sim(dut, testbench)


# -- regressions: inter-byte timeout and receive overrun (issue 8 §4) ------------------------

def reply_frame(status, seq, payload=b""):
    from celine.spec.protocol import encode_reply
    return encode_reply(status, seq, payload)


def small_shell(divisor=DIVISOR, **settings):
    """A 1x1 MAC shell whose `act` and `weight` buffers hold 64 one-byte words."""
    settings = {"operand_depth": 64, "result_depth": 4, "max_payload": 64, "timeout_bits": 64,
                **settings}
    return build_shell(accel_params=MacArrayParams(rows=1, cols=1, precisions=(8,)),
                       clock_hz=1_000_000 * divisor, baud=1_000_000, **settings)


@pytest.mark.parametrize("divisor", [4, 5])
@pytest.mark.parametrize("extra_bits,status", [(0, Status.OK), (1, Status.TIMEOUT)])
def test_inter_byte_timeout_counts_quiet_line_time(divisor, extra_bits, status):
    """Gaps of timeout_bits bit times between the bytes of a frame never time out; one of
    timeout_bits + 1 always does (docs/protocol.md). Regression: the timer restarted when a
    byte was taken at its stop bit, so the next byte's own 10 bit times counted against the
    gap and a quiet gap of about 55 bit times timed out."""
    dut = small_shell(divisor)
    gap_bits = dut.timeout_cycles // divisor + extra_bits
    request = encode_request(Command.WRITE, 7, bytes([0, 3, 0, 0, 0, 0x5C]))
    sent = []

    async def host(ctx):
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(10)
        await send_uart(ctx, dut.rx, request[:3], divisor)
        for k in range(3, len(request) - 1):        # each byte after a long quiet gap
            await ctx.tick().repeat(gap_bits * divisor)
            await send_uart(ctx, dut.rx, request[k:k + 1], divisor)
        await send_uart(ctx, dut.rx, request[-1:], divisor)
        sent.append(True)

    async def listener(ctx):
        reply = await receive_uart(ctx, dut.tx, 7, divisor)
        assert reply == reply_frame(status, 7)
        assert sent or status != Status.OK, "a reply before the frame was whole"
        while not sent:                             # a timed-out frame's rest is garbage
            await ctx.tick()
        # Then the buffer: written when the frame was whole, not after a timeout.
        await send_uart(ctx, dut.rx, encode_request(Command.READ, 8, bytes([0, 3, 0, 0, 0, 1, 0])),
                        divisor)
        written = b"\x5c" if status == Status.OK else b"\x00"
        assert await receive_uart(ctx, dut.tx, 8, divisor) == reply_frame(Status.OK, 8, written)

    run_sim(dut, host, listener)


@pytest.mark.parametrize("reads", [1, 2])
def test_a_request_sent_during_a_long_reply_is_received(reads):
    """Regression: a full-size WRITE sent while the reply to a READ of max_payload bytes
    went out overran the 32-byte receive FIFO and was lost. With two READs ahead of it
    (the second waits for the first's reply), most of the WRITE waits in the FIFO."""
    dut = small_shell()
    size = dut.max_payload
    data = bytes((37 * k + 11) & 0xFF for k in range(size - 5))
    write = encode_request(Command.WRITE, 9, bytes([1, 0, 0, 0, 0]) + data)
    read = b"".join(encode_request(Command.READ, seq, bytes(5) + size.to_bytes(2, "little"))
                    for seq in range(reads))
    assert len(write) == size + 7

    async def host(ctx):
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(10)
        await send_uart(ctx, dut.rx, read + write)      # the WRITE while READ replies go out

    async def listener(ctx):
        replies = await receive_uart(ctx, dut.tx, reads * (size + 7) + 7)
        assert replies == b"".join(reply_frame(Status.OK, seq, bytes(size))
                                   for seq in range(reads)) + reply_frame(Status.OK, 9)
        await send_uart(ctx, dut.rx, encode_request(Command.READ, 3, bytes([1, 0, 0, 0, 0])
                                                    + (size - 5).to_bytes(2, "little")))
        assert await receive_uart(ctx, dut.tx, size + 2) == reply_frame(Status.OK, 3, data)
        await send_uart(ctx, dut.rx, encode_request(Command.STATUS, 4))
        assert (await receive_uart(ctx, dut.tx, 15))[5] == 0, "STATUS flags: no overrun"

    run_sim(dut, host, listener)


async def receive_until_quiet(ctx, pin, quiet_bits, divisor=DIVISOR):
    """Bytes from a TX pin until it stays idle for `quiet_bits` bit times."""
    out = bytearray()
    while True:
        for _ in range(quiet_bits * divisor):
            await ctx.tick()
            if not ctx.get(pin):
                break
        else:
            return bytes(out)
        out += await receive_uart(ctx, pin, 1, divisor)


def test_a_lost_byte_is_reported_in_status_once():
    """Requests sent back to back, faster than their replies go out, overrun the receive
    FIFO at last: STATUS reports it (StatusFlags.OVERRUN) once."""
    from celine.spec.protocol import StatusFlags
    dut = small_shell()
    size = dut.max_payload
    reads = b"".join(encode_request(Command.READ, seq, bytes(5) + size.to_bytes(2, "little"))
                     for seq in range(16))
    sent = []

    async def host(ctx):
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(10)
        await send_uart(ctx, dut.rx, reads)
        sent.append(True)

    async def listener(ctx):
        replies = await receive_until_quiet(ctx, dut.tx, 3 * 64)
        assert sent
        assert len(replies) < 16 * (size + 7), "every request answered: no overrun happened"
        flags = []
        for seq in (20, 21):
            await send_uart(ctx, dut.rx, encode_request(Command.STATUS, seq))
            reply = await receive_uart(ctx, dut.tx, 15)
            assert reply[:5] == bytes([0x5A, Status.OK, seq, 8, 0])
            flags.append(reply[5])
        assert flags == [StatusFlags.OVERRUN, 0]

    run_sim(dut, host, listener)


# -- the receive FIFO ------------------------------------------------------------------------

@pytest.mark.parametrize("depth", [1, 2, 5, 64, 1034])
@pytest.mark.parametrize("idle_prob,backpressure_prob", [(0.0, 0.0), (0.5, 0.0), (0.0, 0.7),
                                                         (0.3, 0.5)])
def test_receive_fifo_keeps_every_byte_in_order(depth, idle_prob, backpressure_prob):
    from celine.rtl.shell.receive_fifo import ReceiveFIFO
    from celine.sim.amaranth_sim import stream_get_n, stream_put_all
    dut = ReceiveFIFO(depth)
    rng = random.Random(depth)
    sent = [rng.randrange(256) for _ in range(3 * depth + 40)]
    received = []

    async def producer(ctx):
        await stream_put_all(ctx, dut.i, sent, rng=random.Random(1), idle_prob=idle_prob)

    async def consumer(ctx):
        received.extend(await stream_get_n(ctx, dut.o, len(sent), rng=random.Random(2),
                                           backpressure_prob=backpressure_prob))

    run_sim(dut, producer, consumer, deadline=1.0)
    assert received == sent


@pytest.mark.parametrize("depth", [1, 3, 8, 1034])
def test_receive_fifo_holds_depth_bytes_and_streams(depth):
    """With `o` stalled it takes exactly `depth` bytes. Empty again, with `o` always ready
    and a byte offered every cycle, a byte leaves ReceiveFIFO.latency cycles after
    it came in, and from depth 8 on three bytes leave every five cycles (the reader's
    queue of 4 words; a UART brings a byte every ten bit times at most)."""
    from celine.rtl.shell.receive_fifo import ReceiveFIFO
    dut = ReceiveFIFO(depth)
    out = []

    async def testbench(ctx):
        ctx.set(dut.i.valid, 1)
        taken = 0
        for _ in range(depth + 20):
            ctx.set(dut.i.payload, taken & 0xFF)
            _, _, ready = await ctx.tick().sample(dut.i.ready)
            taken += ready
        assert taken == depth
        ctx.set(dut.i.valid, 0)
        ctx.set(dut.o.ready, 1)
        for _ in range(2 * depth + 20):             # drain
            _, _, valid, byte = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if valid:
                out.append(byte)
        assert len(out) == depth
        ctx.set(dut.i.valid, 1)
        taken_at, out_at = [], []
        for cycle in range(200):
            ctx.set(dut.i.payload, taken & 0xFF)
            _, _, ready, valid, byte = await ctx.tick().sample(dut.i.ready, dut.o.valid,
                                                                dut.o.payload)
            if ready:
                taken_at.append(cycle)
                taken += 1
            if valid:
                out_at.append(cycle)
                out.append(byte)
        assert out_at[0] - taken_at[0] == ReceiveFIFO.latency == 5
        if depth >= 8:
            assert all(sum(1 for c in out_at if start <= c < start + 5) == 3
                       for start in range(out_at[0], 195))

    run_sim(dut, testbench)
    assert out == [k & 0xFF for k in range(len(out))]


def test_receive_fifo_depth_is_checked():
    from celine.rtl.shell.receive_fifo import ReceiveFIFO
    with pytest.raises(ValueError, match=r"^depth must be at least 1, not 0$"):
        ReceiveFIFO(0)


# -- the command executor: a repeated RUN (docs/protocol.md, "Repeated RUN") ---------------

def test_executor_answers_a_replayed_run_without_starting_it():
    """The executor alone, its engine busy from the first start: a RUN with the sequence
    number of the RUN just started is OK (not BUSY) and starts nothing; a damaged frame in
    between does not make it forget, any other checked frame does."""
    from celine.rtl.shell.command_executor import CommandExecutor
    from celine.spec.fields import BufferSpec
    dut = CommandExecutor(buffers=[BufferSpec("a", 8, 4, True)], registers=2, max_payload=16,
                          info_length=4)
    starts = []

    async def request(ctx, command, seq, status=Status.OK):
        ctx.set(dut.request.payload.status, status)
        ctx.set(dut.request.payload.command, command)
        ctx.set(dut.request.payload.seq, seq)
        ctx.set(dut.request.payload.length, 0)
        ctx.set(dut.request.valid, 1)
        ctx.set(dut.reply.ready, 1)
        for _ in range(50):
            _, _, taken, reply_status = await ctx.tick().sample(dut.request.ready,
                                                                dut.reply.payload.status)
            if taken:
                break
        ctx.set(dut.request.valid, 0)
        await ctx.tick().repeat(3)
        return Status(reply_status)

    async def engine(ctx):
        async for _, _, start in ctx.tick().sample(dut.start):
            if start:
                starts.append(True)
                ctx.set(dut.busy, 1)            # busy from then on

    async def host(ctx):
        assert await request(ctx, Command.RUN, 5) == Status.OK
        assert await request(ctx, Command.RUN, 5) == Status.OK           # replay
        assert await request(ctx, Command.RUN, 5, Status.BAD_CRC) == Status.BAD_CRC
        assert await request(ctx, Command.RUN, 5) == Status.OK           # still a replay
        assert await request(ctx, Command.STATUS, 6) == Status.OK
        assert await request(ctx, Command.RUN, 5) == Status.BUSY         # forgotten
        assert len(starts) == 1

    run_sim(dut, host, processes=[engine])


# -- a break on the line resets the device (docs/protocol.md, "Break") -------------------

def test_a_break_resets_everything_but_the_buffers():
    """The small shell behind the break detector the board top has (with_break_reset): a
    long run is going, a CONFIGURE set a register; a break; then STATUS is idle and zero,
    the buffer written before reads back, and a run over the registers' reset values is
    empty, all as the golden model says."""
    from celine.golden.shell import shell_model
    from celine.rtl.shell.line_break import with_break_reset
    from celine.spec.protocol import BREAK_BITS, encode_reply
    shell = small_shell(operand_depth=1024)
    dut = with_break_reset(shell, DIVISOR)
    model = shell_model("mac", MacArrayParams(rows=1, cols=1, precisions=(8,)),
                        operand_depth=1024, result_depth=4, max_payload=64, timeout_bits=64)
    data = bytes(range(1, 33))
    before = [encode_request(Command.WRITE, 1, bytes(5) + data),
              encode_request(Command.CONFIGURE, 2, bytes([0]) + (32).to_bytes(4, "little")),
              encode_request(Command.CONFIGURE, 3, bytes([1]) + (32).to_bytes(4, "little"))]
    after = [encode_request(Command.STATUS, 5),
             encode_request(Command.READ, 6, bytes(5) + (32).to_bytes(2, "little")),
             encode_request(Command.RUN, 7)]       # over the reset registers: empty
    for request in before:
        model.feed(request)
    model.line_break()
    want = [model.feed(request) for request in after]
    assert want[0] == encode_reply(Status.OK, 5, bytes(8))

    async def testbench(ctx):
        ctx.set(shell.rx, 1)
        await ctx.tick().repeat(10)
        for request in before:
            await send_uart(ctx, shell.rx, request)
            await receive_uart(ctx, shell.tx, 7)
        await send_uart(ctx, shell.rx, encode_request(Command.RUN, 4))     # 1024 beats
        assert await receive_uart(ctx, shell.tx, 7) == encode_reply(Status.OK, 4)
        assert ctx.get(shell.busy)
        ctx.set(shell.rx, 0)                                                # the break
        await ctx.tick().repeat((BREAK_BITS + 2) * DIVISOR)
        ctx.set(shell.rx, 1)
        await ctx.tick().repeat(4 * DIVISOR)
        assert not ctx.get(shell.busy)
        for request, expected in zip(after, want):
            await send_uart(ctx, shell.rx, request)
            assert await receive_uart(ctx, shell.tx, len(expected)) == expected
        # a low line shorter than a break is a framing error, not a reset
        for request in before[1:]:
            await send_uart(ctx, shell.rx, request)
            await receive_uart(ctx, shell.tx, 7)
        ctx.set(shell.rx, 0)
        await ctx.tick().repeat((BREAK_BITS - 4) * DIVISOR)
        ctx.set(shell.rx, 1)
        await ctx.tick().repeat(100 * DIVISOR)
        await send_uart(ctx, shell.rx, encode_request(Command.RUN, 9))
        assert await receive_uart(ctx, shell.tx, 7) == encode_reply(Status.OK, 9)
        assert ctx.get(shell.busy)                  # the registers kept: 1024 beats

    run_sim(dut, testbench)


def test_a_glitch_on_the_line_is_not_a_byte():
    """A low pulse shorter than half a bit (noise, or the synchroniser's last low cycles
    as a break's reset ends) is no start bit: a frame right behind it is received.
    Regression: the receiver took any falling edge for a start bit, read 0xFF-like bytes
    into the next frame's time, and lost that frame."""
    dut = small_shell()

    async def testbench(ctx):
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(10)
        for seq in (1, 2):
            ctx.set(dut.rx, 0)
            await ctx.tick().repeat(DIVISOR // 2 - 1)
            ctx.set(dut.rx, 1)
            await ctx.tick().repeat(DIVISOR)
            await send_uart(ctx, dut.rx, encode_request(Command.STATUS, seq))
            assert await receive_uart(ctx, dut.tx, 15) == reply_frame(Status.OK, seq, bytes(8))

    run_sim(dut, testbench)
