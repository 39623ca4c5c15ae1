"""Shared pieces of the harnesses of credit loops: a block that puts beats into a queue that
cannot refuse them (its producer never stalls) keeps a count of the beats it has let in
and the queue has not yet given out, and lets a beat in only while that count is below
what the queue holds. The engines' harnesses of such loops (their records' `proofs`,
celine/engines/<name>/proofs.py) prove that the count never lets the queue overflow;
these are the pieces they share.

- `fifo_invariant(m, fifo, count, first=None, holds=None)`: the invariant of an
  amaranth.lib.fifo.SyncFIFOBuffered (the queue inside ShapedQueue, or one used directly)
  that holds `count` beats: its pointers and fill level (`queues.py`'s), and that its
  output register is empty only while its memory holds at most one word, so that from
  depth 3 on it takes a beat whenever it holds fewer than `depth` (`w_rdy` is
  `inner_level != depth - 1`: without this, a state the queue cannot reach, its output
  register empty and its memory full, refuses a beat the credit allows). With `holds`,
  also what every word holds (queues.py's invariant; `first` the number of the beat that
  leaves next).
- `register(insides, name, besides)`: a register of the design that shares its name with
  one of its ports (`besides`), which `Insides.signal` refuses as ambiguous.
- `stalled_beat_held(m, stream)`: asserts that a beat offered on `stream` and not taken is
  offered again, unchanged, the next cycle.
- `count(m, event, width, name)`: a counter of the cycles with `event` high (modulo 2**width).
- `CreditQueueHarness(make, capacity, invariant)`: the harness of a queue that never refuses
  a beat, fed by a writer that keeps its credit: beats in order, none lost or duplicated,
  held until taken, at most `capacity` held.
"""

from types import SimpleNamespace

from amaranth.hdl import Assert, Assume, Module, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from .insides import Insides
from .queues import pointer_invariant, queue_invariant
from .streams import WIDTH

__all__ = ["CreditQueueHarness", "count", "fifo_invariant", "register", "stalled_beat_held"]


class _Opened:
    """What queue_invariant takes for a ShapedQueue (an Insides whose submodule `fifo` is
    the SyncFIFOBuffered), made of a SyncFIFOBuffered opened already."""

    def __init__(self, fifo):
        self._fifo = fifo
        self.component = SimpleNamespace(level=fifo.component.level)

    def open(self, name):
        return self._fifo


def fifo_invariant(m, fifo, count, first=None, holds=None):
    """Assert the invariant of the SyncFIFOBuffered `fifo` (an Insides, opened before any
    signal of the design is named) holding `count` beats; with `holds(word, n)` (1 when
    `word` is beat n) and `first`, what its output register and its memory's words hold."""
    component = fifo.component
    if holds is not None:
        queue_invariant(m, _Opened(fifo), first, count, holds)    # pointers included
    else:
        m.d.comb += Assert(component.level == count)
        if component.depth > 1:
            pointer_invariant(m, fifo, count)
    if component.depth == 1:
        return
    level = fifo.signal("inner_level")
    # The output register is refilled from the memory the cycle after it empties, so it
    # is empty only while the memory holds at most one word (the one just written).
    with m.If(~component.r_rdy):
        m.d.comb += Assert(level <= 1)


def register(insides, name, besides):
    """The one signal called `name` used by the statements of `insides` (an Insides,
    elaborated: after any `open`) other than the signals of `besides` (its ports that are
    called `name` too)."""
    try:
        return insides.signal(name)
    except LookupError:
        pass
    found = [s for s in insides._signals.get(name, {}).values()
             if not any(s is other for other in besides)]
    if len(found) != 1:
        raise LookupError(f"{len(found)} signals named {name!r} in {insides.component!r} "
                          f"besides {besides!r}")
    return found[0]


def stalled_beat_held(m, stream):
    """Assert that a beat offered on `stream` (valid, payload, ready) and not taken is
    offered again, unchanged, the next cycle (a reset aside: it clears the record)."""
    offered = Value.cast(stream.payload)
    stalled = Signal(name="was_stalled")
    payload = Signal(len(offered), name="last_payload")
    m.d.sync += [stalled.eq(stream.valid & ~stream.ready), payload.eq(offered)]
    with m.If(stalled):
        m.d.comb += Assert(stream.valid & (offered == payload))


def count(m, event, width, name):
    """A register counting the cycles with `event` high, modulo 2**width."""
    counter = Signal(width, name=name)
    with m.If(event):
        m.d.sync += counter.eq(counter + 1)
    return counter


class CreditQueueHarness(wiring.Component):
    """The harness of a queue that never refuses a beat (its input has no `ready`): its
    writer keeps count of the beats it has sent and the queue has not given out, and
    never lets that count pass `capacity` (after the cycle: a beat may arrive while the
    queue is full if one leaves in the same cycle). Built like streams.StreamHarness:
    the beats are numbered (beat n carries n modulo 2**WIDTH), free inputs `i_valid`,
    `o_ready` and the reset, the writer's credit an Assume; asserted every cycle: order
    (a beat offered on `o` is the next one), held (a stalled beat stays, unchanged) and
    bounded (beats in minus beats out at most `capacity`). `make()` makes the queue
    (stream ports `i` without ready and `o`); `invariant(m, dut, taken, held)` as for
    StreamHarness."""
    i_valid: In(1)
    o_ready: In(1)

    def __init__(self, make, capacity, invariant=None):
        self._make, self._capacity, self._invariant = make, capacity, invariant
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        dut = self._make()
        insides = Insides(dut, platform) if self._invariant else dut
        o = dut.o
        taken_now = o.valid & o.ready
        offered = count(m, self.i_valid, WIDTH, "offered")
        taken = count(m, taken_now, WIDTH, "taken")
        m.d.comb += [dut.i.valid.eq(self.i_valid), dut.i.payload.eq(offered),
                     o.ready.eq(self.o_ready)]
        in_flight = Signal(WIDTH)
        m.d.comb += in_flight.eq(offered - taken)
        # The writer's credit: at most `capacity` beats held after this cycle.
        with m.If(self.i_valid):
            m.d.comb += Assume(in_flight + 1 <= self._capacity + taken_now)

        with m.If(o.valid):
            m.d.comb += Assert(o.payload == taken)
        stalled_beat_held(m, o)
        m.d.comb += Assert(in_flight <= self._capacity)
        if self._invariant:
            self._invariant(m, insides, taken, in_flight)
        m.submodules.dut = insides
        return m
