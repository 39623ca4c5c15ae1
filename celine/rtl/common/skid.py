"""Stream pipeline register with registered ``ready`` (a 2-entry skid buffer)."""

from amaranth.hdl import Module, Mux, Signal, ShapeLike
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SkidBuffer"]


class SkidBuffer(wiring.Component):
    """Full-throughput stream register that cuts every combinational path.

    ``o.valid`` and ``o.payload`` come from registers, and so does ``i.ready``: there is no
    combinational path from ``o.ready`` (or anything else) to ``i.ready``, which is what
    lets long stream pipelines meet timing.

    Behaviour:

    - Latency: a beat accepted on ``i`` at clock edge *t* is offered on ``o`` from edge
      *t* + 1 (one cycle).
    - Throughput: one beat per cycle while ``o.ready`` stays high.
    - Backpressure: ``i.ready`` is registered, so it falls one cycle after ``o.ready``
      does. The beat accepted in that cycle goes into a second register (the "skid"
      entry); ``i.ready`` stays low until the skid entry has moved to the output. Beats
      leave in order; none is lost or duplicated under any valid/ready pattern.

    With ``registered_output=False`` only ``i.ready`` is a register: while the skid entry
    is empty ``o`` is ``i`` itself (no latency), and a beat offered while ``o.ready`` is
    low goes into the skid entry, which ``o`` offers next. It cuts the path from the
    consumer's ``ready`` back into the producer (a queue's read logic, say) and leaves the
    beats' timing as the consumer sees it unchanged.

    Parameters
    ----------
    layout : data layout or shape
        Shape of the stream payload.
    registered_output : bool
        Whether ``o.valid`` and ``o.payload`` come from registers (True, the default) or
        pass through while the skid entry is empty.
    """

    def __init__(self, layout, *, registered_output=True):
        if not isinstance(layout, (data.Layout, ShapeLike)):
            self._MustUse__silence = True   # no "created but never used" for a rejected object
            raise TypeError(f"layout must be a data layout or shape, not {layout!r}")
        if not isinstance(registered_output, bool):
            self._MustUse__silence = True
            raise TypeError(f"registered_output must be True or False, not "
                            f"{registered_output!r}")
        self._layout = layout
        self._registered_output = registered_output
        super().__init__({
            "i": In(stream.Signature(layout)),
            "o": Out(stream.Signature(layout)),
        })

    @property
    def layout(self):
        return self._layout

    def elaborate(self, platform):
        m = Module()

        skid_valid = Signal()
        skid_payload = Signal(self._layout)

        # Registered: the skid entry is the only thing that can block the input.
        m.d.comb += self.i.ready.eq(~skid_valid)

        if not self._registered_output:
            m.d.comb += [self.o.valid.eq(skid_valid | self.i.valid),
                         self.o.payload.eq(Mux(skid_valid, skid_payload, self.i.payload))]
            with m.If(skid_valid):
                with m.If(self.o.ready):
                    m.d.sync += skid_valid.eq(0)
            with m.Elif(self.i.valid & ~self.o.ready):
                m.d.sync += [skid_payload.eq(self.i.payload), skid_valid.eq(1)]
            return m

        with m.If(self.o.ready | ~self.o.valid):
            # The output register is free (or being emptied) at this edge.
            with m.If(skid_valid):
                m.d.sync += [
                    self.o.payload.eq(skid_payload),
                    self.o.valid.eq(1),
                    skid_valid.eq(0),
                ]
            with m.Else():
                m.d.sync += [
                    self.o.payload.eq(self.i.payload),
                    self.o.valid.eq(self.i.valid),
                ]
        with m.Elif(self.i.valid & self.i.ready):
            # Output stalled and the input handshake happened: park the beat.
            m.d.sync += [
                skid_payload.eq(self.i.payload),
                skid_valid.eq(1),
            ]

        return m
