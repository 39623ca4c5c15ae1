from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ...engines.taylor.spec import LANES, TaylorParams
from .row_loader import beat_layout


class OutputPacker(wiring.Component):
    """Output elements -> 8-lane beats -> the output FIFO -> `o`, with output credits.

    Each `valid` element `value` fills the next lane; the eighth completes a beat, which
    enters the FIFO (`output_fifo_depth` beats) with `last` on the head's final beat
    (N·row_beats beats a head, N = `tokens`; `clear` restarts the count for a new head).
    Credits: `room` is high while the FIFO can take one more row of beats beyond those
    of the rows started (`row_start`) and not yet taken from `o`; a row that starts only
    with `room` never stalls the lane. `pending` while a beat waits in the FIFO.
    """

    def __init__(self, params: TaylorParams):
        self.params = p = params
        super().__init__({
            "valid": In(1),
            "value": In(signed(p.operand_width)),
            "tokens": In(p.token_width),
            "clear": In(1),
            "row_start": In(1),
            "room": Out(1),
            "pending": Out(1),
            "o": Out(stream.Signature(beat_layout(p.operand_width))),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        w = p.operand_width
        m.submodules.fifo = fifo = SyncFIFOBuffered(width=len(self.o.payload.as_value()),
                                                     depth=p.output_fifo_depth)
        packed = Signal(data.ArrayLayout(signed(w), LANES - 1))
        packed_count = Signal(range(LANES))
        head_beats = Signal(range(p.max_tokens * p.row_beats + 1))
        beat = Signal(beat_layout(w))
        m.d.comb += [
            beat.data.as_value().eq(Cat(packed.as_value(), self.value)),
            beat.last.eq(head_beats == self.tokens * p.row_beats - 1),
            fifo.w_data.eq(beat.as_value()),
            fifo.w_en.eq(self.valid & (packed_count == LANES - 1)),
        ]
        with m.If(self.valid):
            m.d.sync += packed_count.eq(packed_count + 1)
            for k in range(LANES - 1):
                with m.If(packed_count == k):
                    m.d.sync += packed[k].eq(self.value)
            with m.If(packed_count == LANES - 1):
                m.d.sync += [packed_count.eq(0), head_beats.eq(head_beats + 1)]
        with m.If(self.clear):
            m.d.sync += head_beats.eq(0)
        m.d.comb += [
            self.o.valid.eq(fifo.r_rdy),
            self.o.payload.eq(fifo.r_data),
            fifo.r_en.eq(self.o.ready),
            self.pending.eq(fifo.r_rdy),
        ]

        # Output credits: beats of started rows not yet taken from `o`.
        reserved = Signal(range(p.output_fifo_depth + 1))
        taken = self.o.valid & self.o.ready
        m.d.sync += reserved.eq(reserved + Mux(self.row_start, p.row_beats, 0) - taken)
        # `room` is a register holding reserved + row_beats <= depth for the value
        # `reserved` takes: the four compares of this cycle's `reserved` with constants,
        # one for each of row_start and taken, picked by them. (The adder and compare
        # after `reserved`, into the sequencer's issue and the row loader's release, were
        # a Taylor build's worst path, 8.6 ns.)
        def fits(delta):
            return reserved <= p.output_fifo_depth - p.row_beats - delta
        room = Signal(init=1)
        m.d.sync += room.eq(Mux(self.row_start, Mux(taken, fits(p.row_beats - 1),
                                                     fits(p.row_beats)),
                                Mux(taken, fits(-1), fits(0))))
        m.d.comb += self.room.eq(room)
        return m
