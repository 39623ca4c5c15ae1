"""The activation engine's core: an element-wise lookup in a 256-entry int8 table."""

from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ...engines.activation.spec import ELEMENT_BITS, TABLE_SIZE, ActivationParams

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
    256 entries (a memory with a registered read, one block RAM or LUT RAM each), written
    together. A write lands at the end of its cycle; a beat taken in the same cycle reads
    the entry as it was. The table is all zeros after configuration (not after reset).

    The memories' registered outputs are the output register: `o.payload.data` comes
    straight from them, and holding them (`en` low) is how `o` waits while not ready.
    `i.ready` = `~o.valid | o.ready` (one combinational path, from `o.ready`).
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

        valid = Signal()              # o holds a beat
        last = Signal()
        advance = ~valid | self.o.ready
        m.d.comb += [
            self.i.ready.eq(advance),
            self.o.valid.eq(valid),
            self.o.payload.last.eq(last),
        ]
        with m.If(advance):
            m.d.sync += [valid.eq(self.i.valid), last.eq(self.i.payload.last)]

        for lane in range(lanes):
            memory = Memory(shape=ELEMENT_BITS, depth=TABLE_SIZE, init=[])
            m.submodules[f"table_{lane}"] = memory
            write = memory.write_port()
            read = memory.read_port(transparent_for=())
            x = self.i.payload.data[lane].as_unsigned()
            m.d.comb += [
                write.addr.eq(self.table.addr),
                write.data.eq(self.table.data),
                write.en.eq(self.table.en),
                # x + 128 in 8 bits: x's bits with the sign bit inverted.
                read.addr.eq(x ^ TABLE_SIZE // 2),
                read.en.eq(advance),
                self.o.payload.data[lane].eq(read.data),
            ]
        return m
