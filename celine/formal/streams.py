"""Harnesses of the stream blocks: beats neither dropped nor duplicated, in order, held
until taken, and never more in flight than the block holds.

`StreamHarness(make, capacity)` wraps a component with stream ports `i` and `o` (made by
`make()`): the harness numbers the beats it offers on `i` (the payload of beat n is n,
modulo 2**WIDTH) and counts the beats taken on `o`. Free inputs: `i_valid`, `o_ready` and
the reset. The environment keeps the stream rules on `i`: a beat offered stays offered,
unchanged, until taken (an Assume). Asserted every cycle:

- order: whenever `o.valid`, `o.payload` is the number of beats taken so far, so no beat is
  lost, duplicated or reordered (the block never looks at the payload, so numbered beats
  stand for any data);
- held: a beat offered on `o` and not taken stays offered, unchanged, the next cycle;
- bounded: beats in minus beats out is at most `capacity`.

`invariant(m, dut, taken, held)`, if given, asserts more about the block's insides (`dut` is
an Insides of it, celine.formal.insides; `taken` the beats out so far, `held` the beats in
minus the beats out): what a block that keeps beats for any number of cycles holds, which
the induction needs (celine.formal.queues).
"""

from amaranth.hdl import Assert, Assume, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from .insides import Insides

__all__ = ["StreamHarness", "WIDTH"]

WIDTH = 6       # bits of a beat's number: more than any capacity proved here


class StreamHarness(wiring.Component):
    i_valid: In(1)
    o_ready: In(1)

    def __init__(self, make, capacity, invariant=None):
        self._make, self._capacity, self._invariant = make, capacity, invariant
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        dut = self._make()
        insides = Insides(dut, platform) if self._invariant else dut
        offered, taken = Signal(WIDTH), Signal(WIDTH)
        m.d.comb += [dut.i.valid.eq(self.i_valid), dut.i.payload.eq(offered),
                     dut.o.ready.eq(self.o_ready)]
        with m.If(dut.i.valid & dut.i.ready):
            m.d.sync += offered.eq(offered + 1)
        with m.If(dut.o.valid & dut.o.ready):
            m.d.sync += taken.eq(taken + 1)

        # The input's stream rule: an offer is withdrawn only by taking it (or a reset).
        was_waiting, was_stalled = Signal(), Signal()
        last_payload = Signal(WIDTH)
        m.d.sync += [was_waiting.eq(dut.i.valid & ~dut.i.ready),
                     was_stalled.eq(dut.o.valid & ~dut.o.ready),
                     last_payload.eq(dut.o.payload)]
        # (a reset clears was_waiting and was_stalled with everything else)
        with m.If(was_waiting):
            m.d.comb += Assume(self.i_valid)

        with m.If(dut.o.valid):
            m.d.comb += Assert(dut.o.payload == taken)
        with m.If(was_stalled):
            m.d.comb += Assert(dut.o.valid & (dut.o.payload == last_payload))
        in_flight = Signal(WIDTH)
        m.d.comb += [in_flight.eq(offered - taken),
                     Assert(in_flight <= self._capacity)]
        if self._invariant:
            self._invariant(m, insides, taken, in_flight)
        m.submodules.dut = insides            # (after the invariant: it opens the insides)
        return m
