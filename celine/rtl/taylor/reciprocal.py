from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ...spec.checks import check_int


class Reciprocal(wiring.Component):
    """recip = (2^shift + n//2) // n, by restoring division, one quotient bit per cycle.

    `start` samples `n` (n >= 1); `done` rises `latency` = shift + 2 cycles later and
    `recip` holds the result until the next `start`. The row-wise division of the Taylor
    pipeline multiplies by it (golden/taylor.py `reciprocal`), so one divider per run
    replaces a divider per output element.
    """

    def __init__(self, *, shift, n_width):
        check_int("shift", shift, minimum=1, maximum=48)
        check_int("n_width", n_width, minimum=1, maximum=16)
        self.shift = shift
        self.latency = shift + 2
        super().__init__({
            "start": In(1),
            "n": In(n_width),
            "done": Out(1),
            "recip": Out(shift + 1),
        })

    def elaborate(self, platform):
        m = Module()
        n = Signal.like(self.n)
        dividend = Signal(self.shift + 1)      # 2^shift + n//2, consumed from the top bit
        remainder = Signal(len(self.n) + 1)
        bit = Signal(range(self.shift + 2))
        running = Signal()

        trial = Cat(dividend[-1], remainder)   # remainder * 2 + next dividend bit
        with m.If(running):
            m.d.sync += [dividend.eq(dividend << 1), bit.eq(bit - 1)]
            with m.If(trial >= n):
                m.d.sync += [remainder.eq(trial - n), self.recip.eq(Cat(1, self.recip))]
            with m.Else():
                m.d.sync += [remainder.eq(trial), self.recip.eq(Cat(0, self.recip))]
            with m.If(bit == 0):
                m.d.sync += [running.eq(0), self.done.eq(1)]
        with m.If(self.start):
            m.d.sync += [
                n.eq(self.n), dividend.eq((1 << self.shift) + (self.n >> 1)), remainder.eq(0),
                bit.eq(self.shift), running.eq(1), self.done.eq(0), self.recip.eq(0),
            ]
        return m
