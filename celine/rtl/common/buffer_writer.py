"""Writes a stream of words into a block-RAM buffer."""

from amaranth.hdl import Module, ShapeLike, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ...spec.checks import check_int
from .shaped_queue import _rejected

__all__ = ["BufferWriter"]


class BufferWriter(wiring.Component):
    """Drives a buffer's write port (``mem``: ``addr``, ``data``, ``write``, like an
    engine adapter's port for a buffer it writes, celine/rtl/shell/contract.py) from a
    stream of beats, one word per beat, the cycle the beat is offered.

    ``i`` is always ready (its signature says so: ``ready`` is the constant 1), so the
    producer is never stalled.

    - Addressed (``sequential=False``): beats are ``{"addr", "data"}``; each is written
      at its ``addr``.
    - Sequential (``sequential=True``): beats are ``{"data"}``, written at words 0, 1, 2,
      ... from the last ``restart`` (a one-cycle pulse; it wins over a beat in the same
      cycle). ``count`` is the number of words written since (at most `depth`); a beat
      beyond the buffer's end is dropped and sets ``overflow`` until the next ``restart``.

    Parameters
    ----------
    data_shape : data layout or shape
        Shape of a word (``mem.data`` has it too).
    depth : int
        Words of the buffer (at least 1).
    sequential : bool
        Whether addresses count up from 0 (else each beat carries its own).
    """

    def __init__(self, data_shape, *, depth, sequential=False):
        try:
            if not isinstance(data_shape, (data.Layout, ShapeLike)):
                raise TypeError(f"data_shape must be a data layout or shape, "
                                f"not {data_shape!r}")
            check_int("depth", depth, minimum=1)
            if not isinstance(sequential, bool):
                raise TypeError(f"sequential must be a bool, not {sequential!r}")
        except Exception:
            _rejected(self)
            raise
        self._depth = depth
        self._sequential = sequential
        beat = {"data": data_shape} if sequential else {"addr": range(depth),
                                                        "data": data_shape}
        members = {
            "i": In(stream.Signature(data.StructLayout(beat), always_ready=True)),
            "mem": Out(wiring.Signature({"addr": Out(range(depth)), "data": Out(data_shape),
                                         "write": Out(1)})),
        }
        if sequential:
            members.update(restart=In(1), count=Out(range(depth + 1)), overflow=Out(1))
        super().__init__(members)

    @property
    def depth(self):
        return self._depth

    @property
    def sequential(self):
        return self._sequential

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.mem.data.eq(self.i.payload.data)
        if not self._sequential:
            m.d.comb += [self.mem.addr.eq(self.i.payload.addr),
                         self.mem.write.eq(self.i.valid)]
            return m

        room = self.count < self._depth
        m.d.comb += [self.mem.addr.eq(self.count), self.mem.write.eq(self.i.valid & room)]
        with m.If(self.i.valid):
            with m.If(room):
                m.d.sync += self.count.eq(self.count + 1)
            with m.Else():
                m.d.sync += self.overflow.eq(1)
        with m.If(self.restart):
            m.d.sync += [self.count.eq(0), self.overflow.eq(0)]
        return m
