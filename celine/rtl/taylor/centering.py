from amaranth.hdl import Const, Module, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..common.requant import Requantizer
from ...engines.taylor.spec import SHIFT_BITS, TaylorParams


class CenteringUnit(wiring.Component):
    """tile_cols lanes of the global context: G_q = clamp_2w(round_shift(N*P - S_K*S_V)).

    Each cycle takes one row of a block: `kv[j]` = P[a][b_j], the key token sum
    `token_sum_k` = S_K[a] and `token_sums_v[j]` = S_V[b_j]. N*P - S_K*S_V is N times the
    centered K^T V, exact (centering scaled by N needs no division); it is narrowed to the
    2w-bit context by an arithmetic shift with round-half-up and saturation.

    Pipelined, no stall: `context` is valid `latency` cycles after its inputs.
    """

    latency = 2 + Requantizer.latency

    def __init__(self, params: TaylorParams):
        self.params = params
        p = params
        lanes = p.tile_cols
        super().__init__({
            "kv": In(data.ArrayLayout(signed(p.element_width), lanes)),
            "token_sum_k": In(signed(p.sum_width)),
            "token_sums_v": In(data.ArrayLayout(signed(p.sum_width), lanes)),
            "tokens": In(unsigned(p.token_width)),
            "ctx_shift": In(unsigned(SHIFT_BITS)),
            "context": Out(data.ArrayLayout(signed(p.context_width), lanes)),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        width = p.centered_width
        for j in range(p.tile_cols):
            scaled = Signal(signed(width), name=f"scaled_{j}")
            outer = Signal(signed(width), name=f"outer_{j}")
            centered = Signal(signed(width), name=f"centered_{j}")
            m.d.sync += [
                scaled.eq(self.kv[j] * self.tokens),
                outer.eq(self.token_sum_k * self.token_sums_v[j]),
                centered.eq(scaled - outer),
            ]
            requant = Requantizer(in_width=width, multiplier_width=1, shift_width=SHIFT_BITS,
                                  out_width=p.context_width)
            m.submodules[f"requant_{j}"] = requant
            m.d.comb += [
                requant.en.eq(1),
                requant.x.eq(centered),
                requant.multiplier.eq(Const(1, 1)),
                requant.shift.eq(self.ctx_shift),
                self.context[j].eq(requant.y),
            ]
        return m
