"""A stream FIFO whose payload has a shape (a data layout), so nobody packs words by hand."""

from amaranth.hdl import Module, Mux, Shape, ShapeLike, Signal, Value
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ...spec.checks import check_int
from ..shell.block_ram import MIN_BLOCK_DEPTH, BlockRAM
from .skid import SkidBuffer

__all__ = ["ShapedQueue"]


def _rejected(component):
    """Silence Amaranth's "created but never elaborated" warning for a rejected object."""
    component._MustUse__silence = True


class ShapedQueue(wiring.Component):
    """`depth` beats of `layout` between two streams, with stream interfaces.

    - ``i``: the input stream; ``i.ready`` is high while the queue has room.
    - ``o``: the output stream; ``o.valid`` and ``o.payload`` come from registers.
    - ``level``: beats held (including the one offered on ``o``; in a block-RAM queue,
      below, not the one in its output's skid entry).

    Below MIN_BLOCK_DEPTH beats (memories yosys may build of LUT RAM) it is
    amaranth.lib.fifo.SyncFIFOBuffered: a beat taken in an empty queue is offered on
    ``o`` two cycles later; one beat per cycle in and out from depth 3 on; at depth 1 and
    2 one beat every other cycle once the queue has filled (SyncFIFOBuffered's inner
    memory then holds one entry).

    From MIN_BLOCK_DEPTH on the beats are kept in block RAM (BlockRAM) read through the
    block's output register into a few registers, and ``o`` offers from them through a
    skid entry whose ready is a register (see `_elaborate_block`; ``o.valid`` and
    ``o.payload`` are registers picked by a register, and ``o.ready`` reaches the skid
    entry alone): SyncFIFOBuffered's output register is the block's read port, whose
    array output (5.8 ns after the clock) was an engine build's slow path into the
    consumer's register. A beat taken in an empty queue is offered BLOCK_LATENCY = 4
    cycles later; one beat per cycle in and out. It takes a beat whenever its level is
    below `depth`, as the small queue does; the skid entry holds one beat more while the
    consumer stalls (depth + 1 in all).

    Beats leave in order; none is lost or duplicated under any valid/ready pattern.

    Parameters
    ----------
    layout : data layout or shape
        Shape of a beat (a StructLayout, an ArrayLayout, or a plain shape).
    depth : int
        Beats the queue holds (at least 1).
    """

    def __init__(self, layout, depth):
        try:
            if not isinstance(layout, (data.Layout, ShapeLike)):
                raise TypeError(f"layout must be a data layout or shape, not {layout!r}")
            check_int("depth", depth, minimum=1)
        except Exception:
            _rejected(self)
            raise
        self._layout = layout
        self._depth = depth
        super().__init__({
            "i": In(stream.Signature(layout)),
            "o": Out(stream.Signature(layout)),
            "level": Out(range(depth + 1)),
        })

    @property
    def layout(self):
        return self._layout

    @property
    def depth(self):
        return self._depth

    # Cycles from a beat taken in an empty block-RAM queue to its offer on `o`.
    BLOCK_LATENCY = 4

    def elaborate(self, platform):
        m = Module()
        width = Shape.cast(self._layout).width
        if self._depth >= MIN_BLOCK_DEPTH:
            self._elaborate_block(m, width)
            return m
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=width, depth=self._depth)
        m.d.comb += [
            fifo.w_en.eq(self.i.valid),
            fifo.w_data.eq(self.i.payload),
            self.i.ready.eq(fifo.w_rdy),
            self.o.valid.eq(fifo.r_rdy),
            self.o.payload.eq(fifo.r_data),
            fifo.r_en.eq(self.o.ready),
            self.level.eq(fifo.level),
        ]
        return m

    def _elaborate_block(self, m, width):
        """The block-RAM queue: beats written into the memory, read from it on credit into
        `slots` registers (a shift queue whose first beat goes to `o` through a skid entry
        with a pass-through output), so that nothing reads a block's array output but its
        own output register.

        A read is issued while the memory holds a beat not yet read (`stored_some`) and a
        slot is free for it (`credit_some`: the slots less the beats offered or in
        flight); it reaches the slots the block's read latency later, when it has a free
        one by the credit. A beat offered and taken returns its credit the next cycle, so
        a beat a cycle needs the read latency + 2 slots. Every flag that a decision
        reads is a register set from its count's step (no adder before a decision)."""
        depth = self._depth
        ram = BlockRAM.for_bits(width, depth, output_register=True)
        m.submodules.memory = ram
        slots = ram.read_latency + 2
        if ram.read_latency + 2 != self.BLOCK_LATENCY:
            raise RuntimeError(f"the block RAM reads in {ram.read_latency} cycles, "
                               f"BLOCK_LATENCY expects {self.BLOCK_LATENCY - 2}")

        def step(count, flag, up, down):
            """count += up - down; `flag` follows `count != 0`."""
            m.d.sync += [count.eq(Mux(up & ~down, count + 1, Mux(down & ~up, count - 1, count))),
                         flag.eq(Mux(up & ~down, 1, Mux(down & ~up, count != 1, flag)))]

        # `o` through a skid entry whose `i.ready` is a register (SkidBuffer with a
        # pass-through output): the consumer's `ready` reaches that entry alone, not the
        # queue's counts and slots (into them it was an engine build's worst path, 8.4 ns:
        # the block RAM pulls the queue's logic across the die, away from the consumer).
        m.submodules.skid = skid = SkidBuffer(width, registered_output=False)
        m.d.comb += [self.o.valid.eq(skid.o.valid), self.o.payload.eq(skid.o.payload),
                     skid.o.ready.eq(self.o.ready)]
        out = skid.i

        # The level (the beats not yet in the skid entry: counted by `given`, whose ready is
        # the skid entry's register, not the consumer's) and the input's room. A beat is
        # taken whenever the level is below `depth`, so with the skid entry full the queue
        # holds depth + 1 beats.
        level = Signal(range(depth + 1))
        full = Signal()
        taken_in = self.i.valid & ~full
        given = out.valid & out.ready               # a beat leaves the slots
        m.d.comb += [self.i.ready.eq(~full), self.level.eq(level)]
        m.d.sync += [level.eq(Mux(taken_in & ~given, level + 1,
                                  Mux(given & ~taken_in, level - 1, level))),
                     full.eq(Mux(taken_in & ~given, level == depth - 1,
                                 Mux(given & ~taken_in, 0, full)))]

        # The memory: written at `produce`, read at `consume` (each read issued is the
        # beat at `consume`; a read not issued is ignored, so reading the word being
        # written is harmless).
        produce = Signal(range(depth))
        consume = Signal(range(depth))
        stored = Signal(range(depth + 1))          # beats in the memory not yet read
        stored_some = Signal()
        credits = Signal(range(slots + 1), init=slots)
        credit_some = Signal(init=1)
        issue = stored_some & credit_some
        ram.write_word(m, produce, Value.cast(self.i.payload), taken_in)
        m.d.comb += ram.raddr.eq(consume)
        with m.If(taken_in):
            m.d.sync += produce.eq(Mux(produce == depth - 1, 0, produce + 1))
        with m.If(issue):
            m.d.sync += consume.eq(Mux(consume == depth - 1, 0, consume + 1))
        step(stored, stored_some, taken_in, issue)
        step(credits, credit_some, given, issue)

        # The slots: a shift queue, `filled` a thermometer code (slot k holds a beat iff
        # bit k is set); the first slot is offered. A read arrives `read_latency` cycles
        # after its issue and goes to the first free slot (after the shift, if a beat
        # leaves in the same cycle).
        arrived = Signal()
        arriving = issue
        for stage in range(ram.read_latency):
            later = Signal(name=f"in_flight_{stage + 1}")
            m.d.sync += later.eq(arriving)
            arriving = later
        m.d.comb += arrived.eq(arriving)
        word = ram.data[:width]
        filled = Signal(slots)
        held = [Signal(width, name=f"slot_{k}") for k in range(slots)]
        m.d.comb += [out.valid.eq(filled[0]), out.payload.eq(held[0])]
        with m.If(given & ~arrived):
            m.d.sync += filled.eq(filled >> 1)
        with m.Elif(arrived & ~given):
            m.d.sync += filled.eq((filled << 1) | 1)
        for k in range(slots):
            last = filled[k] & ~(filled[k + 1] if k + 1 < slots else 0)
            first_free = ~filled[k] & (filled[k - 1] if k else 1)
            after = held[k + 1] if k + 1 < slots else word
            with m.If(given):
                # shifted: slot k takes slot k+1's beat, or the arriving one if it was the
                # last filled
                m.d.sync += held[k].eq(Mux(arrived & last, word, after))
            with m.Elif(arrived & first_free):
                m.d.sync += held[k].eq(word)
