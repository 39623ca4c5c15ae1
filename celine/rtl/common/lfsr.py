from amaranth.hdl import Signal
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ...spec.checks import check_int, check_choice

from ...spec.numerics import LFSR_TAPS as TAPS


class LFSR(wiring.Component):
    """Galois linear-feedback shift register.

    `value` is the current state (reset: `seed`). Each cycle with `en` high the state
    shifts right by one and, if the bit shifted out was 1, is XORed with the feedback
    mask. `draw(n)` builds the index (value * n) >> width, which golden/lfsr.py replays.
    """

    def __init__(self, *, width=16, seed=1):
        check_choice("width", width, sorted(TAPS))
        check_int("seed", seed, minimum=1, maximum=(1 << width) - 1)
        self.width = width
        self.seed = seed
        super().__init__({"en": In(1), "value": Out(width, init=seed)})

    def draw(self, n):
        """A value in [0, n) from the current state: a constant multiply and a slice."""
        return (self.value * n)[self.width:]

    def elaborate(self, platform):
        m = Module()
        with m.If(self.en):
            shifted = self.value >> 1
            with m.If(self.value[0]):
                m.d.sync += self.value.eq(shifted ^ TAPS[self.width])
            with m.Else():
                m.d.sync += self.value.eq(shifted)
        return m
