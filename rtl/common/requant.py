from amaranth.hdl import Const, Signal, Module, signed, unsigned, Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .checks import check_int


class Requantizer(wiring.Component):
    """Narrow an accumulator value: y = clamp((x * M + 2^(S-1)) >> S, lo, hi).

    Arithmetic shift with round-half-up (the rounding term is 0 when S = 0) and saturation
    to `out_width` bits, exactly as golden/quant.py `requantize`. With `bypass` high the
    value passes unchanged instead (so `y` is as wide as the wider of `x` and the result).

    Pipelined: two register stages advancing on `en` (product, then round/shift/clamp), so
    `y` shows the result of the `x` presented two enabled cycles earlier. The caller owns
    the valid/ready handshake around it; `latency` says how many `en` cycles it spans.
    """

    latency = 2

    def __init__(self, *, in_width, multiplier_width=16, shift_width=6, out_width=8):
        check_int("in_width", in_width, minimum=2, maximum=64)
        check_int("multiplier_width", multiplier_width, minimum=1, maximum=32)
        check_int("shift_width", shift_width, minimum=1, maximum=7)
        check_int("out_width", out_width, minimum=2, maximum=32)
        self.in_width = in_width
        self.multiplier_width = multiplier_width
        self.shift_width = shift_width
        self.out_width = out_width
        super().__init__({
            "en": In(1),
            "x": In(signed(in_width)),
            "multiplier": In(unsigned(multiplier_width)),
            "shift": In(unsigned(shift_width)),
            "bypass": In(1),
            "y": Out(signed(max(in_width, out_width))),
        })

    def elaborate(self, platform):
        m = Module()
        product_width = self.in_width + self.multiplier_width + 1
        product = Signal(signed(product_width))
        shift = Signal.like(self.shift)
        bypass = Signal()
        raw = Signal.like(self.x)
        with m.If(self.en):
            m.d.sync += [
                product.eq(self.x * self.multiplier),
                shift.eq(self.shift),
                bypass.eq(self.bypass),
                raw.eq(self.x),
            ]

        # Round half up: add 2^(S-1) (0 when S = 0), then shift arithmetically.
        rounding = (Const(1, 1) << shift) >> 1
        rounded = Signal(signed(product_width + 1))
        m.d.comb += rounded.eq((product + rounding) >> shift)
        lo, hi = -(1 << (self.out_width - 1)), (1 << (self.out_width - 1)) - 1
        clamped = Mux(rounded < lo, lo, Mux(rounded > hi, hi, rounded))
        with m.If(self.en):
            m.d.sync += self.y.eq(Mux(bypass, raw, clamped))
        return m
