"""The serial line of a simulated board, in the simulation: `LineBridge` (Device.open("sim")).

A testbench that drives a UART pin from Python wakes up for every bit, and that, not the
design, bounds how fast a simulated device answers. LineBridge wraps the design (a Shell,
or anything with `rx` in and `tx` out) with a UART transmitter and receiver of its own at
the design's divisor, and offers the testbench windows of `window` bytes instead of bits:

- `in_bytes` (byte i in bits 8i..8i+7), `in_count`, `in_load`: at a clock edge with
  `in_load` high and `in_busy` low, the first `in_count` bytes of `in_bytes` are taken
  into a staging window (`in_busy` is high while it holds them); they move on to the
  sending window as soon as that is empty, and go out on the design's rx one after the
  other, 8N1. A window loaded before the one being sent ends follows it with no gap, so
  a frame longer than a window reaches the design whole (its inter-byte timeout never
  fires). `in_left`: the bytes still to send, both windows counted.
- `out_bytes`, `out_count`: the bytes received from the design's tx since the last take,
  byte i in bits 8i..8i+7. At a clock edge with `out_take` high they are dropped: the
  window keeps only a byte that arrived at that very edge. `out_overflow` is set (and
  stays set) if a byte arrives with the window full; the byte is lost.

The testbench (celine.sim.tb.serve_tb) then wakes once per window, and the simulator
spends its time in the design. The line is the one the design would see on a board: the
design's own UART receiver samples every bit.
"""

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..rtl.shell.uart import UARTReceiver, UARTTransmitter
from ..spec.checks import check_int

__all__ = ["LineBridge", "WINDOW"]

WINDOW = 256          # bytes a window holds each way


class LineBridge(wiring.Component):
    def __init__(self, design, *, divisor, window=WINDOW):
        check_int("divisor", divisor, minimum=4, maximum=1 << 20)
        check_int("window", window, minimum=1, maximum=4096)
        self.design = design
        self.divisor = divisor
        self.window = window
        super().__init__({
            "in_bytes": In(8 * window),
            "in_count": In(range(window + 1)),
            "in_load": In(1),
            "in_busy": Out(1),
            "in_left": Out(range(2 * window + 1)),
            "out_bytes": Out(8 * window),
            "out_count": Out(range(window + 1)),
            "out_take": In(1),
            "out_overflow": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.design = design = self.design
        m.submodules.transmitter = transmitter = UARTTransmitter(divisor=self.divisor)
        m.submodules.receiver = receiver = UARTReceiver(divisor=self.divisor)
        m.d.comb += [design.rx.eq(transmitter.tx), receiver.rx.eq(design.tx)]

        # Into the design: the sending window shifts a byte out each time the transmitter
        # takes one; the staged window moves in when it is empty.
        pending = Signal(8 * self.window)
        left = Signal(range(self.window + 1))
        staged = Signal(8 * self.window)
        staged_count = Signal(range(self.window + 1))
        m.d.comb += [
            self.in_busy.eq(staged_count != 0),
            self.in_left.eq(left + staged_count),
            transmitter.i.valid.eq(left != 0),
            transmitter.i.payload.eq(pending[:8]),
        ]
        with m.If(transmitter.i.valid & transmitter.i.ready):
            m.d.sync += [pending.eq(pending >> 8), left.eq(left - 1)]
        with m.Elif((left == 0) & (staged_count != 0)):
            m.d.sync += [pending.eq(staged), left.eq(staged_count), staged_count.eq(0)]
        with m.If(self.in_load & (staged_count == 0)):
            m.d.sync += [staged.eq(self.in_bytes), staged_count.eq(self.in_count)]

        # Out of the design: each byte received goes to the next free place of the window.
        m.d.comb += receiver.o.ready.eq(1)
        got = receiver.o.valid
        with m.If(self.out_take):
            m.d.sync += self.out_count.eq(got)
            with m.If(got):
                m.d.sync += self.out_bytes.word_select(0, 8).eq(receiver.o.payload)
        with m.Elif(got):
            with m.If(self.out_count == self.window):
                m.d.sync += self.out_overflow.eq(1)
            with m.Else():
                m.d.sync += [
                    self.out_bytes.word_select(self.out_count, 8).eq(receiver.o.payload),
                    self.out_count.eq(self.out_count + 1),
                ]
        return m
