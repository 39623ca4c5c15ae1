from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ...engines.taylor.spec import TaylorParams


class TileFeed(wiring.Component):
    """The issue stage of the MAC tile: one block's operands, a cycle after its issue.

    An issue (`issue_kv` or `issue_q`) of block (ta, tb) reads the context memory at
    `addr` = ta * d/c + tb (the memory's data arrives the next cycle) and registers, beside
    it, r elements of `row_a` (K, or Q: elements ta*r ..), c elements of `row_b` (V:
    elements tb*c ..) and the block's control for the MAC tile: `query` (a Q issue),
    `first` (a Q row's first block row, or a K/V block of token 0: the tile restarts its
    sums, or reads the old block as 0) and `last` (the final block row). `valid` is high
    while a block is in this stage.

    The operands are not picked from the rows by `ta` and `tb` (a multiplexer of d/r or
    d/c words: with the slot multiplexer before it, a slot-select copy through it into
    `v` was a Taylor build's worst path, 8.8 ns). The sequencer's counters only ever step
    by one or wrap to 0 (and the rows change only at a block with ta = tb = 0), so each
    operand comes from a rotating copy of its row instead: at index 0 the row's first
    word is taken and the row copied whole; at an index one past the last issue's, the
    copy's second word is taken and the copy rotated a word; at the same index, its
    first word again. The index steps at every issue for the fastest counter (tb for K/V,
    ta for Q) and at the other's wrap to 0 for the slower one.
    """

    def __init__(self, params: TaylorParams):
        self.params = p = params
        w, r, c = p.operand_width, p.tile_rows, p.tile_cols
        row = data.ArrayLayout(signed(w), p.head_dim)
        super().__init__({
            "issue_kv": In(1),
            "issue_q": In(1),
            "ta": In(range(p.head_dim // r)),
            "tb": In(range(p.head_dim // c)),
            "token": In(p.token_width),
            "row_a": In(row),
            "row_b": In(row),
            "addr": Out(range(p.blocks)),
            "valid": Out(1),
            "query": Out(1),
            "first": Out(1),
            "last": Out(1),
            "block": Out(range(p.blocks)),
            "column": Out(range(p.head_dim // c)),
            "a": Out(data.ArrayLayout(signed(w), r)),
            "v": Out(data.ArrayLayout(signed(w), c)),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        w, r, c = p.operand_width, p.tile_rows, p.tile_cols
        ta, tb = self.ta, self.tb
        m.d.comb += self.addr.eq(ta * (p.head_dim // c) + tb)
        m.d.sync += [
            self.valid.eq(self.issue_kv | self.issue_q),
            self.query.eq(self.issue_q),
            self.first.eq(Mux(self.issue_q, ta == 0, self.token == 0)),
            self.last.eq(ta == p.head_dim // r - 1),
            self.block.eq(self.addr),
            self.column.eq(tb),
        ]
        issue = self.issue_kv | self.issue_q
        # (name, operand, row, its index, whether the index stepped at this issue)
        for name, operand, row, index, stepped in (
                ("a", self.a, self.row_a, ta, Mux(self.issue_q, 1, tb == 0)),
                ("v", self.v, self.row_b, tb, Mux(self.issue_q, ta == 0, 1))):
            word = len(operand.as_value())
            row = row.as_value()
            copy = Signal(len(row), name=f"{name}_copy", reset_less=True)
            rotated = copy.rotate_right(word)       # the copy's next word first
            with m.If(issue):
                with m.If(index == 0):
                    m.d.sync += [operand.eq(row[:word]), copy.eq(row)]
                with m.Elif(stepped):
                    m.d.sync += [operand.eq(rotated[:word]), copy.eq(rotated)]
                with m.Else():
                    m.d.sync += operand.eq(copy[:word])
        return m
