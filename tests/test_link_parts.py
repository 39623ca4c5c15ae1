"""The host link's three parts, each alone in the Amaranth simulator: FrameDecoder (bytes to
requests), CommandExecutor (requests to actions and reply descriptors), ReplyEncoder
(descriptors to reply frames); the executor's decisions against the golden shell model."""

import random
import struct

import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory

from celine import registry
from celine.engines.mac.spec import MacArrayParams
from celine.golden.shell import shell_model
from celine.rtl.shell.command_executor import CommandExecutor
from celine.rtl.shell.frame_decoder import FrameDecoder
from celine.rtl.shell.link_streams import ARG_BYTES, READ_LATENCY, STAGING_LATENCY, Source
from celine.rtl.shell.reply_encoder import ReplyEncoder
from celine.rtl.shell.uart import UARTReceiver
from celine.sim.amaranth_sim import run_sim, stream_get, stream_get_n, stream_put, stream_put_all
from celine.spec.fields import BufferSpec
from celine.spec.protocol import (STATUS_BYTES, Command, Status, StatusFlags, configure_payload,
                                  crc16, encode_reply, encode_request, read_payload,
                                  write_payload)

MAX_PAYLOAD = 32


def request_dict(status, command=0, seq=0, payload=b"", length=None):
    args = (bytes(payload[:ARG_BYTES]) + bytes(ARG_BYTES))[:ARG_BYTES]
    return {"status": status, "command": command, "seq": seq,
            "length": len(payload) if length is None else length, "args": list(args)}


# -- FrameDecoder ----------------------------------------------------------------------------

def decode(stream_bytes, count, *, timeout_cycles=1000, idle_prob=0.3, backpressure_prob=0.3,
           staged_lengths=()):
    """Feed `stream_bytes` to a FrameDecoder; the first `count` requests, each with its staged
    payload bytes (read back through `staging` while the request waits)."""
    dut = FrameDecoder(max_payload=MAX_PAYLOAD, timeout_cycles=timeout_cycles)
    got = []

    async def producer(ctx):
        await stream_put_all(ctx, dut.rx, list(stream_bytes), rng=random.Random(1),
                             idle_prob=idle_prob)

    async def consumer(ctx):
        rng = random.Random(2)
        while len(got) < count:
            while rng.random() < backpressure_prob:
                await ctx.tick()
            await ctx.tick().until(dut.request.valid)
            request = dut.request.payload
            fields = {"status": ctx.get(request.status), "command": ctx.get(request.command),
                      "seq": ctx.get(request.seq), "length": ctx.get(request.length),
                      "args": [ctx.get(request.args[k]) for k in range(ARG_BYTES)]}
            staged = bytearray()
            if fields["status"] == Status.OK:
                for k in range(fields["length"]):
                    ctx.set(dut.staging.addr, k)
                    await ctx.tick().repeat(STAGING_LATENCY)
                    staged.append(ctx.get(dut.staging.data))
            got.append((fields, bytes(staged)))
            await stream_get(ctx, dut.request)

    run_sim(dut, producer, consumer, deadline=1e-6 * (50 * len(stream_bytes) + 50 * count
                                                       + 4 * timeout_cycles + 1000))
    return got


def test_decoder_good_frames_with_stalls():
    frames = [(Command.WRITE, 3, write_payload(1, 0x01020304, bytes(range(20)))),
              (Command.STATUS, 4, b""),
              (Command.READ, 250, read_payload(2, 7, 9)),
              (0x42, 0, bytes(range(MAX_PAYLOAD)))]
    stream_bytes = b"".join(encode_request(*frame) for frame in frames)
    got = decode(stream_bytes, len(frames))
    for (command, seq, payload), (fields, staged) in zip(frames, got):
        assert fields == request_dict(Status.OK, command, seq, payload)
        assert staged == payload


def test_decoder_skips_garbage_and_reports_bad_crc():
    good = encode_request(Command.RUN, 8)
    bad = bytearray(encode_request(Command.CONFIGURE, 9, configure_payload(1, 5)))
    bad[-2] ^= 0x10
    got = decode(b"\x00\x5a\xff" + bytes(bad) + b"\x13" + good, 2)
    assert [fields["status"] for fields, _ in got] == [Status.BAD_CRC, Status.OK]
    assert got[0][0]["seq"] == 9 and got[1][0]["seq"] == 8


def test_decoder_rejects_an_oversized_length_before_the_payload():
    header = bytes([0xA5, Command.WRITE, 6]) + struct.pack("<H", MAX_PAYLOAD + 1)
    # Only the header: the BAD_LENGTH request comes without the payload; what follows is
    # garbage up to the next start byte.
    got = decode(header, 1, idle_prob=0, backpressure_prob=0)
    assert got[0][0]["status"] == Status.BAD_LENGTH and got[0][0]["seq"] == 6
    got = decode(header + bytes(range(0x10, 0x30)) + encode_request(Command.INFO, 7), 2)
    assert [(f["status"], f["seq"]) for f, _ in got] == [(Status.BAD_LENGTH, 6), (Status.OK, 7)]


def test_decoder_times_out_a_frame_cut_off():
    dut = FrameDecoder(max_payload=MAX_PAYLOAD, timeout_cycles=40)

    async def testbench(ctx):
        for frame_bytes, seq in [(b"\xa5\x05", 0), (b"\xa5\x05\x11\x00", 0x11)]:
            await stream_put_all(ctx, dut.rx, list(frame_bytes))
            for _ in range(39):                  # not before timeout_cycles quiet cycles ...
                await ctx.tick()
                assert not ctx.get(dut.request.valid)
            request = await stream_get(ctx, dut.request)          # ... but then
            assert (request["status"], request["seq"]) == (Status.TIMEOUT, seq)
        # While the line is not quiet (a byte coming in), the timer waits.
        await stream_put_all(ctx, dut.rx, [0xA5])
        ctx.set(dut.quiet, 0)
        for _ in range(200):
            await ctx.tick()
            assert not ctx.get(dut.request.valid)
        ctx.set(dut.quiet, 1)
        await stream_put_all(ctx, dut.rx, list(encode_request(Command.STATUS, 3)[1:]))
        request = await stream_get(ctx, dut.request)
        assert (request["status"], request["seq"]) == (Status.OK, 3)

    run_sim(dut, testbench, deadline=1e-3)


@pytest.mark.parametrize("divisor", [4, 5, 17])
def test_decoder_timeout_counts_quiet_line_time_behind_a_uart(divisor):
    """With the UART receiver's `quiet`: a gap of timeout_bits bit times between two bytes
    never times out, one of timeout_bits + 1 always does (docs/protocol.md)."""
    bits = 16

    def times_out(gap_cycles):
        m = Module()
        m.submodules.uart = uart = UARTReceiver(divisor=divisor)
        m.submodules.decoder = decoder = FrameDecoder(max_payload=MAX_PAYLOAD,
                                                      timeout_cycles=bits * divisor)
        m.d.comb += decoder.quiet.eq(uart.quiet)
        wiring.connect(m, uart.o, decoder.rx)
        seen = []

        async def testbench(ctx):
            ctx.set(uart.rx, 1)
            await ctx.tick().repeat(5)
            for k, byte in enumerate(b"\xa5\x05\x09"):
                for bit in [0] + [(byte >> i) & 1 for i in range(8)] + [1]:
                    ctx.set(uart.rx, bit)
                    await ctx.tick().repeat(divisor)
                if k == 1:
                    await ctx.tick().repeat(gap_cycles)
            await ctx.tick().repeat(2 * divisor)
            seen.append(ctx.get(decoder.request.valid))

        run_sim(m, testbench)
        return seen[0]

    assert not times_out(bits * divisor)
    assert times_out((bits + 1) * divisor)


# -- CommandExecutor -------------------------------------------------------------------------

PARAMS = MacArrayParams(rows=1, cols=3, precisions=(8,))   # weight: 3-byte words, 4 apart
OPTIONS = dict(operand_depth=8, result_depth=4)


def mac_buffers():
    record = registry.get("mac")
    return record.buffers(PARAMS, **record.resolve_options(OPTIONS)), record.registers(PARAMS)


class ExecutorHarness:
    """A CommandExecutor with its staging RAM; runs requests (frames) and records what it did."""

    def __init__(self, info_length=300):
        self.buffers, self.register_map = mac_buffers()
        self.dut = CommandExecutor(buffers=self.buffers, registers=len(self.register_map),
                                   max_payload=MAX_PAYLOAD, info_length=info_length)
        m = Module()
        m.submodules.executor = self.dut
        m.submodules.staging = self.staging = Memory(shape=8, depth=MAX_PAYLOAD, init=[])
        read = self.staging.read_port(transparent_for=())
        # The decoder's staging RAM gives its byte STAGING_LATENCY cycles after the address:
        # the read port's cycle, then the block's output register.
        staged = read.data
        for stage in range(STAGING_LATENCY - 1):
            staged, before = Signal(8, name=f"staged{stage}"), staged
            m.d.sync += staged.eq(before)
        m.d.comb += [read.addr.eq(self.dut.staging.addr), self.dut.staging.data.eq(staged)]
        self.top = m

    def run(self, requests, *, busy=False, status=0, overrun_before=()):
        """`requests`: (request dict, staged payload). Returns (replies, writes, starts,
        registers): the reply descriptors, the buffer writes (select, word, mask, wdata
        byte), the cycles `start` pulsed, and the registers at the end."""
        dut = self.dut
        replies, writes, starts = [], [], []
        registers = []

        async def driver(ctx):
            ctx.set(dut.busy, busy)
            ctx.set(dut.status, status)
            rng = random.Random(3)
            for n, (request, staged) in enumerate(requests):
                if n in overrun_before:
                    ctx.set(dut.overrun, 1)
                    await ctx.tick()
                    ctx.set(dut.overrun, 0)
                for k, byte in enumerate(staged):
                    ctx.set(self.staging.data[k], byte)
                await stream_put(ctx, dut.request, request)
                for _ in range(rng.randrange(3)):
                    await ctx.tick()

        async def monitor(ctx):
            rng = random.Random(4)
            while len(replies) < len(requests):
                # The reply stays valid until taken; nothing else may move meanwhile
                # (`start`, registered, pulses in the reply's first cycle).
                if ctx.get(dut.reply.valid) and rng.random() < 0.5:
                    *_, start = await ctx.tick().sample(dut.start)
                    if start:
                        starts.append(len(replies))
                    continue
                ctx.set(dut.reply.ready, 1)
                _, _, valid, payload, write, select, addr, mask, wdata, start = \
                    await ctx.tick().sample(dut.reply.valid, dut.reply.payload, dut.mem.write,
                                            dut.mem.select, dut.mem.addr, dut.mem.mask,
                                            dut.mem.wdata, dut.start)
                ctx.set(dut.reply.ready, 0)
                if write and mask:
                    writes.append((select, addr, mask, wdata & 0xFF))
                if start:
                    starts.append(len(replies))
                if valid:
                    replies.append({"status": payload.status, "seq": payload.seq,
                                    "length": payload.length, "source": payload.source,
                                    "buffer": payload.buffer, "offset": payload.offset,
                                    "snapshot": payload.snapshot})
            registers.extend(ctx.get(dut.registers[k]) for k in range(len(self.register_map)))

        run_sim(self.top, driver, monitor, deadline=1e-6 * 200 * (len(requests) + 10))
        return replies, writes, starts, registers


def frame_request(command, seq, payload=b""):
    return request_dict(Status.OK, command, seq, payload), bytes(payload)


CASES = [
    ("write", Command.WRITE, write_payload(1, 5, b"\x11\x22\x33\x44")),
    ("write to result", Command.WRITE, write_payload(2, 0, b"\x01")),
    ("write beyond", Command.WRITE, write_payload(1, 8 * 4 - 2, b"\x01\x02\x03")),
    ("write unknown buffer", Command.WRITE, write_payload(3, 0, b"\x01")),
    ("write no data", Command.WRITE, write_payload(0, 0, b"")),
    ("read", Command.READ, read_payload(2, 3, 9)),
    ("read count 0", Command.READ, read_payload(0, 0, 0)),
    ("read too many", Command.READ, read_payload(0, 0, MAX_PAYLOAD + 1)),
    ("read beyond", Command.READ, read_payload(0, 30, 3)),
    ("read short", Command.READ, read_payload(0, 0, 1)[:6]),
    ("configure", Command.CONFIGURE, configure_payload(4, 0x12345678)),
    ("configure unknown", Command.CONFIGURE, configure_payload(5, 1)),
    ("configure long", Command.CONFIGURE, configure_payload(1, 1) + b"\x00"),
    ("run", Command.RUN, b""),
    ("run with payload", Command.RUN, b"\x00"),
    ("status", Command.STATUS, b""),
    ("info", Command.INFO, b""),
    ("unknown", 0x42, b""),
]


def test_executor_decides_as_the_golden_model():
    golden = shell_model("mac", PARAMS, max_payload=MAX_PAYLOAD, **OPTIONS)
    harness = ExecutorHarness(info_length=len(golden.info_bytes()))
    requests = [frame_request(command, seq, payload)
                for seq, (_, command, payload) in enumerate(CASES)]
    replies, writes, starts, registers = harness.run(requests)
    for seq, ((what, command, payload), reply) in enumerate(zip(CASES, replies)):
        want = golden.feed(encode_request(command, seq, payload))
        assert (reply["status"], reply["seq"]) == (want[1], seq), what
        assert reply["length"] == struct.unpack_from("<H", want, 3)[0], what
    read = replies[5]
    assert (read["source"], read["buffer"], read["offset"]) == (Source.BUFFER, 2, 3)
    assert replies[15]["source"] == Source.STATUS and replies[16]["source"] == Source.INFO
    # WRITE of 4 bytes at byte 5: word 1 lanes 1, 2; word 2 lane 0 (lane 3 is padding).
    assert writes == [(1, 1, 0b010, 0x11), (1, 1, 0b100, 0x22), (1, 2, 0b001, 0x44)]
    assert starts == [13]
    assert registers[4] == 0x12345678


def test_executor_answers_error_requests_and_busy():
    harness = ExecutorHarness()
    requests = [(request_dict(status, 0, seq), b"") for seq, status in
                enumerate([Status.BAD_CRC, Status.TIMEOUT, Status.BAD_LENGTH])]
    requests += [frame_request(command, 10 + n, payload) for n, (command, payload) in enumerate(
        [(Command.WRITE, write_payload(0, 0, b"\x01")), (Command.READ, read_payload(0, 0, 1)),
         (Command.CONFIGURE, configure_payload(0, 1)), (Command.RUN, b""),
         (Command.STATUS, b""), (Command.INFO, b"")])]
    replies, writes, starts, _ = harness.run(requests, busy=True, status=StatusFlags.BUSY)
    assert [(r["status"], r["seq"], r["length"]) for r in replies] == [
        (Status.BAD_CRC, 0, 0), (Status.TIMEOUT, 1, 0), (Status.BAD_LENGTH, 2, 0),
        (Status.BUSY, 10, 0), (Status.BUSY, 11, 0), (Status.BUSY, 12, 0), (Status.BUSY, 13, 0),
        (Status.OK, 14, STATUS_BYTES), (Status.OK, 15, 300)]
    assert writes == [] and starts == []
    assert replies[7]["snapshot"] == StatusFlags.BUSY


def test_executor_reports_an_overrun_once_in_status():
    harness = ExecutorHarness()
    status = [frame_request(Command.STATUS, seq) for seq in range(3)]
    replies, _, _, _ = harness.run(status, status=0x0102, overrun_before=(1,))
    assert [r["snapshot"] for r in replies] == [0x0102, 0x0102 | StatusFlags.OVERRUN, 0x0102]


# -- ReplyEncoder ----------------------------------------------------------------------------

ENCODER_BUFFERS = [BufferSpec("a", width=24, depth=4, writable=True),      # 3 bytes, stride 4
                   BufferSpec("b", width=8, depth=16, writable=False)]
WORDS = [[0x030201, 0x060504, 0x090807, 0x0C0B0A], list(range(0x40, 0x50))]
INFO = bytes(range(33, 33 + 50))


def buffer_bytes(select, offset, count):
    spec = ENCODER_BUFFERS[select]
    out = bytearray()
    for address in range(offset, offset + count):
        index, lane = divmod(address, spec.word_stride)
        out.append((WORDS[select][index] >> 8 * lane) & 0xFF if lane < spec.word_bytes else 0)
    return bytes(out)


def test_encoder_sends_every_kind_of_reply_with_backpressure():
    dut = ReplyEncoder(buffers=ENCODER_BUFFERS, info=INFO)
    snapshot = bytes([3, 1, 0x78, 0x56, 0x34, 0x12, 9, 0])
    descriptors = [
        ({"status": Status.BAD_CRC, "seq": 7, "length": 0, "source": Source.NONE},
         encode_reply(Status.BAD_CRC, 7)),
        ({"status": Status.OK, "seq": 8, "length": 9, "source": Source.BUFFER, "buffer": 0,
          "offset": 2}, encode_reply(Status.OK, 8, buffer_bytes(0, 2, 9))),
        ({"status": Status.OK, "seq": 9, "length": 5, "source": Source.BUFFER, "buffer": 1,
          "offset": 11}, encode_reply(Status.OK, 9, buffer_bytes(1, 11, 5))),
        ({"status": Status.OK, "seq": 10, "length": STATUS_BYTES, "source": Source.STATUS,
          "snapshot": int.from_bytes(snapshot, "little")}, encode_reply(Status.OK, 10, snapshot)),
        ({"status": Status.OK, "seq": 11, "length": len(INFO), "source": Source.INFO},
         encode_reply(Status.OK, 11, INFO)),
    ]
    expected = b"".join(frame for _, frame in descriptors)
    assert encode_reply(Status.OK, 8, b"")[-2:] == crc16(b"\x00\x08\x00\x00").to_bytes(2, "little")
    taken = []

    async def producer(ctx):
        for fields, frame in descriptors:
            beat = {"status": 0, "seq": 0, "length": 0, "source": Source.NONE, "buffer": 0,
                    "offset": 0, "snapshot": 0, **fields}
            await stream_put(ctx, dut.reply, beat)
            taken.append(len(frame))

    async def memory(ctx):
        # The shell's read: byte `lane` of the word at `addr`, READ_LATENCY cycles later
        # (a synchronous block RAM read, then the shell's stages beside the buffer).
        pending = [0] * (READ_LATENCY - 1)
        while True:
            _, _, select, addr, lane = await ctx.tick().sample(dut.mem.select, dut.mem.addr,
                                                               dut.mem.lane)
            ctx.set(dut.mem.rdata, pending.pop(0))
            words = WORDS[select]
            pending.append(((words[addr] if addr < len(words) else 0) >> (8 * lane)) & 0xFF)

    got = []

    async def consumer(ctx):
        got.extend(await stream_get_n(ctx, dut.tx, len(expected), rng=random.Random(5),
                                      backpressure_prob=0.4))

    run_sim(dut, producer, consumer, processes=[memory], deadline=1e-3)
    assert bytes(got) == expected
    assert len(taken) == len(descriptors)


def test_encoder_takes_the_descriptor_after_the_last_byte():
    dut = ReplyEncoder(buffers=ENCODER_BUFFERS, info=INFO)
    frame = encode_reply(Status.OK, 1, INFO[:3])

    async def testbench(ctx):
        ctx.set(dut.reply.payload, {"status": 0, "seq": 1, "length": 3, "source": Source.INFO,
                                    "buffer": 0, "offset": 0, "snapshot": 0})
        ctx.set(dut.reply.valid, 1)
        ctx.set(dut.tx.ready, 1)
        sent = bytearray()
        while True:
            _, _, valid, byte, taken = await ctx.tick().sample(dut.tx.valid, dut.tx.payload,
                                                              dut.reply.ready)
            if valid:
                sent.append(byte)
            if taken:
                break
        assert bytes(sent) == frame

    run_sim(dut, testbench, deadline=1e-3)
