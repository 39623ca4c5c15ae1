"""The harness of the sequential BufferWriter (rtl/common/buffer_writer.py), the output
side of most engines' shell adapters: its word count never passes the buffer's end,
every beat lands at the next word, none lost while there is room, and a beat beyond the
end is dropped and flagged.

The writer's input never stalls (`i` is always ready), so its count is the only thing
between a run's beats and the words past the buffer's end. The harness counts the beats
offered since the last `restart` (`since`, stopping at depth + 1). Free inputs: `i.valid`,
the beat's data, `restart` and the reset. Asserted every cycle:

- a beat is written exactly when it comes with room (`mem.write` is `i.valid` and since
  < depth), at word `since` (so within the buffer: none written twice, none skipped), with
  the beat's data;
- `count` is the words written since the restart, min(since, depth): never above depth;
- `overflow` is high exactly when a beat has come beyond the buffer's end since the
  restart.

A beat in a restart's own cycle belongs to the run before (written at its count if there
is room; the new run starts from word 0). The ports alone state everything: depth 1.
"""

from amaranth.hdl import Assert, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In

from ..rtl.common.buffer_writer import BufferWriter

__all__ = ["WriterHarness"]

DATA_WIDTH = 4


class WriterHarness(wiring.Component):
    """`depth`: the buffer's words; `writer`: the class under proof."""
    i_valid: In(1)
    data: In(DATA_WIDTH)
    restart: In(1)

    def __init__(self, depth, writer=BufferWriter):
        self._depth, self._writer = depth, writer
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        depth = self._depth
        m.submodules.dut = dut = self._writer(DATA_WIDTH, depth=depth, sequential=True)
        m.d.comb += [dut.i.valid.eq(self.i_valid), dut.i.payload.data.eq(self.data),
                     dut.restart.eq(self.restart)]
        since = Signal(range(depth + 2))        # beats since the restart, up to depth + 1
        with m.If(self.restart):
            m.d.sync += since.eq(0)
        with m.Elif(self.i_valid & (since <= depth)):
            m.d.sync += since.eq(since + 1)

        room = since < depth
        m.d.comb += [Assert(dut.mem.write == (self.i_valid & room)),
                     Assert(dut.count == Mux(room, since, depth)),
                     Assert(dut.count <= depth),
                     Assert(dut.overflow == (since > depth))]
        with m.If(dut.mem.write):
            m.d.comb += [Assert(dut.mem.addr == since), Assert(dut.mem.data == self.data)]
        return m

