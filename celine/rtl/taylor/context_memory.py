from amaranth.hdl import Cat, Const, Module, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ...engines.taylor.spec import CONTEXT_READ_LATENCY, TaylorParams
from ..shell.block_ram import BlockRAM


def row_bytes(params):
    """Bytes of one row (c elements) of a block in the memory: a row is a write granule,
    so each starts on a byte (BlockRAM's write enables are bytes)."""
    return -(-params.tile_cols * params.element_width // 8)


class ContextMemory(wiring.Component):
    """The d x d context (P during the K/V phase, G_q after centering) in block RAM: one
    word per r x c block (d²/M words of M elements, row-major inside the block).

    `read_addr` -> `read_data` CONTEXT_READ_LATENCY (2) cycles later, not transparent: the
    block RAMs' own output registers (BlockRAM `output_register`) hold the word, so the
    block's slow clock-to-out never reaches a multiplier. Two writers, never both busy in
    one phase but given a priority all the same: the centering pass writes one row
    (`center_row`) of block `center_addr`, the same c elements `center_data` offered to
    every row (only that row's bytes are enabled); otherwise the MAC tile writes a whole
    block (`tile_*`).

    `reads_during_writes`: the user may read a block in the cycle it writes another row
    of the same block (the centering pass does when a block has more rows than cycles
    from its read to its write). A DP16KD's read of the word its other port writes is
    undefined, and BlockRAM waives the check; such a memory stays a `Memory` (yosys keeps
    the old-word promise with bypass logic) with a register after it in the fabric.
    """

    def __init__(self, params: TaylorParams, *, reads_during_writes=False):
        if not isinstance(reads_during_writes, bool):
            raise TypeError(f"reads_during_writes must be True or False, not "
                            f"{reads_during_writes!r}")
        self.params = p = params
        self.reads_during_writes = reads_during_writes
        self.latency = CONTEXT_READ_LATENCY
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
        row_bits, pitch = c * p.element_width, 8 * row_bytes(p)

        def padded(rows):
            """r rows of row_bits each, every row at a byte boundary of the memory word."""
            return Cat(*(Cat(row, Const(0, pitch - row_bits)) for row in rows))

        waddr = Signal(range(p.blocks))
        wdata = Signal(r * pitch)
        wrows = Signal(r)                  # the rows written (all, or the centering's)
        with m.If(self.center_write):
            m.d.comb += [
                waddr.eq(self.center_addr),
                wdata.eq(padded([self.center_data.as_value()] * r)),
                wrows.eq(Const(1, r) << self.center_row),
            ]
        with m.Elif(self.tile_write):
            m.d.comb += [
                waddr.eq(self.tile_addr),
                wdata.eq(padded(self.tile_data.word_select(i, row_bits) for i in range(r))),
                wrows.eq((1 << r) - 1),
            ]

        if self.reads_during_writes:
            m.submodules.memory = memory = Memory(shape=r * pitch, depth=p.blocks, init=[])
            rd = memory.read_port(transparent_for=())
            wr = memory.write_port(granularity=pitch)
            m.d.comb += [wr.addr.eq(waddr), wr.data.eq(wdata), wr.en.eq(wrows),
                         rd.addr.eq(self.read_addr)]
            word = Signal(r * pitch)
            m.d.sync += word.eq(rd.data)      # the fabric's output register
        else:
            m.submodules.memory = memory = BlockRAM(r * pitch, p.blocks,
                                                    output_register=True)
            m.d.comb += [
                memory.waddr.eq(waddr), memory.wdata.eq(wdata),
                memory.wen.eq(Cat(*(row.replicate(pitch // 8) for row in wrows))),
                memory.raddr.eq(self.read_addr),
            ]
            word = memory.data
        m.d.comb += self.read_data.eq(Cat(*(word.word_select(i, pitch)[:row_bits]
                                            for i in range(r))))
        return m
