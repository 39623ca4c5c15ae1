from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ...engines.taylor.spec import TaylorParams
from ..common.fanout import register_copies

# Elements of a row copy (and of an operand) that one copy of their steering flags steers.
ELEMENT_GROUP = 4


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
    by one or go to 0 (and the rows change only while both are 0), so each operand comes
    from a copy of its row that follows its index a cycle behind: while the index is 0
    the copy is the row, and when the index has stepped since the last cycle the copy
    rotates a word. The operand (registered every cycle; the tile takes it with `valid`)
    is then the row's first word at index 0, else the copy's second word if the index
    has just stepped, else its first. What steers the copy and the operand are the
    index's `== 0` and `stepped` flags, registers made from the sequencer's `ta_steps`
    and the two outcomes `ta_zero_if_step`/`ta_zero_if_hold` (and tb's), a copy for
    every ELEMENT_GROUP elements, as the issue itself into the copies' enables (1,024
    flip-flops) was a build's worst path, 11.1 ns; the `== 0` flag is the outcome the
    registered step picks.
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
            "ta_zero_if_step": In(1),
            "ta_zero_if_hold": In(1),
            "tb_zero_if_step": In(1),
            "tb_zero_if_hold": In(1),
            "ta_steps": In(1),
            "tb_steps": In(1),
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
        for name, operand, row, if_step, if_hold, steps in (
                ("a", self.a, self.row_a, self.ta_zero_if_step, self.ta_zero_if_hold,
                 self.ta_steps),
                ("v", self.v, self.row_b, self.tb_zero_if_step, self.tb_zero_if_hold,
                 self.tb_steps)):
            elements = operand.shape().length
            row = row.as_value()
            copy = Signal(len(row), name=f"{name}_copy", reset_less=True)
            rotated = copy.rotate_right(elements * w)    # the copy's next word first
            flags = register_copies(m, f"{name}_flags",
                                    Cat(if_step, if_hold, steps),
                                    -(-p.head_dim // ELEMENT_GROUP), init=0b011)
            for e in range(p.head_dim):
                zero_if_step, zero_if_hold, stepped = flags[e // ELEMENT_GROUP]
                zero = Mux(stepped, zero_if_step, zero_if_hold)
                bits = slice(e * w, (e + 1) * w)
                # The copy's next value; its first word is also the operand's.
                element = Mux(zero, row[bits], Mux(stepped, rotated[bits], copy[bits]))
                m.d.sync += copy[bits].eq(element)
                if e < elements:
                    m.d.sync += operand.as_value()[bits].eq(element)
        return m
