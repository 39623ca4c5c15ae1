"""Stream pipeline register with registered ``ready`` (a 2-entry skid buffer)."""

from amaranth.hdl import Module, Signal, ShapeLike
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

    Parameters
    ----------
    layout : data layout or shape
        Shape of the stream payload.
    """

    def __init__(self, layout):
        if not isinstance(layout, (data.Layout, ShapeLike)):
            self._MustUse__silence = True   # no "created but never used" for a rejected object
            raise TypeError(f"layout must be a data layout or shape, not {layout!r}")
        self._layout = layout
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
