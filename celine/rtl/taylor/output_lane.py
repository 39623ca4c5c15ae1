from amaranth.hdl import Array, Cat, Const, Module, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..common.fanout import register_copies
from ..common.multiplier import RegisteredMultiplier
from ..common.requant import Requantizer
from ...engines.taylor.spec import MULT_BITS, NUMERATOR_LATENCY, SHIFT_BITS, TaylorParams

# Columns a first-stage multiplexer picks among (an 8 : 1 multiplexer is two LUT levels).
_GROUP = 8


class OutputLane(wiring.Component):
    """One output element per cycle: numerator, row-wise division, requantization.

        num  = score + ((S_V[column] * v_mult + 2^(v_shift-1)) >> v_shift)
        quot = (num * recip + 2^(R-1)) >> R                  (division by N)
        out  = clamp_w((quot * out_mult + 2^(out_shift-1)) >> out_shift)

    Fully pipelined with no stall: `out_valid`/`out` follow `valid`/`score`/`column` by
    `latency` cycles (params.output_latency: NUMERATOR_LATENCY for the numerator, then
    each Requantizer's). The settings and `token_sums_v` must hold still while elements
    are in flight.

    The numerator is short stages: S_V[column] in two registered levels of multiplexers
    (8 : 1 over a group of columns, each group steered by its own copy of the column's low
    bits, then one over the groups), the product on a registered multiplier, then the rounding add,
    the shift and the score's add each a stage. (Its worst path was the head_dim : 1
    multiplexer and the product in one cycle, a `*` yosys builds with its registers
    bypassed: 14.0 ns.)
    """

    def __init__(self, params: TaylorParams):
        self.params = params
        self.latency = params.output_latency
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
        # Stage 1: copies of the column's low bits, one a group, and the group index;
        # stage 2: each group's pick.
        groups = [range(lo, min(lo + _GROUP, p.head_dim)) for lo in range(0, p.head_dim, _GROUP)]
        low_bits = max(1, (_GROUP - 1).bit_length())
        column_low = register_copies(m, "column_low", self.column[:low_bits], len(groups))
        group = Signal(range(len(groups)))
        m.d.sync += group.eq(self.column >> low_bits)
        picks = []
        for g, columns in enumerate(groups):
            pick = Signal(signed(p.sum_width), name=f"pick_{g}")
            options = Array(self.token_sums_v[c] for c in columns)
            m.d.comb += pick.eq(options[column_low[g][:max(1, (len(columns) - 1).bit_length())]]
                                if len(columns) > 1 else options[0])
            registered = Signal.like(pick, name=f"picked_{g}")
            m.d.sync += registered.eq(pick)
            picks.append(registered)
        # Stage 3: the one multiplexer over the groups (the group index a stage later),
        # registered in the fabric: into the multiplier's input register directly, the
        # groups' picks spread over the die made it 9.1 ns, 7.6 of it routing (Taylor's
        # worst path on a seed). Stages 4 and 5: S_V · v_mult on a registered multiplier.
        group_2 = Signal.like(group)
        m.d.sync += group_2.eq(group)
        token_sum = Signal(signed(p.sum_width), reset_less=True)
        m.d.sync += token_sum.eq(Array(picks)[group_2])
        m.submodules.scale = scale = RegisteredMultiplier(p.sum_width, MULT_BITS + 1)
        m.d.comb += [scale.a.eq(token_sum), scale.b.eq(self.v_mult)]
        # Stage 6: the rounding constant (from the settings) added; 7: the shift; 8: the
        # score added.
        half = Signal(signed(MULT_BITS + 2))
        m.d.sync += half.eq((Const(1, 1) << self.v_shift) >> 1)
        rounded = Signal(signed(p.sum_width + MULT_BITS + 2))
        shifted = Signal(signed(p.sum_width + MULT_BITS + 2))
        numerator = Signal(signed(num_width))
        scores = [self.score]
        for k in range(NUMERATOR_LATENCY - 1):
            reg = Signal.like(self.score, name=f"score_{k + 1}")
            m.d.sync += reg.eq(scores[-1])
            scores.append(reg)
        m.d.sync += [
            rounded.eq(scale.p + half),
            shifted.eq(rounded >> self.v_shift),
            numerator.eq(scores[-1] + shifted),
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
