"""The device side of the host protocol (docs/protocol.md): frames in, commands, replies out."""

from amaranth.hdl import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ...spec.checks import check_int
from ...spec.fields import BufferSpec
from ...spec.protocol import FRAME_OVERHEAD, STATUS_BYTES
from .command_executor import CommandExecutor
from .frame_decoder import FrameDecoder
from .link_streams import memory_port_signature
from .reply_encoder import ReplyEncoder

__all__ = ["HostLink", "memory_port_signature"]


class HostLink(wiring.Component):
    """Parses request frames from `rx`, executes them, and sends reply frames on `tx`.

    Three parts joined by streams (celine.rtl.shell.link_streams): a FrameDecoder (bytes
    to checked requests, the payload staged in a block RAM of `max_payload` bytes, CRC,
    inter-byte timeout after `timeout_cycles` of quiet line, oversized lengths), a
    CommandExecutor (checks, WRITE, CONFIGURE, RUN, STATUS; one request at a time) and a
    ReplyEncoder (reply frames with their payload from a buffer, STATUS or INFO).

    A request is checked completely (CRC, command, length, address, busy; in that order)
    before anything changes, so a bad frame never touches a buffer or a register; a frame
    cut off is answered with TIMEOUT, an oversized length at once with BAD_LENGTH, and the
    link then waits for the next start byte. The decoder takes the next frame while a
    reply goes out.

    Buffers are reached through `mem` (the executor's writes, the encoder's reads).
    `registers` hold CONFIGURE values; `start` pulses on RUN; `busy` (the engine runs)
    makes WRITE, READ, CONFIGURE and RUN answer BUSY. `status` is the STATUS payload,
    `info` the bytes of the INFO reply. `quiet` says that no byte is on the line (the
    UART receiver's `quiet`: the timeout counts quiet line time), `overrun` that the
    receiver lost a byte (StatusFlags.OVERRUN in the next STATUS). The bytes in front of
    `rx` should be buffered for `longest_request` bytes, a request sent during a reply.
    """

    def __init__(self, *, buffers, registers, info, max_payload=1024, timeout_cycles=1024,
                 register_init=None):
        if not buffers or any(not isinstance(b, BufferSpec) for b in buffers):
            raise TypeError(f"buffers must be a non-empty list of BufferSpec, not {buffers!r}")
        check_int("registers", registers, minimum=1, maximum=256)
        check_int("max_payload", max_payload, minimum=16, maximum=65535)
        check_int("timeout_cycles", timeout_cycles, minimum=16, maximum=1 << 30)
        if not isinstance(info, bytes) or not 0 < len(info) <= 65535:
            raise ValueError(f"info must be 1 to 65535 bytes, not {info!r}")
        self.buffers = list(buffers)
        self.register_count = registers
        self.register_init = list(register_init or [0] * registers)
        if len(self.register_init) != registers:
            raise ValueError(f"register_init must have {registers} values, not {register_init!r}")
        self.info = info
        self.max_payload = max_payload
        self.timeout_cycles = timeout_cycles
        self.longest_request = max_payload + FRAME_OVERHEAD
        super().__init__({
            "rx": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
            "quiet": In(1, init=1),
            "overrun": In(1),
            "mem": Out(memory_port_signature(self.buffers)),
            "registers": Out(data.ArrayLayout(32, registers), init=self.register_init),
            "start": Out(1),
            "busy": In(1),
            "status": In(8 * STATUS_BYTES),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.decoder = decoder = FrameDecoder(
            max_payload=self.max_payload, timeout_cycles=self.timeout_cycles)
        m.submodules.executor = executor = CommandExecutor(
            buffers=self.buffers, registers=self.register_count, max_payload=self.max_payload,
            info_length=len(self.info), register_init=self.register_init)
        m.submodules.encoder = encoder = ReplyEncoder(buffers=self.buffers, info=self.info)

        wiring.connect(m, wiring.flipped(self.rx), decoder.rx)
        wiring.connect(m, decoder.request, executor.request)
        wiring.connect(m, executor.staging, decoder.staging)
        wiring.connect(m, executor.reply, encoder.reply)
        wiring.connect(m, encoder.tx, wiring.flipped(self.tx))
        m.d.comb += [
            decoder.quiet.eq(self.quiet),
            executor.overrun.eq(self.overrun),
            executor.busy.eq(self.busy),
            executor.status.eq(self.status),
            self.registers.eq(executor.registers),
            self.start.eq(executor.start),
        ]

        # The buffers: the encoder's while a reply is pending, the executor's otherwise,
        # switched by a register (`to_encoder`: the reply's valid, a cycle late), so that
        # the executor's state decode does not run into every buffer's select and the
        # read multiplexer (an executor state into the encoder's payload byte was a
        # engine build's worst path, 8.7 ns). The encoder reads from ten cycles after
        # its reply is offered (start, status, sequence and length bytes first, two
        # cycles each) and the executor writes from five cycles after the reply is taken
        # (a request's checks first), so neither sees the port a cycle late.
        to_encoder = Signal()
        m.d.sync += to_encoder.eq(executor.reply.valid)
        mem = self.mem
        m.d.comb += [
            mem.write.eq(executor.mem.write),
            mem.write_to.eq(executor.mem.write_to),
            mem.mask.eq(executor.mem.mask),
            mem.wdata.eq(executor.mem.wdata),
            mem.lane.eq(encoder.mem.lane),
            encoder.mem.rdata.eq(mem.rdata),
        ]
        with m.If(to_encoder):
            m.d.comb += [mem.select.eq(encoder.mem.select), mem.addr.eq(encoder.mem.addr)]
        with m.Else():
            m.d.comb += [mem.select.eq(executor.mem.select), mem.addr.eq(executor.mem.addr)]
        return m
