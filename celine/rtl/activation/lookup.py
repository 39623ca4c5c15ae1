"""The activation engine's core: an element-wise lookup in a 256-entry int8 table."""

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ...engines.activation.spec import ELEMENT_BITS, LOOKUP_LATENCY, TABLE_SIZE, ActivationParams
from ..shell.block_ram import BlockRAM

__all__ = ["beat_layout", "TABLE_WRITE", "TableLookup"]


def beat_layout(lanes):
    """One stream beat: `lanes` int8 elements and `last`."""
    return data.StructLayout({"data": data.ArrayLayout(signed(ELEMENT_BITS), lanes),
                              "last": 1})


# The table-write port, as its driver sees it: entry `addr` (the input x + 128) takes
# `data` (the int8 output's bits) at the end of a cycle with `en` high.
TABLE_WRITE = wiring.Signature({
    "addr": Out(range(TABLE_SIZE)),
    "data": Out(ELEMENT_BITS),
    "en": Out(1),
})


class TableLookup(wiring.Component):
    """y = table[x + 128] for each lane of each beat (docs/activation.md, "The hardware").

    `i`, `o`: streams of beats of `lanes` int8 elements and `last` (passed through). A
    beat taken from `i` is offered on `o` one cycle later; one beat a cycle while `o` is
    ready; full valid/ready (nothing lost or duplicated under any pattern).

    `table`: the table-write port (TABLE_WRITE). Every lane holds its own copy of the
    256 entries (a BlockRAM each, one block RAM), written together. A write lands at the
    end of its cycle. A beat taken in the cycle that writes the entry it reads gets an
    undefined value on the FPGA (a block's read of the word its other port writes; the
    simulators give the old entry), so the table is loaded before any beat (the shell
    adapter does). The table is all zeros after configuration (not after reset).

    A beat taken from `i` is offered on `o` LOOKUP_LATENCY (2) cycles later: the table is
    read through the block's own output register, which `o.payload.data` comes straight
    from (a block's array read is 5.8 ns after the clock, its output register 1 ns: the
    array read into the next register was an activation build's worst path, 8.1 ns). The
    two stages advance together (`advance`: the blocks' read and output clock enables),
    so `o` waits by holding both; `i.ready` = `advance` = `~o.valid | o.ready` (one
    combinational path, from `o.ready`).
    """

    def __init__(self, params: ActivationParams):
        if not isinstance(params, ActivationParams):
            raise TypeError(f"params must be an ActivationParams, not {params!r}")
        self.params = params
        layout = beat_layout(params.lanes)
        super().__init__({
            "i": In(stream.Signature(layout)),
            "o": Out(stream.Signature(layout)),
            "table": In(TABLE_WRITE),
        })

    def elaborate(self, platform):
        m = Module()
        lanes = self.params.lanes

        # valid[k], last[k]: stage k holds a beat (0: the block's array read, 1: its
        # output register, which `o` shows).
        valid = [Signal(name=f"valid{k}") for k in range(LOOKUP_LATENCY)]
        last = [Signal(name=f"last{k}") for k in range(LOOKUP_LATENCY)]
        advance = Signal()
        m.d.comb += [
            advance.eq(~valid[-1] | self.o.ready),
            self.i.ready.eq(advance),
            self.o.valid.eq(valid[-1]),
            self.o.payload.last.eq(last[-1]),
        ]
        with m.If(advance):
            m.d.sync += [valid[0].eq(self.i.valid), last[0].eq(self.i.payload.last),
                         *[valid[k].eq(valid[k - 1]) for k in range(1, LOOKUP_LATENCY)],
                         *[last[k].eq(last[k - 1]) for k in range(1, LOOKUP_LATENCY)]]

        for lane in range(lanes):
            table = BlockRAM(ELEMENT_BITS, TABLE_SIZE, output_register=True, read_enable=True)
            m.submodules[f"table_{lane}"] = table
            x = self.i.payload.data[lane].as_unsigned()
            m.d.comb += [
                table.waddr.eq(self.table.addr),
                table.wdata.eq(self.table.data),
                table.wen.eq(self.table.en),
                # x + 128 in 8 bits: x's bits with the sign bit inverted.
                table.raddr.eq(x ^ TABLE_SIZE // 2),
                table.ren.eq(advance),
                self.o.payload.data[lane].eq(table.data),
            ]
        return m
