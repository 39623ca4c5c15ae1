from amaranth.hdl import Const, Signal, Module, signed, unsigned, Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ...spec.checks import check_int
from ...spec.numerics import REQUANT_LATENCY


class Requantizer(wiring.Component):
    """Narrow an accumulator value: y = clamp((x * M + 2^(S-1)) >> S, lo, hi).

    Arithmetic shift with round-half-up (the rounding term is 0 when S = 0) and saturation
    to `out_width` bits, exactly as golden/quant.py `requantize`. With `bypass` high the
    value passes unchanged instead (so `y` is as wide as the wider of `x` and the result).

    Pipelined in `latency` = 4 register stages advancing on `en` (multiply; add the
    rounding term; shift; clamp), so `y` shows the result for the `x` presented four
    enabled cycles earlier. The caller owns the valid/ready handshake around it.
    """

    latency = REQUANT_LATENCY

    def __init__(self, *, in_width, multiplier_width=16, shift_width=6, out_width=8):
        check_int("in_width", in_width, minimum=2, maximum=64)
        check_int("multiplier_width", multiplier_width, minimum=1, maximum=32)
        check_int("shift_width", shift_width, minimum=1, maximum=7)
        check_int("out_width", out_width, minimum=2, maximum=64)
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

        def stage(name, value, shape=None):
            reg = Signal(shape if shape is not None else value.shape(), name=name)
            with m.If(self.en):
                m.d.sync += reg.eq(value)
            return reg

        # Settings and the raw value travel along with the data.
        shift = [self.shift]
        bypass = [self.bypass]
        raw = [self.x]
        for k in range(1, 4):
            shift.append(stage(f"shift_{k}", shift[-1]))
            bypass.append(stage(f"bypass_{k}", bypass[-1]))
            raw.append(stage(f"raw_{k}", raw[-1]))

        product = stage("product", self.x * self.multiplier, signed(product_width))
        rounding = stage("rounding", (Const(1, 1) << self.shift) >> 1,
                         unsigned(1 << self.shift_width))
        # Wide enough for the rounding term of the largest shift, so nothing overflows.
        sum_width = max(product_width, 1 << self.shift_width) + 1
        total = stage("total", product + rounding, signed(sum_width))
        shifted = stage("shifted", total >> shift[2], signed(sum_width))
        lo, hi = -(1 << (self.out_width - 1)), (1 << (self.out_width - 1)) - 1
        clamped = Mux(shifted < lo, lo, Mux(shifted > hi, hi, shifted))
        with m.If(self.en):
            m.d.sync += self.y.eq(Mux(bypass[3], raw[3], clamped))
        return m
