from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ...engines.taylor.spec import TaylorParams


class TokenSums(wiring.Component):
    """The token sums of one head, S_K[a] = Σ_i K_i[a] and S_V[b] = Σ_i V_i[b].

    On `add`, the d elements of `k` and of `v` (a token's K and V rows) are added in one
    cycle (the sums show them a cycle later: the inputs are registered), into 0 instead of
    the running sums when `first` (token 0). The sums hold still
    otherwise: the centering pass and the output lane read them for the rest of the head.
    """

    def __init__(self, params: TaylorParams):
        self.params = p = params
        row = data.ArrayLayout(signed(p.operand_width), p.head_dim)
        sums = data.ArrayLayout(signed(p.sum_width), p.head_dim)
        super().__init__({
            "add": In(1),
            "first": In(1),
            "k": In(row),
            "v": In(row),
            "sums_k": Out(sums),
            "sums_v": Out(sums),
        })

    def elaborate(self, platform):
        m = Module()
        # The inputs are registered first: `add` and `first` steer all 2d sums, and a
        # register here gives their spread over the sums a whole cycle. The sums follow
        # an add one cycle later; their readers wait for the rest of the head's K/V tiles
        # (d*d/mac_units >= d cycles a token) before they look.
        add, first = Signal(), Signal()
        k, v = Signal.like(self.k), Signal.like(self.v)
        m.d.sync += [add.eq(self.add), first.eq(self.first), k.eq(self.k), v.eq(self.v)]
        with m.If(add):
            for a in range(self.params.head_dim):
                m.d.sync += [
                    self.sums_k[a].eq(Mux(first, 0, self.sums_k[a]) + k[a]),
                    self.sums_v[a].eq(Mux(first, 0, self.sums_v[a]) + v[a]),
                ]
        return m
