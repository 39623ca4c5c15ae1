from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ...engines.taylor.spec import TaylorParams


class Serializer(wiring.Component):
    """c finished sums of the MAC tile -> the output lane, one element per cycle.

    On `load`, takes `scores` (the c sums of block column `column`); then offers them in
    order, `valid` with `score` and its output element index `index` = column * c + j,
    one per cycle. A new group arrives every d/r cycles and c <= d/r (mac_units <=
    head_dim), so the previous one has always left: no stall. `busy` while any is held.
    """

    def __init__(self, params: TaylorParams):
        self.params = p = params
        c = p.tile_cols
        super().__init__({
            "load": In(1),
            "scores": In(data.ArrayLayout(signed(p.score_width), c)),
            "column": In(range(p.head_dim // c)),
            "valid": Out(1),
            "score": Out(signed(p.score_width)),
            "index": Out(range(p.head_dim)),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        c = self.params.tile_cols
        held = Signal.like(self.scores)
        held_column = Signal.like(self.column)
        count = Signal(range(c + 1))
        index = Signal(range(c))
        m.d.comb += [
            self.valid.eq(count != 0),
            self.busy.eq(count != 0),
            self.score.eq(held[index]),
            self.index.eq(held_column * c + index),
        ]
        with m.If(count != 0):
            m.d.sync += [count.eq(count - 1), index.eq(index + 1)]
        with m.If(self.load):
            m.d.sync += [held.eq(self.scores), held_column.eq(self.column), count.eq(c),
                         index.eq(0)]
        return m
