"""The MAC array in the shell: runs tiles from the act/weight buffers into `result`."""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered

from ...engines.mac.spec import (DEFAULT_OPERAND_DEPTH, DEFAULT_RESULT_DEPTH, Errors,
                                 MacArrayParams, buffers, registers)
from ..shell.contract import engine_signature
from .array import MacArray
from .result_drain import REQUANT_LAYOUT


class MacShellAdapter(wiring.Component):
    """Runs the MAC array over the shell's buffers (docs/protocol.md, "The MAC array engine").

    On `start`: streams words 0 .. tiles*depth-1 of the `act` and `weight` buffers into
    the array (`last` on every depth-th), and writes the output rows to `result` from word 0
    on, while `busy`. Reads are prefetched into a small FIFO so the array gets a beat per
    cycle; result rows are written as they come (the array's output is never stalled).
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
        depth = regs[ids("depth")]
        tiles = regs[ids("tiles")]
        total = Signal(32)
        m.d.comb += [
            array.precision.eq(regs[ids("precision")]),
            array.rps_enable.eq(regs[ids("rps_enable")][0]),
            array.requant.eq(regs[ids("requant")][:REQUANT_LAYOUT.size]),
        ]

        act_bits = p.act_lanes * p.operand_width
        weight_bits = p.weight_lanes * p.operand_width
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=act_bits + weight_bits + 1, depth=4)

        issued = Signal(32)          # words read so far
        in_beat = Signal(32)         # position of the next word within its tile
        inflight = Signal()          # a read whose data arrives this cycle
        inflight_last = Signal()
        tiles_done = Signal(32)
        overflow = Signal()

        running = Signal()
        m.d.comb += self.busy.eq(running)
        with m.If(self.start & ~running):
            m.d.sync += [
                running.eq(1), issued.eq(0), in_beat.eq(0), tiles_done.eq(0),
                self.cycles.eq(0), self.result_words.eq(0), overflow.eq(0),
                total.eq(depth[:16] * tiles[:16]),
            ]
        with m.If(running):
            m.d.sync += self.cycles.eq(self.cycles + 1)

        # Read words into the FIFO, never more than it can take (counting the read in flight).
        room = fifo.level + inflight < fifo.depth - 1
        read = running & (issued < total) & room
        m.d.comb += [self.mem.act.addr.eq(issued), self.mem.weight.addr.eq(issued)]
        m.d.sync += [inflight.eq(read), inflight_last.eq(in_beat + 1 == depth)]
        with m.If(read):
            m.d.sync += issued.eq(issued + 1)
            m.d.sync += in_beat.eq(Mux(in_beat + 1 == depth, 0, in_beat + 1))
        m.d.comb += [
            fifo.w_en.eq(inflight),
            fifo.w_data.eq(Cat(self.mem.act.data, self.mem.weight.data,
                               inflight_last)),
        ]

        # FIFO -> array (both operand streams move together).
        beat = fifo.r_data
        m.d.comb += [
            array.clear_errors.eq(self.start & ~running),
            array.act.valid.eq(fifo.r_rdy),
            array.weight.valid.eq(fifo.r_rdy),
            array.act.payload.data.eq(beat[:act_bits]),
            array.weight.payload.data.eq(beat[act_bits:act_bits + weight_bits]),
            array.act.payload.last.eq(beat[-1]),
            array.weight.payload.last.eq(beat[-1]),
            fifo.r_en.eq(array.act.ready),       # the array takes both beats together
        ]

        # Array -> result buffer.
        m.d.comb += [
            array.o.ready.eq(1),
            self.mem.result.addr.eq(self.result_words),
            self.mem.result.data.eq(array.o.payload.data.as_value()),
            self.mem.result.write.eq(array.o.valid & (self.result_words < self.result_depth)),
        ]
        with m.If(array.o.valid):
            with m.If(self.result_words < self.result_depth):
                m.d.sync += self.result_words.eq(self.result_words + 1)
            with m.Else():
                m.d.sync += overflow.eq(1)
            with m.If(array.o.payload.last):
                m.d.sync += tiles_done.eq(tiles_done + 1)
                with m.If(tiles_done + 1 == tiles):
                    m.d.sync += running.eq(0)
        with m.If(running & (total == 0)):
            m.d.sync += running.eq(0)

        m.d.comb += self.errors.eq(Mux(array.errors.framing, Errors.FRAMING, 0)
                                  | Mux(array.errors.precision, Errors.PRECISION, 0)
                                  | Mux(overflow, Errors.OVERFLOW, 0))
        return m
