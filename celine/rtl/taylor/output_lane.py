from amaranth.hdl import Cat, Const, Module, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..common.requant import Requantizer
from ...engines.taylor.spec import MULT_BITS, SHIFT_BITS, TaylorParams


class OutputLane(wiring.Component):
    """One output element per cycle: numerator, row-wise division, requantization.

        num  = score + ((S_V[column] * v_mult + 2^(v_shift-1)) >> v_shift)
        quot = (num * recip + 2^(R-1)) >> R                  (division by N)
        out  = clamp_w((quot * out_mult + 2^(out_shift-1)) >> out_shift)

    Fully pipelined with no stall: `out_valid`/`out` follow `valid`/`score`/`column` by
    `latency` cycles (4 for the numerator, 4 for each Requantizer). The settings and
    `token_sums_v` must hold still while elements are in flight.
    """

    latency = 4 + 2 * Requantizer.latency

    def __init__(self, params: TaylorParams):
        self.params = params
        p = params
        super().__init__({
            "valid": In(1),
            "score": In(signed(p.score_width)),
            "column": In(range(p.head_dim)),
            "token_sums_v": In(data.ArrayLayout(signed(p.sum_width), p.head_dim)),
            "v_mult": In(unsigned(MULT_BITS)),
            "v_shift": In(unsigned(SHIFT_BITS)),
            "recip": In(unsigned(p.recip_width)),
            "out_mult": In(unsigned(MULT_BITS)),
            "out_shift": In(unsigned(SHIFT_BITS)),
            "out_valid": Out(1),
            "out": Out(signed(p.operand_width)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        num_width = p.numerator_width
        m.submodules.divide = divide = Requantizer(
            in_width=num_width, multiplier_width=p.recip_width, shift_width=SHIFT_BITS,
            out_width=num_width)
        m.submodules.requant = requant = Requantizer(
            in_width=num_width, multiplier_width=MULT_BITS, shift_width=SHIFT_BITS,
            out_width=p.operand_width)

        valid = [self.valid]
        for k in range(self.latency):
            reg = Signal(name=f"valid_{k + 1}")
            m.d.sync += reg.eq(valid[-1])
            valid.append(reg)
        m.d.comb += [self.out_valid.eq(valid[-1]), self.busy.eq(Cat(*valid[1:]).any())]

        # Numerator: the V token sum of this column, scaled to the score's unit.
        score_1 = Signal.like(self.score)
        score_2 = Signal.like(self.score)
        score_3 = Signal.like(self.score)
        token_sum = Signal(signed(p.sum_width))
        scaled = Signal(signed(p.sum_width + MULT_BITS + 1))
        rounded = Signal(signed(p.sum_width + MULT_BITS + 2))
        numerator = Signal(signed(num_width))
        m.d.sync += [
            score_1.eq(self.score),
            token_sum.eq(self.token_sums_v[self.column]),
            score_2.eq(score_1),
            scaled.eq(token_sum * self.v_mult),
            score_3.eq(score_2),
            rounded.eq(scaled + ((Const(1, 1) << self.v_shift) >> 1)),
            numerator.eq(score_3 + (rounded >> self.v_shift)),
        ]

        m.d.comb += [
            divide.en.eq(1),
            divide.x.eq(numerator),
            divide.multiplier.eq(self.recip),
            divide.shift.eq(p.recip_shift),
            requant.en.eq(1),
            requant.x.eq(divide.y),
            requant.multiplier.eq(self.out_mult),
            requant.shift.eq(self.out_shift),
            self.out.eq(requant.y),
        ]
        return m
