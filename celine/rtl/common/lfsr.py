from amaranth.hdl import Module, Mux
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

    def draw(self, n, value=None):
        """A value in [0, n) from the current state (or from `value`, a state such as
        `stepped()`): a constant multiply and a slice."""
        value = self.value if value is None else value
        return (value * n)[self.width:]

    def stepped(self):
        """The state after this one (what `value` becomes on a cycle with `en`)."""
        return Mux(self.value[0], (self.value >> 1) ^ TAPS[self.width], self.value >> 1)

    def elaborate(self, platform):
        m = Module()
        with m.If(self.en):
            m.d.sync += self.value.eq(self.stepped())
        return m
