"""The MAC array in the shell: runs tiles from the act/weight buffers into `result`."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, wiring

from ...engines.mac.spec import (DEFAULT_OPERAND_DEPTH, DEFAULT_RESULT_DEPTH, Errors,
                                 MacArrayParams, buffers, registers)
from ..common.buffer_reader import BufferReader
from ..common.buffer_writer import BufferWriter
from ..common.skid import SkidBuffer
from ..shell.contract import engine_signature
from .array import MacArray, operand_layout
from .result_drain import REQUANT_LAYOUT

# Cycles the skid buffer between the reader and the array adds to a run (its first beat).
SKID_LATENCY = 1
# Prefetched words: from 6 on the reader keeps one word a cycle flowing (BufferReader).
READ_QUEUE_DEPTH = 6


class MacShellAdapter(wiring.Component):
    """Runs the MAC array over the shell's buffers (docs/protocol.md, "The MAC array engine").

    On `start`: streams `tiles` tiles of `depth` beats from the `act` and `weight` buffers
    into the array (`last` on every depth-th beat), and writes the output rows to `result`
    from word 0 on, while `busy`. With `grid_cols` 0, tile t is words t*depth .. of both
    buffers; with grid_cols C >= 1 (the grid), tile t is act block t // C (words
    (t // C)*depth ..) against weight block t % C (words weight_base + (t % C)*depth ..),
    so that the act rows go once per run and weights can stay in the buffer across runs. Reads are prefetched into a small FIFO so the array gets a beat per
    cycle (rtl/common's BufferReader reads act and weight as one word); result rows are
    written as they come (a BufferWriter: the array's output is never stalled).
    Rows beyond the result buffer are dropped and flag Errors.OVERFLOW. `cycles` counts the
    cycles of the last run; `result_words` the rows it wrote.
    """

    def __init__(self, params: MacArrayParams, *, operand_depth=DEFAULT_OPERAND_DEPTH,
                 result_depth=DEFAULT_RESULT_DEPTH):
        if not isinstance(params, MacArrayParams):
            raise TypeError(f"params must be a MacArrayParams, not {params!r}")
        self.params = params
        self.buffers = buffers(params, operand_depth=operand_depth, result_depth=result_depth)
        self.register_map = registers(params)
        self.operand_depth = operand_depth
        self.result_depth = result_depth
        super().__init__(engine_signature(self.buffers, self.register_map))

    def elaborate(self, platform):
        m = Module()
        p = self.params
        m.submodules.array = array = MacArray(p)

        ids = self.register_map.index
        regs = self.registers
        depth = regs[ids("depth")][:16]
        tiles = regs[ids("tiles")][:16]
        grid_cols = regs[ids("grid_cols")][:16]
        weight_base = regs[ids("weight_base")][:16]
        # The run's settings through a register of their own: the host's registers fan
        # out from the link, and the array decides a tile's start from them. CONFIGURE
        # lands frames before the RUN that reads them, so the cycle's lag is never seen.
        m.d.sync += [
            array.precision.eq(regs[ids("precision")]),
            array.rps_enable.eq(regs[ids("rps_enable")][0]),
            array.requant.eq(regs[ids("requant")][:REQUANT_LAYOUT.size]),
        ]

        # One read word is an act beat and a weight beat (the two buffers share addresses).
        operands = data.StructLayout({
            "act": operand_layout(p.act_lanes, p.operand_width)["data"].shape,
            "weight": operand_layout(p.weight_lanes, p.operand_width)["data"].shape,
        })
        m.submodules.reader = reader = BufferReader(
            data.StructLayout({"data": operands, "last": 1}),
            buffer_depth=self.operand_depth, buffers=("operands",),
            queue_depth=READ_QUEUE_DEPTH, read_latency=self.buffers[0].read_latency)
        m.submodules.writer = writer = BufferWriter(
            array.o.payload.data.shape(), depth=self.result_depth, sequential=True)

        # The requests are counted down, and every decision is a register: `more` (a
        # word is left to read), `last` (the next word ends its tile), `final` (the next
        # word is in the last tile) and `drained` (the next row with `last` ends the run),
        # so no counter comparison lies between a register and the reader or the array.
        addr = Signal(16)            # the next word's act address
        waddr = Signal(16)           # ... and its weight address
        row_start = Signal(16)       # the grid: the act block the next word is in starts here
        grid = Signal()              # grid_cols != 0, for the run
        cols_left = Signal(16)       # the grid: weight blocks after the next word's one
        col_last = Signal()          # the grid: the next word's tile is its row's last
        beat_left = Signal(16)       # words after the next one in its tile
        tiles_left = Signal(16)      # tiles after the next word's one
        rows_left = Signal(16)       # tiles still to come out after the next to end
        more = Signal()
        last = Signal()
        final = Signal()
        drained = Signal()
        empty = Signal()             # depth or tiles is 0: the run ends at once

        running = Signal()
        m.d.comb += self.busy.eq(running)
        with m.If(self.start & ~running):
            m.d.sync += [
                running.eq(1), self.cycles.eq(0), addr.eq(0), waddr.eq(weight_base),
                row_start.eq(0), grid.eq(grid_cols != 0), cols_left.eq(grid_cols - 1),
                col_last.eq(grid_cols == 1),
                beat_left.eq(depth - 1), last.eq(depth == 1),
                tiles_left.eq(tiles - 1), final.eq(tiles == 1),
                rows_left.eq(tiles - 1), drained.eq(tiles == 1),
                empty.eq((depth == 0) | (tiles == 0)),
                more.eq((depth != 0) & (tiles != 0)),
            ]
        with m.If(running):
            m.d.sync += self.cycles.eq(self.cycles + 1)

        # Words 0 .. depth*tiles-1 of act and weight, `last` on every depth-th.
        request = reader.req
        m.d.comb += [
            request.valid.eq(running & more),
            request.payload.addr.eq(addr),
            request.payload.last.eq(last),
            self.mem.act.addr.eq(reader.mem.operands.addr),
            # The reader reads both buffers in the cycle it takes a request, at the
            # request's address for act; weight's address goes along in step with it.
            self.mem.weight.addr.eq(waddr),
            reader.mem.operands.data.act.eq(self.mem.act.data),
            reader.mem.operands.data.weight.eq(self.mem.weight.data),
        ]
        with m.If(request.valid & request.ready):
            m.d.sync += [addr.eq(addr + 1), waddr.eq(waddr + 1)]
            with m.If(last & grid):
                # The grid: the next weight block, the same act block again; after the
                # row's last tile, the next act block (right after this one) and weight
                # block 0.
                with m.If(col_last):
                    m.d.sync += [waddr.eq(weight_base), row_start.eq(addr + 1),
                                 cols_left.eq(grid_cols - 1), col_last.eq(grid_cols == 1)]
                with m.Else():
                    m.d.sync += [addr.eq(row_start), cols_left.eq(cols_left - 1),
                                 col_last.eq(cols_left == 1)]
            with m.If(last):
                m.d.sync += [beat_left.eq(depth - 1), last.eq(depth == 1),
                             tiles_left.eq(tiles_left - 1), final.eq(tiles_left == 1)]
                with m.If(final):
                    m.d.sync += more.eq(0)
            with m.Else():
                m.d.sync += [beat_left.eq(beat_left - 1), last.eq(beat_left == 1)]

        # Reader -> a skid buffer -> array (both operand streams move together). The skid
        # buffer registers `ready` (a run is SKID_LATENCY cycles longer): the array's
        # decision to take a beat (its tile state through `last_pass` and `issue`)
        # reached the reader queue's pointers and level in the same cycle, across the die
        # (one build's worst path: 11.7 ns, one 5.6 ns net).
        m.submodules.skid = skid = SkidBuffer(reader.o.payload.shape())
        wiring.connect(m, reader.o, skid.i)
        beat = skid.o.payload
        m.d.comb += [
            array.clear_errors.eq(self.start & ~running),
            array.act.valid.eq(skid.o.valid),
            array.weight.valid.eq(skid.o.valid),
            array.act.payload.data.eq(beat.data.act),
            array.weight.payload.data.eq(beat.data.weight),
            array.act.payload.last.eq(beat.last),
            array.weight.payload.last.eq(beat.last),
            skid.o.ready.eq(array.act.ready),   # the array takes both beats together
        ]

        # Array -> result buffer, rows from word 0 on.
        m.d.comb += [
            writer.restart.eq(self.start & ~running),
            writer.i.valid.eq(array.o.valid),
            writer.i.payload.data.eq(array.o.payload.data),
            array.o.ready.eq(writer.i.ready),
            self.mem.result.addr.eq(writer.mem.addr),
            self.mem.result.data.eq(writer.mem.data),
            self.mem.result.write.eq(writer.mem.write),
            self.result_words.eq(writer.count),
        ]
        with m.If(array.o.valid & array.o.payload.last):
            m.d.sync += [rows_left.eq(rows_left - 1), drained.eq(rows_left == 1)]
            with m.If(drained):
                m.d.sync += running.eq(0)
        with m.If(running & empty):
            m.d.sync += running.eq(0)

        m.d.comb += self.errors.eq(Mux(array.errors.framing, Errors.FRAMING, 0)
                                  | Mux(array.errors.precision, Errors.PRECISION, 0)
                                  | Mux(writer.overflow, Errors.OVERFLOW, 0))
        return m
