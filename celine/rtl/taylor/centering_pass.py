from amaranth.hdl import Cat, Module, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ...engines.taylor.spec import SHIFT_BITS, TaylorParams
from .centering import CenteringUnit


class CenteringPass(wiring.Component):
    """The centering phase: P in the context memory becomes G_q, one block row a cycle.

    An `issue` of row `sub` of block (ta, tb) reads the block at `addr` (the memory's
    `stored` data arrives the next cycle). The stage after it selects that row's c
    elements of P, the key token sum S_K[ta*r + sub] and the value token sums
    S_V[tb*c ..] into registers, and the centering unit (rtl/taylor/centering.py) turns
    them into c elements of G_q. 2 + CenteringUnit.latency cycles after the issue, `write`
    asks to write them back in place: `context` (sign-extended to a memory element) into row
    `write_row` of block `write_addr`. `busy` while a row is on its way.
    """

    def __init__(self, params: TaylorParams):
        self.params = p = params
        sums = data.ArrayLayout(signed(p.sum_width), p.head_dim)
        super().__init__({
            "issue": In(1),
            "sub": In(range(p.tile_rows)),
            "ta": In(range(p.head_dim // p.tile_rows)),
            "tb": In(range(p.head_dim // p.tile_cols)),
            "addr": In(range(p.blocks)),
            "stored": In(unsigned(p.mac_units * p.element_width)),
            "sums_k": In(sums),
            "sums_v": In(sums),
            "tokens": In(unsigned(p.token_width)),
            "ctx_shift": In(unsigned(SHIFT_BITS)),
            "write": Out(1),
            "write_addr": Out(range(p.blocks)),
            "write_row": Out(range(p.tile_rows)),
            "context": Out(data.ArrayLayout(signed(p.element_width), p.tile_cols)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        r, c, ew = p.tile_rows, p.tile_cols, p.element_width
        m.submodules.unit = unit = CenteringUnit(p)

        # The memory read: the issue's position travels beside it.
        c1_valid = Signal()
        c1_sub = Signal(range(r))
        c1_tb = Signal.like(self.tb)
        c1_addr = Signal.like(self.addr)
        m.d.sync += [c1_valid.eq(self.issue), c1_sub.eq(self.sub), c1_tb.eq(self.tb),
                     c1_addr.eq(self.addr)]
        # S_K[ta*r + sub] is picked in two steps: the r sums of block row ta beside the
        # read, then the row's one. (In one step, a d-to-1 multiplexer from the token sums
        # into c2_sum_k was a Taylor build's worst path: 8.1 ns, 6 levels.) The sums hold
        # still through the centering phase.
        c1_sums_k = Signal(data.ArrayLayout(signed(p.sum_width), r))
        for i in range(r):
            m.d.sync += c1_sums_k[i].eq(self.sums_k[self.ta * r + i])

        # The operands of the row, registered.
        c2_kv = Signal(data.ArrayLayout(signed(ew), c))
        c2_sum_k = Signal(signed(p.sum_width))
        c2_sums_v = Signal(data.ArrayLayout(signed(p.sum_width), c))
        m.d.sync += [
            c2_kv.as_value().eq(self.stored.word_select(c1_sub, c * ew)),
            c2_sum_k.eq(c1_sums_k[c1_sub]),
        ]
        for j in range(c):
            m.d.sync += c2_sums_v[j].eq(self.sums_v[c1_tb * c + j])
        m.d.comb += [
            unit.kv.eq(c2_kv), unit.token_sum_k.eq(c2_sum_k),
            unit.token_sums_v.eq(c2_sums_v), unit.tokens.eq(self.tokens),
            unit.ctx_shift.eq(self.ctx_shift),
        ]

        # (valid, address, row) travel beside the centering unit's pipeline.
        track = [(c1_valid, c1_addr, c1_sub)]
        for k in range(1 + unit.latency):
            stage = (Signal(name=f"cv_{k}"), Signal(range(p.blocks), name=f"ca_{k}"),
                     Signal(range(r), name=f"cs_{k}"))
            m.d.sync += [stage[n].eq(track[-1][n]) for n in range(3)]
            track.append(stage)
        valid, addr, row = track[-1]
        m.d.comb += [
            self.write.eq(valid), self.write_addr.eq(addr), self.write_row.eq(row),
            self.busy.eq(Cat(*(t[0] for t in track)).any()),
        ]
        for j in range(c):
            m.d.comb += self.context[j].eq(unit.context[j])
        return m
