from amaranth.hdl import Cat, Const, Module, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..common.multiplier import RegisteredMultiplier, chunk_operand, mult18_chunks
from ..common.requant import Requantizer
from ...engines.taylor.spec import SHIFT_BITS, TaylorParams


class CenteringUnit(wiring.Component):
    """tile_cols lanes of the global context: G_q = clamp_2w(round_shift(N*P - S_K*S_V)).

    Each cycle takes one row of a block: `kv[j]` = P[a][b_j], the key token sum
    `token_sum_k` = S_K[a] and `token_sums_v[j]` = S_V[b_j]. N*P - S_K*S_V is N times the
    centered K^T V, exact (centering scaled by N needs no division); it is narrowed to the
    2w-bit context by an arithmetic shift with round-half-up and saturation.

    Pipelined, no stall: `context` is valid `latency` (params.centering_latency) cycles
    after its inputs. The products are registered multipliers (a MULT18X18D each with its
    own registers on ECP5, 2 cycles): N*P with P cut into 17-bit chunks (each chunk times
    N fits a block), and S_K*S_V; then the chunk products are summed (1 cycle) and the
    difference taken (1 cycle), so no stage has more than one adder.
    """

    def __init__(self, params: TaylorParams):
        self.params = p = params
        self.latency = p.centering_latency
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
        tokens = Cat(self.tokens, Const(0, 1)).as_signed()     # N, unsigned
        for j in range(p.tile_cols):
            # Stages 1-2: the chunk products of N*P and the product S_K*S_V.
            terms = []
            for k, (lo, bits) in enumerate(mult18_chunks(p.element_width, signed_top=True)):
                chunk = chunk_operand(self.kv[j], lo, bits, signed_top=True)
                m.submodules[f"scaled_{j}_{k}"] = mult = RegisteredMultiplier(len(chunk),
                                                                              len(tokens))
                m.d.comb += [mult.a.eq(chunk), mult.b.eq(tokens)]
                terms.append(mult.p << lo)
            m.submodules[f"outer_{j}"] = outer = RegisteredMultiplier(p.sum_width, p.sum_width)
            m.d.comb += [outer.a.eq(self.token_sum_k), outer.b.eq(self.token_sums_v[j])]
            # Stage 3: the chunk products summed (two for the default 24-bit P); S_K*S_V
            # waits beside them. Stage 4: the difference.
            scaled = Signal(signed(width), name=f"scaled_{j}")
            outer_3 = Signal(signed(width), name=f"outer_{j}")
            centered = Signal(signed(width), name=f"centered_{j}")
            m.d.sync += [
                scaled.eq(sum(terms)),
                outer_3.eq(outer.p),
                centered.eq(scaled - outer_3),
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
