"""The weight tile buffer of the SD linear layer: the rebuilt int8 weights of one output
tile (array_cols output rows x the layer's length), twice, so that the decoder fills one
bank while the MAC array reads the other (docs/smartdeal.md, "The hardware")."""

import math

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ...engines.smartdeal.spec import SmartDealParams
from ...golden.smartdeal.format import BASIS
from ..shell.block_ram import BlockRAM

__all__ = ["TileBuffer", "WEIGHT_BITS"]

WEIGHT_BITS = 8


class TileBuffer(wiring.Component):
    """Two banks of the weights of array_cols output rows ("lanes"), each row's Ce rows r
    = 0, 1, ... (3 weights each) spread over R memories: row r in memory r mod R, word
    bank·depth + r div R, so that a decoder beat (up to R consecutive rows of one output
    row, starting at any r) writes each memory at most once. depth = ceil(max_reduction /
    3R).

    write (In): `bank`, `lane`, `row` (r of the beat's first row), `rows` (R rows of 3
        weights), `valid` (bit i: row i is written; a prefix), `en`.
    read: `addr` in (bank·depth + r div R), `data` out `read_latency` (2) cycles later:
        for each memory s, for each lane, the 3 weights of its row at that word (the
        caller picks memory r mod R and weight k mod 3).

    Each memory is a BlockRAM read through its output register: read from the block's
    array, its word reached the tile reader 5.8 ns after the clock, and that was a build's
    worst path (8.3 ns into the reader's word register). A lane is 3 whole bytes, so its
    write enables are 3 of the block's byte enables. The decoder writes one bank while the
    reader reads the other, so no word is read in the cycle it is written.
    """

    read_latency = 2

    def __init__(self, params):
        if not isinstance(params, SmartDealParams):
            raise TypeError(f"params must be a SmartDealParams, not {params!r}")
        self.params = params
        R = params.rows_per_cycle
        self.depth = math.ceil(params.max_reduction / (BASIS * R))
        self.row_layout = data.ArrayLayout(signed(WEIGHT_BITS), BASIS)
        self.word_layout = data.ArrayLayout(self.row_layout, params.array_cols)
        super().__init__({
            "write": In(wiring.Signature({
                "bank": Out(1), "lane": Out(range(params.array_cols)),
                "row": Out(16), "rows": Out(data.ArrayLayout(self.row_layout, R)),
                "valid": Out(R), "en": Out(1)})),
            "read": In(wiring.Signature({
                "addr": Out(range(2 * self.depth)),
                "data": In(data.ArrayLayout(self.word_layout, R))})),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        R, cols = p.rows_per_cycle, p.array_cols
        lane_bytes = self.row_layout.size // 8
        w = self.write
        shift = w.row % R if R > 1 else 0             # the memory of the beat's first row
        for s in range(R):
            memory = BlockRAM(self.word_layout.size, 2 * self.depth, output_register=True)
            m.submodules[f"memory{s}"] = memory
            # Memory s takes the beat's row i = (s - shift) mod R, row index w.row + i.
            slot = Signal(range(R), name=f"slot{s}")
            m.d.comb += slot.eq((s + R - shift) % R if R > 1 else 0)
            row = w.rows[slot] if R > 1 else w.rows[0]
            index = w.row + slot
            m.d.comb += [
                memory.waddr.eq(w.bank * self.depth + index // R),
                memory.wdata.eq(row.as_value().replicate(cols)),
                memory.raddr.eq(self.read.addr),
                self.read.data[s].eq(memory.data),
            ]
            ok = Signal(name=f"write{s}")
            m.d.comb += ok.eq(w.en & w.valid.bit_select(slot, 1) & (index // R < self.depth))
            for lane in range(cols):
                m.d.comb += memory.wen[lane * lane_bytes:(lane + 1) * lane_bytes].eq(
                    (ok & (w.lane == lane)).replicate(lane_bytes))
        return m
