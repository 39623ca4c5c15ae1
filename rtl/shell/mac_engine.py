from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..mac.array import MacArray
from ..mac.params import MacArrayParams
from ..mac.result_drain import REQUANT_LAYOUT
from .link import BufferSpec

REGISTERS = {"depth": 0, "tiles": 1, "precision": 2, "rps_enable": 3, "requant": 4}


def _word_bytes(bits):
    return (bits + 7) // 8


class MacEngine(wiring.Component):
    """Runs the MAC array over the shell's buffers (docs/protocol.md, "The MAC array engine").

    On `start`: streams words 0 .. tiles*depth-1 of the `act` and `weight` buffers into
    the array (`last` on every depth-th), and writes the output rows to `result` from word 0
    on, while `busy`. Reads are prefetched into a small FIFO so the array gets a beat per
    cycle; result rows are written as they come (the array's output is never stalled).
    Rows beyond the result buffer are dropped and flag `errors` bit 2. `cycles` counts the
    cycles of the last run; `result_words` the rows it wrote.
    """

    def __init__(self, params: MacArrayParams, *, operand_depth=512, result_depth=512):
        self.params = params
        self.operand_depth = operand_depth
        self.result_depth = result_depth
        p = params
        act_bits = p.act_lanes * p.operand_width
        weight_bits = p.weight_lanes * p.operand_width
        result_bits = p.weight_lanes * p.result_width
        self.buffers = [
            BufferSpec("act", _word_bytes(act_bits), operand_depth, True),
            BufferSpec("weight", _word_bytes(weight_bits), operand_depth, True),
            BufferSpec("result", _word_bytes(result_bits), result_depth, False),
        ]
        super().__init__({
            "start": In(1),
            "busy": Out(1),
            "registers": In(data.ArrayLayout(32, len(REGISTERS))),
            "act_addr": Out(range(operand_depth)),
            "act_data": In(8 * self.buffers[0].word_bytes),
            "weight_addr": Out(range(operand_depth)),
            "weight_data": In(8 * self.buffers[1].word_bytes),
            "result_addr": Out(range(result_depth)),
            "result_data": Out(8 * self.buffers[2].word_bytes),
            "result_write": Out(1),
            "errors": Out(8),
            "cycles": Out(32),
            "result_words": Out(16),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        m.submodules.array = array = MacArray(p)

        regs = self.registers
        depth = regs[REGISTERS["depth"]]
        total = Signal(32)
        m.d.comb += [
            array.precision.eq(regs[REGISTERS["precision"]]),
            array.rps_enable.eq(regs[REGISTERS["rps_enable"]][0]),
            array.requant.eq(regs[REGISTERS["requant"]][:REQUANT_LAYOUT.size]),
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
                total.eq(depth[:16] * regs[REGISTERS["tiles"]][:16]),
            ]
        with m.If(running):
            m.d.sync += self.cycles.eq(self.cycles + 1)

        # Read words into the FIFO, never more than it can take (counting the read in flight).
        room = fifo.level + inflight < fifo.depth - 1
        read = running & (issued < total) & room
        m.d.comb += [self.act_addr.eq(issued), self.weight_addr.eq(issued)]
        m.d.sync += [inflight.eq(read), inflight_last.eq(in_beat + 1 == depth)]
        with m.If(read):
            m.d.sync += issued.eq(issued + 1)
            m.d.sync += in_beat.eq(Mux(in_beat + 1 == depth, 0, in_beat + 1))
        m.d.comb += [
            fifo.w_en.eq(inflight),
            fifo.w_data.eq(Cat(self.act_data[:act_bits], self.weight_data[:weight_bits],
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
            self.result_addr.eq(self.result_words),
            self.result_data.eq(array.o.payload.data.as_value()),
            self.result_write.eq(array.o.valid & (self.result_words < self.result_depth)),
        ]
        with m.If(array.o.valid):
            with m.If(self.result_words < self.result_depth):
                m.d.sync += self.result_words.eq(self.result_words + 1)
            with m.Else():
                m.d.sync += overflow.eq(1)
            with m.If(array.o.payload.last):
                m.d.sync += tiles_done.eq(tiles_done + 1)
                with m.If(tiles_done + 1 == regs[REGISTERS["tiles"]]):
                    m.d.sync += running.eq(0)
        with m.If(running & (total == 0)):
            m.d.sync += running.eq(0)

        m.d.comb += self.errors.eq(Cat(array.errors.framing, array.errors.precision, overflow))
        return m
