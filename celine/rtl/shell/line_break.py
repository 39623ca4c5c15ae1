"""A break on the UART line: the receive pin held low far longer than any byte can.

`LineBreak(divisor, bits=BREAK_BITS)`: `detected` rises once `rx` (synchronised) has been
low for `bits` bit times of `divisor` cycles and stays high until `rx` goes high again.
An 8N1 byte holds the line low for 9 bit times at most (a start bit and eight 0s), so
noise and data never make one. The board top (celine/boards/top.py) feeds `detected` into
the design's reset: a host that sends a break (Device.reset) resets every flip-flop of
the device and keeps its buffers' contents (block RAM), docs/protocol.md "Break".
`with_break_reset(design, divisor)` does the same in simulation: the design with the
detector's output as its synchronous reset.
"""

from amaranth.hdl import Elaboratable, Module, ResetInserter, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ...spec.checks import check_int
from ...spec.protocol import BREAK_BITS

__all__ = ["LineBreak", "with_break_reset"]


class LineBreak(wiring.Component):
    rx: In(1, init=1)
    detected: Out(1)

    def __init__(self, *, divisor, bits=BREAK_BITS):
        check_int("divisor", divisor, minimum=1, maximum=1 << 20)
        check_int("bits", bits, minimum=10, maximum=1 << 12)
        self.cycles = divisor * bits
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        low = Signal(range(self.cycles + 1))
        with m.If(self.rx):
            m.d.sync += [low.eq(0), self.detected.eq(0)]
        with m.Elif(low != self.cycles):
            m.d.sync += low.eq(low + 1)
        with m.Else():
            m.d.sync += self.detected.eq(1)
        return m


class _BreakReset(Elaboratable):
    def __init__(self, design, divisor):
        self.design = design
        self.line_break = LineBreak(divisor=divisor)

    def elaborate(self, platform):
        m = Module()
        m.submodules.line_break = line_break = self.line_break
        m.d.comb += line_break.rx.eq(self.design.rx)
        m.submodules.design = ResetInserter(line_break.detected)(self.design)
        return m


def with_break_reset(design, divisor):
    """`design` (with an `rx` port) reset while a break is on its `rx`: for simulations
    of what the board top does. Drive and read the design's own ports."""
    return _BreakReset(design, divisor)
