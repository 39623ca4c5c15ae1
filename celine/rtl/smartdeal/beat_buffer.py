"""A two-entry stream buffer whose registers load whatever `valid` says: the SD parser's
output stage, where `i.valid` is decided late in the cycle."""

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["BeatBuffer"]


class BeatBuffer(wiring.Component):
    """Like common.skid.SkidBuffer (`i.ready` registered: no path from `o.ready` to it;
    one beat a cycle; `o.valid`/`o.payload` registered; beats in order, none lost), but the
    payload registers' enables do not depend on `i.valid`: a free register takes
    `i.payload` every cycle and only its valid bit takes `i.valid`. A `valid` that arrives
    late (the parser's go decision and its error checks) then drives two flip-flops, not
    the enables of the whole payload.

    `i.valid` may depend on `i.ready` (the parser offers a beat only when it is ready);
    the buffer never makes `i.ready` depend on `i.valid`.
    """

    def __init__(self, layout):
        self._layout = layout
        super().__init__({
            "i": In(stream.Signature(layout)),
            "o": Out(stream.Signature(layout)),
        })

    def elaborate(self, platform):
        m = Module()
        spare_free = Signal(init=1)     # i.ready straight from a flip-flop
        spare = Signal(self._layout)
        m.d.comb += self.i.ready.eq(spare_free)
        with m.If(self.o.ready | ~self.o.valid):
            # The output register is free (or being emptied) at this edge.
            with m.If(~spare_free):
                m.d.sync += [self.o.payload.eq(spare), self.o.valid.eq(1),
                             spare_free.eq(1)]
            with m.Else():
                m.d.sync += [self.o.payload.eq(self.i.payload),
                             self.o.valid.eq(self.i.valid)]
        with m.Elif(spare_free):
            # The output stalls: the spare register takes the input (a beat if valid).
            m.d.sync += [spare.eq(self.i.payload), spare_free.eq(~self.i.valid)]
        return m
