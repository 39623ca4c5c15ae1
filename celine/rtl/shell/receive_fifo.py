"""The shell's receive FIFO: a request's bytes in a block RAM read through its output register."""

from amaranth.hdl import Module, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ...spec.checks import check_int
from ...spec.fields import READER_LATENCY
from ..common.buffer_reader import BufferReader
from .block_ram import BlockRAM

__all__ = ["ReceiveFIFO"]

# The reader's prefetch queue: words read ahead of `o` (BufferReader).
_QUEUE_DEPTH = 4


class ReceiveFIFO(wiring.Component):
    """`depth` bytes between two streams, in one block RAM whose words leave through the
    block's own output register (BlockRAM `output_register`): amaranth.lib.fifo's
    SyncFIFOBuffered gives its byte straight from the block's array, 5.8 ns after the
    clock, and that was a build's worst path into the skid buffer after it.

    - ``i``: bytes in; ``i.ready`` while fewer than `depth` bytes are held (counting those
      read ahead into the reader's queue).
    - ``o``: the bytes in order, from the BufferReader's queue (registered).

    A byte taken on ``i`` is written at once and requested by the reader from the next
    cycle on (a read never meets the write of its own word); it is offered on ``o``
    READER_LATENCY cycles after the request is taken. With ``o`` always ready, three
    bytes leave every five cycles (the reader's queue of _QUEUE_DEPTH words), far more
    than a UART brings (a byte every ten bit times). None is lost or duplicated under any
    valid/ready pattern.
    """

    latency = READER_LATENCY + 1     # a byte taken on `i` into an empty FIFO -> on `o`

    def __init__(self, depth):
        check_int("depth", depth, minimum=1)
        self.depth = depth
        super().__init__({"i": In(stream.Signature(8)), "o": Out(stream.Signature(8))})

    def elaborate(self, platform):
        m = Module()
        depth = self.depth
        m.submodules.memory = memory = BlockRAM(8, depth, output_register=True)
        m.submodules.reader = reader = BufferReader(
            data.StructLayout({"data": 8}), buffer_depth=depth, queue_depth=_QUEUE_DEPTH,
            read_latency=memory.read_latency)

        write_at = Signal(range(depth))       # where the next byte goes
        read_at = Signal(range(depth))        # the next byte to request
        unread = Signal(range(depth + 1))     # written, not yet requested
        held = Signal(range(depth + 1))       # written, not yet left on `o`
        # `unread != 0` and `held == depth` as registers that follow the counts' steps:
        # the compares after the counters were a build's worst path (unread -> != 0 ->
        # the reader's request -> the counter's adder, 8.2 ns). Each flag's next value
        # is decided from compares of the registered count against constants, beside
        # the request/write, never after an adder.
        some_unread = Signal()
        full = Signal()
        write = self.i.valid & self.i.ready
        request = reader.req.valid & reader.req.ready
        leave = self.o.valid & self.o.ready

        m.d.comb += [
            self.i.ready.eq(~full),
            memory.waddr.eq(write_at), memory.wdata.eq(self.i.payload), memory.wen.eq(write),
            memory.raddr.eq(reader.mem.buffer.addr),
            reader.mem.buffer.data.eq(memory.data),
            reader.req.valid.eq(some_unread),
            reader.req.payload.addr.eq(read_at),
            self.o.valid.eq(reader.o.valid), self.o.payload.eq(reader.o.payload.data),
            reader.o.ready.eq(self.o.ready),
        ]
        for pointer, step in ((write_at, write), (read_at, request)):
            with m.If(step):
                m.d.sync += pointer.eq(pointer + 1)
                with m.If(pointer == depth - 1):
                    m.d.sync += pointer.eq(0)
        m.d.sync += [unread.eq(unread + write - request), held.eq(held + write - leave)]
        # A request only when one is unread: with it and no write, one stays unread iff
        # two were; a write always leaves one.
        with m.If(write):
            m.d.sync += some_unread.eq(1)
        with m.Elif(request):
            m.d.sync += some_unread.eq(unread >= 2)
        # A write only when not full: it fills the FIFO iff depth - 1 were held and none
        # leaves; a byte leaving without a write always makes room.
        with m.If(write & ~leave):
            m.d.sync += full.eq(held == depth - 1)
        with m.Elif(leave & ~write):
            m.d.sync += full.eq(0)
        return m
