"""A placeholder design for board bring-up: the UART's rx line echoed back on tx."""

from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["UartEcho"]


class UartEcho(wiring.Component):
    """tx follows rx one clock cycle later (any baud rate); `busy` lights while rx toggles.

    `busy` stays high for about 50 ms after the last low level seen on rx, so that traffic
    is visible on an LED.
    """

    rx: In(1, init=1)
    tx: Out(1, init=1)
    busy: Out(1)

    def __init__(self, clock_hz, baud):
        self.clock_hz = int(clock_hz)
        self.baud = int(baud)
        super().__init__()

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.tx.eq(self.rx)
        hold = max(1, self.clock_hz // 20)
        remaining = Signal(range(hold + 1))
        with m.If(~self.rx):
            m.d.sync += remaining.eq(hold)
        with m.Elif(remaining != 0):
            m.d.sync += remaining.eq(remaining - 1)
        m.d.comb += self.busy.eq(remaining != 0)
        return m
