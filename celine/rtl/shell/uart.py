from amaranth.hdl import Module, Signal, Cat
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

from ...spec.checks import check_int


class UARTReceiver(wiring.Component):
    """8N1 UART receiver: `rx` pin in, one byte per frame out on `o`.

    `divisor` is clock cycles per bit (at least 4). The pin is synchronised by two
    flip-flops; a falling edge starts a frame if the line is still low in the middle of
    the start bit (shorter pulses are glitches), each bit is sampled in its middle, and a
    byte is offered on `o` after the stop bit. A frame whose stop bit reads 0 is dropped
    (`framing_error` pulses) and the receiver waits for the line to return high. `o` is
    not buffered: a byte still waiting when the next one completes is overwritten and
    `overrun` pulses, so put a FIFO behind it if the reader can stall.

    `quiet` is high while no byte is on the line: it falls when a start bit is seen and
    rises one bit time after the middle of the stop bit (half a bit after the byte's end:
    the stop bit is sampled in its middle, and half a bit of margin keeps a quiet time
    measured from `quiet` from counting any of the byte). It stays high after a missing
    stop bit. So a count of the cycles `quiet` is high between two bytes is the quiet gap
    between them less half a bit time (within a cycle or two).
    """

    def __init__(self, *, divisor):
        check_int("divisor", divisor, minimum=4, maximum=1 << 20)
        self.divisor = divisor
        super().__init__({
            "rx": In(1, init=1),
            "o": Out(stream.Signature(8)),
            "framing_error": Out(1),
            "overrun": Out(1),
            "quiet": Out(1, init=1),
        })

    def elaborate(self, platform):
        m = Module()
        rx = Signal(init=1)
        m.submodules.sync_rx = FFSynchronizer(self.rx, rx, init=1)

        timer = Signal(range(self.divisor * 3 // 2 + 1))
        bit = Signal(range(9))
        shift = Signal(8)

        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~rx):
                    # Wait to the middle of the start bit: half a bit time.
                    m.d.sync += [timer.eq(self.divisor // 2 - 1), bit.eq(0),
                                 self.quiet.eq(0)]
                    m.next = "START"
                with m.Elif(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += self.quiet.eq(1)
            with m.State("START"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(rx):
                    # High again in the middle of the start bit: a glitch (or the end of
                    # a break that a reset cut into), not a byte.
                    m.d.sync += self.quiet.eq(1)
                    m.next = "IDLE"
                with m.Else():
                    # On to the middle of the first data bit.
                    m.d.sync += timer.eq(self.divisor - 1)
                    m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [shift.eq(Cat(shift[1:], rx)), bit.eq(bit + 1),
                                 timer.eq(self.divisor - 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    with m.If(rx):
                        m.d.sync += [self.o.payload.eq(shift), self.o.valid.eq(1),
                                     timer.eq(self.divisor - 1)]      # `quiet` in a bit
                        m.d.comb += self.overrun.eq(self.o.valid & ~self.o.ready)
                        # Back to idle in the middle of the stop bit: the next start edge
                        # may come half a bit later.
                        m.next = "IDLE"
                    with m.Else():
                        m.d.comb += self.framing_error.eq(1)
                        m.d.sync += self.quiet.eq(1)
                        m.next = "BREAK"
            with m.State("BREAK"):
                # After a missing stop bit, wait for the line to go idle (high) before
                # looking for the next start bit.
                with m.If(rx):
                    m.next = "IDLE"
        return m


class UARTTransmitter(wiring.Component):
    """8N1 UART transmitter: bytes in on `i`, `tx` pin out (idle high).

    `divisor` clock cycles per bit; one byte every 10 bit times while `i` has data.
    """

    def __init__(self, *, divisor):
        check_int("divisor", divisor, minimum=4, maximum=1 << 20)
        self.divisor = divisor
        super().__init__({
            "i": In(stream.Signature(8)),
            "tx": Out(1, init=1),
        })

    def elaborate(self, platform):
        m = Module()
        timer = Signal(range(self.divisor))
        bits = Signal(10, init=0x3FF)   # stop, data[7:0], start, shifted out LSB first
        left = Signal(range(11))

        m.d.comb += self.tx.eq(bits[0])
        with m.If(left == 0):
            m.d.comb += self.i.ready.eq(1)
            with m.If(self.i.valid):
                m.d.sync += [bits.eq(Cat(0, self.i.payload, 1)), left.eq(10),
                             timer.eq(self.divisor - 1)]
        with m.Elif(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        with m.Else():
            m.d.sync += [bits.eq(Cat(bits[1:], 1)), left.eq(left - 1),
                         timer.eq(self.divisor - 1)]
        return m
