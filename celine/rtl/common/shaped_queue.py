"""A stream FIFO whose payload has a shape (a data layout), so nobody packs words by hand."""

from amaranth.hdl import Module, Shape, ShapeLike
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ...spec.checks import check_int

__all__ = ["ShapedQueue"]


def _rejected(component):
    """Silence Amaranth's "created but never elaborated" warning for a rejected object."""
    component._MustUse__silence = True


class ShapedQueue(wiring.Component):
    """`depth` beats of `layout` between two streams: amaranth.lib.fifo.SyncFIFOBuffered
    (block-RAM friendly: no asynchronous reads) with stream interfaces.

    - ``i``: the input stream; ``i.ready`` is high while the queue has room.
    - ``o``: the output stream; ``o.valid`` and ``o.payload`` come from registers.
    - ``level``: beats held (including the one offered on ``o``), as SyncFIFOBuffered
      counts them.

    Latency: a beat taken in an empty queue is offered on ``o`` two cycles later.
    Throughput: one beat per cycle in and out from depth 3 on; at depth 1 and 2 one beat
    every other cycle once the queue has filled (SyncFIFOBuffered's inner memory then
    holds one entry). Beats leave in order; none is lost or duplicated under any
    valid/ready pattern.

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

    def elaborate(self, platform):
        m = Module()
        width = Shape.cast(self._layout).width
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
