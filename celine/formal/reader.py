"""The harness of BufferReader (rtl/common/buffer_reader.py): its credit logic never lets
its queue overflow, and every word comes out once, in order, with its request's tags.

The reader takes a read request only while its queue has room for the word counting the
reads in flight (`committed`), because a word read from a block RAM cannot wait: it goes
into the queue whatever the queue's state. The harness numbers the requests it offers
(request n reads word n, modulo 2**WIDTH, and carries tag n) and models each buffer as a
block RAM of `read_latency` cycles whose word at address a is a (the first buffer) or ~a
(the second, so a word from the wrong buffer shows). With two buffers, which buffer a
request reads is a free input, kept in a tag of its own (`which`). Free inputs: `req_valid`
(`req_buffer`), `o_ready` and the reset; the requests keep the stream rule (an offer stays,
unchanged, until taken). Asserted every cycle:

- credit: the queue is never offered a word it has no room for (its `i.valid` implies its
  `i.ready`), so no word is dropped;
- order: a beat on `o` is request `taken`'s (tag and word, from the buffer it named),
  `taken` counting the beats out;
- held: a beat offered on `o` and not taken stays, unchanged;
- bounded: requests taken minus beats out (the words in the queue and in flight) is at
  most queue_depth - 1.

The invariant the induction needs (the insides, celine.formal.insides): `committed` is the
requests taken minus the beats out, `req.ready` its verdict, the reads in flight carry the
next numbers after the queue's beats (the block RAM model and the reader's word registers
hold their words), and the queue's invariant (celine.formal.queues).
"""

from amaranth.hdl import Assert, Assume, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In

from ..rtl.common.buffer_reader import BufferReader
from .insides import Insides
from .queues import queue_invariant
from .streams import WIDTH

__all__ = ["ReaderHarness"]


def _word(buffer, address):
    """The model's word at `address` of buffer number `buffer`."""
    return address if buffer == 0 else ~address


class ReaderHarness(wiring.Component):
    req_valid: In(1)
    req_buffer: In(1)        # which buffer a request reads (with two buffers)
    o_ready: In(1)

    def __init__(self, *, queue_depth, read_latency=1, buffers=1, word_register=False):
        """`buffers`: 1 or 2 read ports."""
        self._queue_depth = queue_depth
        self._read_latency = read_latency
        self._word_register = word_register
        self._names = tuple(f"buffer_{k}" for k in range(buffers))
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        two = len(self._names) > 1
        fields = {"data": WIDTH, "tag": WIDTH}
        if two:
            fields["which"] = 1
        layout = data.StructLayout(fields)
        reader = BufferReader(layout, buffer_depth=1 << WIDTH, buffers=self._names,
                              queue_depth=self._queue_depth, read_latency=self._read_latency,
                              word_register=self._word_register)
        dut = Insides(reader, platform)
        queue = dut.open("queue")              # (opened before any signal is named)
        req, o = reader.req, reader.o

        offered, taken = Signal(WIDTH), Signal(WIDTH)
        m.d.comb += [req.valid.eq(self.req_valid), req.payload.addr.eq(offered),
                     req.payload.tag.eq(offered), o.ready.eq(self.o_ready)]
        if two:
            m.d.comb += [req.payload.buffer.eq(self.req_buffer),
                         req.payload.which.eq(self.req_buffer)]
        with m.If(req.valid & req.ready):
            m.d.sync += offered.eq(offered + 1)
        with m.If(o.valid & o.ready):
            m.d.sync += taken.eq(taken + 1)

        # The block RAMs: every port gets the same address; its word `read_latency`
        # cycles later (`ram[-1]` the address it comes from).
        ram = [Signal(WIDTH, name=f"ram_{k}") for k in range(self._read_latency)]
        m.d.sync += ram[0].eq(req.payload.addr)
        for k in range(1, self._read_latency):
            m.d.sync += ram[k].eq(ram[k - 1])
        for index, name in enumerate(self._names):
            m.d.comb += getattr(reader.mem, name).data.eq(_word(index, ram[-1]))

        # The requests' stream rule.
        was_waiting, was_stalled = Signal(), Signal()
        last_buffer = Signal()
        last_o = Signal.like(o.payload)
        m.d.sync += [was_waiting.eq(req.valid & ~req.ready), last_buffer.eq(self.req_buffer),
                     was_stalled.eq(o.valid & ~o.ready), last_o.eq(o.payload)]
        with m.If(was_waiting):
            m.d.comb += [Assume(self.req_valid), Assume(self.req_buffer == last_buffer)]

        def holds(beat, n):
            """`beat` (a view of `layout`) is request n's."""
            word = _word(0, n[:WIDTH])
            if two:
                word = Mux(beat.which, _word(1, n[:WIDTH]), word)
            return (beat.tag == n[:WIDTH]) & (beat.data == word)

        # The property.
        m.d.comb += Assert(~queue.component.i.valid | queue.component.i.ready)
        with m.If(o.valid):
            m.d.comb += Assert(holds(o.payload, taken))
        with m.If(was_stalled):
            m.d.comb += Assert(o.valid & (o.payload == last_o))
        in_flight = Signal(WIDTH)
        m.d.comb += [in_flight.eq(offered - taken),
                     Assert(in_flight <= self._queue_depth - 1)]

        # The invariant: the queue's (its words are the numbers after `taken`) ...
        stages = max(2, self._read_latency + reader.word_register)
        flying = Signal(range(stages + 1))
        queue_invariant(m, queue, taken, in_flight - flying,
                        lambda word, n: holds(layout(word), n))
        # ... the credit counter's ...
        flight = [dut.signal(f"flight_{k}") for k in range(stages)]
        m.d.comb += [flying.eq(sum(flight)),
                     Assert(dut.signal("committed") == in_flight),
                     Assert(req.ready == (in_flight <= self._queue_depth - 2))]
        # ... and the reads in flight: stage k holds the next number after the queue's
        # beats and the later stages' reads, and its word is on its way (in the model's
        # registers, or in the reader's own word registers at read latency 1 or with
        # `word_register`).
        number = taken + queue.component.level
        for k in reversed(range(stages)):
            with m.If(flight[k]):
                tag = dut.signal(f"flight_{k}_tag")
                m.d.comb += Assert(tag == number[:WIDTH])
                if two:
                    m.d.comb += Assert(dut.signal(f"flight_{k}_which")
                                       == dut.signal(f"flight_{k}_buffer"))
                if k < self._read_latency:
                    m.d.comb += Assert(ram[k] == tag)
                else:
                    for index, name in enumerate(self._names):
                        m.d.comb += Assert(dut.signal(f"word_{name}") == _word(index, tag))
            number = number + flight[k]

        m.submodules.dut = dut
        return m
