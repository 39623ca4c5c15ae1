from amaranth.hdl import Const, Module, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ...engines.taylor.spec import TaylorParams


class ContextMemory(wiring.Component):
    """The d x d context (P during the K/V phase, G_q after centering) in block RAM: one
    word per r x c block (d²/M words of M elements, row-major inside the block).

    `read_addr` -> `read_data` the next cycle (not transparent). Two writers, never both
    busy in one phase but given a priority all the same: the centering pass writes one
    row (`center_row`) of block `center_addr`, the same c elements `center_data` offered
    to every row (only that row's granule is enabled); otherwise the MAC tile writes a
    whole block (`tile_*`).
    """

    def __init__(self, params: TaylorParams):
        self.params = p = params
        word = unsigned(p.mac_units * p.element_width)
        super().__init__({
            "read_addr": In(range(p.blocks)),
            "read_data": Out(word),
            "center_write": In(1),
            "center_addr": In(range(p.blocks)),
            "center_row": In(range(p.tile_rows)),
            "center_data": In(data.ArrayLayout(signed(p.element_width), p.tile_cols)),
            "tile_write": In(1),
            "tile_addr": In(range(p.blocks)),
            "tile_data": In(word),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        r, c = p.tile_rows, p.tile_cols
        m.submodules.memory = memory = Memory(shape=unsigned(p.mac_units * p.element_width),
                                              depth=p.blocks, init=[])
        rd = memory.read_port(transparent_for=())
        wr = memory.write_port(granularity=c * p.element_width)
        m.d.comb += [rd.addr.eq(self.read_addr), self.read_data.eq(rd.data)]
        with m.If(self.center_write):
            m.d.comb += [
                wr.addr.eq(self.center_addr),
                wr.data.eq(self.center_data.as_value().replicate(r)),
                wr.en.eq(Const(1, r) << self.center_row),
            ]
        with m.Elif(self.tile_write):
            m.d.comb += [
                wr.addr.eq(self.tile_addr),
                wr.data.eq(self.tile_data),
                wr.en.eq(Const((1 << r) - 1, r)),
            ]
        return m
