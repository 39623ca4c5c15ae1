"""The SD linear layer over the shell's buffers: packed weights -> SD decoder -> weight tile
buffer -> MAC array, activations from `act`, results to `result` (docs/smartdeal.md, "The
hardware")."""

from amaranth.hdl import Const, Module, Mux, ResetInserter, Signal, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ...engines.smartdeal.spec import SmartDealParams, buffers
from ...golden.smartdeal.format import BASIS
from ..common.buffer_reader import BufferReader
from ..common.buffer_writer import BufferWriter
from ..common.lookahead import lookahead
from ..mac.array import MacArray
from ..mac.result_drain import REQUANT_LAYOUT
from ..shell.contract import CYCLE_BITS, ERROR_BITS, RESULT_WORD_BITS, buffer_port_signature
from .decoder import SdDecoder
from .run import SdRun
from .tile_buffer import TileBuffer

__all__ = ["SdLinear"]


class SdLinear(wiring.Component):
    """y = x · W^T for the packed layer in `weights`, M = `tokens` rows of `act`.

    A run (`start`; `tokens` and `requant` stable until `busy` falls):

    1.-2. As SdRun: M outside 1 .. max_tokens is Errors.TOKENS; the layer is checked once
       (the decoder's check_only pass, skipped while `checked` holds, which
       `mem.weights.host_wrote` clears); any error: nothing runs.
    3. Compute: the decoder streams the rebuilt int8 weight rows into the tile buffer, one
       output tile (array_cols rows) a bank; for each output tile, for each token tile
       (array_rows tokens), the layer's L steps go to the MAC array: the act word of the
       step (tokens past M read 0) and the tile's weights at the step (outputs past N read
       0). The decoder fills the other bank meanwhile. The array's output rows are written
       to `result` from word 0 in order: output tile major, then token tile, then row.

    `cycles`: the cycles `busy` was high; `result_words`: the rows written.
    """

    def __init__(self, params):
        if not isinstance(params, SmartDealParams):
            raise TypeError(f"params must be a SmartDealParams, not {params!r}")
        if params.impl != "rebuild":
            self._MustUse__silence = True       # no "created but never used" warning
            raise ValueError(f"params.impl must be 'rebuild', not {params.impl!r}")
        self.params = params
        self.buffers = buffers(params)
        super().__init__({
            "start": In(1),
            "tokens": In(16),
            "requant": In(REQUANT_LAYOUT),
            "busy": Out(1),
            "checked": Out(1),
            "errors": Out(ERROR_BITS),
            "cycles": Out(CYCLE_BITS),
            "result_words": Out(RESULT_WORD_BITS),
            "mem": Out(wiring.Signature({b.name: Out(buffer_port_signature(b))
                                         for b in self.buffers})),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        array_params = p.array()
        rows, cols = p.array_rows, p.array_cols
        specs = {b.name: b for b in self.buffers}

        m.submodules.array = array = MacArray(array_params)
        m.submodules.tiles = tiles = TileBuffer(p)
        # The run's phases, the check and the packed words (SdRun); the decoder is reset at
        # each pass (that flushes what it prefetched for the previous one).
        m.submodules.run = run = SdRun(p)
        decoder = SdDecoder(
            exponent_bits=p.exponent_bits, rows_per_cycle=p.rows_per_cycle,
            max_outputs=p.max_outputs, max_length=p.max_inputs,
            max_block_rows=p.max_block_rows, max_words=specs["weights"].depth)
        restart = run.restart
        m.submodules.decoder = ResetInserter(restart)(decoder)
        header = decoder.header
        # The header's L - 1, L - 2 and outputs - 1, registered: the decisions below compare
        # a counter with them rather than the counter's sum with the header's field (an
        # adder and a 16-bit compare before each: c_k into last_k and w_out into `full`
        # were SmartDeal builds' worst paths, 9.0 and 9.1 ns). The header is parsed well
        # before its first row leaves the decoder, so they are ready by then.
        length_less1 = Signal(16)
        length_less2 = Signal(16)
        outputs_less1 = Signal(16)
        outputs_less2 = Signal(16)
        m.d.sync += [length_less1.eq(header.length - 1), length_less2.eq(header.length - 2),
                     outputs_less1.eq(header.outputs - 1), outputs_less2.eq(header.outputs - 2)]
        computing = run.computing
        done_compute = Signal()
        tokens = run.run_tokens
        wiring.connect(m, run.words, decoder.i)
        wiring.connect(m, wiring.flipped(self.mem.weights), run.weights)
        m.d.comb += [
            run.start.eq(self.start), run.tokens.eq(self.tokens),
            self.busy.eq(run.busy), self.checked.eq(run.checked),
            self.errors.eq(run.errors), self.cycles.eq(run.cycles),
            run.rewind.eq(0), run.compute_done.eq(done_compute),
            decoder.start.eq(run.decoder_start), decoder.words.eq(0),  # the header's count
            decoder.check_only.eq(run.check_only),
            run.decoder_errors.eq(decoder.errors), run.decoder_done.eq(decoder.done),
        ]

        # -- decoder -> tile buffer: output row n goes to lane n mod cols of bank
        # (n div cols) mod 2, its Ce rows r = 0, 1, ... (3 weights each) in order ---------
        full = Signal(2)                     # bank b holds a tile the array has not read
        w_bank = Signal()
        w_lane = Signal(range(cols))
        w_row = Signal(16)                   # Ce row of the output row's next beat
        w_out = Signal(16)                   # output rows written so far
        beat = decoder.o.payload
        accept = decoder.o.valid & decoder.o.ready
        m.d.comb += decoder.o.ready.eq(computing & ~full.bit_select(w_bank, 1))
        m.d.comb += [
            tiles.write.bank.eq(w_bank), tiles.write.lane.eq(w_lane),
            tiles.write.row.eq(w_row), tiles.write.valid.eq(beat.valid),
            tiles.write.en.eq(accept),
        ]
        for i in range(p.rows_per_cycle):
            for j in range(BASIS):
                m.d.comb += tiles.write.rows[i][j].eq(beat.weights[BASIS * i + j])
        count = Signal(range(p.rows_per_cycle + 1))          # the beat's valid rows
        for i in range(p.rows_per_cycle):
            with m.If(beat.valid[i]):
                m.d.comb += count.eq(i + 1)
        set_full = Signal(2)
        # Whether the output row being written is the layer's last: a register that follows
        # w_out (lookahead), so that `full`'s set decision has no 16-bit compare before it.
        end_output = Signal()
        m.d.comb += end_output.eq(accept & beat.end_output & ~restart)
        last_out = lookahead(m, "last_out", w_out == outputs_less1, end_output,
                             Const(0), w_out == outputs_less2)
        with m.If(restart):
            m.d.sync += [w_bank.eq(0), w_lane.eq(0), w_row.eq(0), w_out.eq(0)]
        with m.Elif(accept):
            with m.If(beat.end_output):
                m.d.sync += [w_row.eq(0), w_out.eq(w_out + 1)]
                with m.If((w_lane == cols - 1) | last_out):
                    m.d.comb += set_full.eq(Mux(w_bank, 0b10, 0b01))
                    m.d.sync += [w_lane.eq(0), w_bank.eq(~w_bank)]
                with m.Else():
                    m.d.sync += w_lane.eq(w_lane + 1)
            with m.Else():
                m.d.sync += w_row.eq(w_row + count)

        # -- tile buffer + act -> MAC array: for each output tile (u), token tile (t), step
        # (k < L) one read of each, in lockstep through two equal prefetching readers ----
        act_reader = BufferReader(
            data.StructLayout({"data": specs["act"].width, "last": 1,
                               "act_mask": rows}),
            buffer_depth=specs["act"].depth, buffers=("act",), queue_depth=6,
            read_latency=specs["act"].read_latency)
        R = p.rows_per_cycle
        tile_reader = BufferReader(
            data.StructLayout({"data": tiles.read.data.shape(), "memory": range(R),
                               "weight": range(BASIS), "weight_mask": cols}),
            buffer_depth=2 * tiles.depth, buffers=("tile",), queue_depth=6,
            read_latency=tiles.read_latency)
        m.submodules.act_reader = ResetInserter(restart)(act_reader)
        m.submodules.tile_reader = ResetInserter(restart)(tile_reader)

        c_bank = Signal()
        c_base_u = Signal(16)                # first output of the output tile
        c_base_t = Signal(range(p.max_tokens + rows + 1))   # first token of the token tile
        c_act = Signal(range(specs["act"].depth + p.max_reduction + 1))   # t·max_reduction
        c_k = Signal(16)
        c_word = Signal(range(tiles.depth + 1))      # step k: row k div 3 in memory
        c_memory = Signal(range(R))                  # (k div 3) mod R at word
        c_weight = Signal(range(BASIS))              # (k div 3) div R, weight k mod 3
        issuing = Signal()                   # tiles remain to be issued
        # Tiles issued and not yet out of the array, and whether there are none: a
        # register that follows the count's steps (below), not a compare of two 32-bit
        # counts (which into the run's state was a SmartDeal build's worst path, 9.4 ns).
        tiles_out = Signal(16)
        no_tiles_out = Signal(init=1)
        # Whether this is the last step, token tile, output tile: registers that follow the
        # counters (the compares run a cycle ahead, off the issue path). They are right
        # from the cycle after the header and the token count settle; the first issue
        # comes later, when the decoder has filled a tile.
        step_k = Signal()                    # go: the counters move
        step_t = Signal()
        step_u = Signal()
        last_k = lookahead(m, "last_k", c_k == length_less1, step_k,
                           header.length == 1, c_k == length_less2)
        # c_base_t + rows and + 2·rows kept beside it, so that last_t's decision is one
        # compare (an adder before it was the build's worst path: 10.1 ns, 12 levels).
        c_end_t = Signal.like(c_base_t, name="c_end_t", init=rows)
        c_next_end_t = Signal(range(p.max_tokens + 2 * rows + 1), name="c_next_end_t",
                              init=2 * rows)
        last_t = lookahead(m, "last_t", c_end_t >= tokens, step_t,
                           rows >= tokens, c_next_end_t >= tokens)
        # Likewise c_base_u + cols and + 2·cols (the adder before last_u's compare was a
        # build's worst path: 8.5 ns, 15 levels). The output tiles do not wrap: the run's
        # issue ends after the last.
        c_end_u = Signal(17, name="c_end_u", init=cols)
        c_next_end_u = Signal(17, name="c_next_end_u", init=2 * cols)
        last_u = lookahead(m, "last_u", c_end_u >= header.outputs, step_u,
                           c_next_end_u >= header.outputs, c_next_end_u >= header.outputs)
        go = Signal()
        m.d.comb += go.eq(issuing & full.bit_select(c_bank, 1) & act_reader.req.ready
                          & tile_reader.req.ready)
        act_mask = Signal(rows)
        weight_mask = Signal(cols)
        for i in range(rows):
            m.d.comb += act_mask[i].eq(c_base_t + i < tokens)
        for j in range(cols):
            m.d.comb += weight_mask[j].eq(c_base_u + j < header.outputs)
        m.d.comb += [
            act_reader.req.valid.eq(go), tile_reader.req.valid.eq(go),
            act_reader.req.payload.addr.eq(c_act + c_k),
            act_reader.req.payload.last.eq(last_k),
            act_reader.req.payload.act_mask.eq(act_mask),
            tile_reader.req.payload.addr.eq(c_bank * tiles.depth + c_word),
            tile_reader.req.payload.memory.eq(c_memory),
            tile_reader.req.payload.weight.eq(c_weight),
            tile_reader.req.payload.weight_mask.eq(weight_mask),
            self.mem.act.addr.eq(act_reader.mem.act.addr),
            act_reader.mem.act.data.eq(self.mem.act.data),
            tiles.read.addr.eq(tile_reader.mem.tile.addr),
            tile_reader.mem.tile.data.eq(tiles.read.data),
        ]
        m.d.comb += [step_k.eq(go), step_t.eq(go & last_k), step_u.eq(go & last_k & last_t)]
        clear_full = Signal(2)
        with m.If(restart):
            m.d.sync += [c_bank.eq(0), c_base_u.eq(0), c_base_t.eq(0), c_act.eq(0),
                         c_end_t.eq(rows), c_next_end_t.eq(2 * rows),
                         c_end_u.eq(cols), c_next_end_u.eq(2 * cols),
                         c_k.eq(0), c_word.eq(0), c_memory.eq(0), c_weight.eq(0),
                         issuing.eq(1)]
        with m.Elif(go):
            with m.If(c_weight == BASIS - 1):
                m.d.sync += c_weight.eq(0)
                with m.If(c_memory == R - 1):
                    m.d.sync += [c_memory.eq(0), c_word.eq(c_word + 1)]
                with m.Else():
                    m.d.sync += c_memory.eq(c_memory + 1)
            with m.Else():
                m.d.sync += c_weight.eq(c_weight + 1)
            m.d.sync += c_k.eq(c_k + 1)
            with m.If(last_k):
                m.d.sync += [c_k.eq(0), c_word.eq(0), c_memory.eq(0), c_weight.eq(0)]
                with m.If(last_t):
                    # The bank is read out (its last read is this cycle's): free it.
                    m.d.comb += clear_full.eq(Mux(c_bank, 0b10, 0b01))
                    m.d.sync += [c_base_t.eq(0), c_act.eq(0), c_bank.eq(~c_bank),
                                 c_end_t.eq(rows), c_next_end_t.eq(2 * rows),
                                 c_base_u.eq(c_base_u + cols), c_end_u.eq(c_next_end_u),
                                 c_next_end_u.eq(c_next_end_u + cols)]
                    with m.If(last_u):
                        m.d.sync += issuing.eq(0)
                with m.Else():
                    m.d.sync += [c_base_t.eq(c_base_t + rows),
                                 c_end_t.eq(c_end_t + rows),
                                 c_next_end_t.eq(c_next_end_t + rows),
                                 c_act.eq(c_act + p.max_reduction)]
        with m.If(restart):
            m.d.sync += full.eq(0)
        with m.Else():
            m.d.sync += full.eq((full | set_full) & ~clear_full)

        # The joined beat: act lanes past M and weight lanes past N are 0.
        a, w = act_reader.o, tile_reader.o
        both = a.valid & w.valid
        m.d.comb += [
            array.act.valid.eq(both), array.weight.valid.eq(both),
            a.ready.eq(both & array.act.ready), w.ready.eq(both & array.act.ready),
            array.act.payload.last.eq(a.payload.last),
            array.weight.payload.last.eq(a.payload.last),
            array.precision.eq(8), array.requant.eq(self.requant),
        ]
        act_lanes = a.payload.data
        for i in range(rows):
            lane = act_lanes[i * 8:(i + 1) * 8].as_signed()
            m.d.comb += array.act.payload.data[i].eq(Mux(a.payload.act_mask[i], lane, 0))
        chosen = w.payload.data[w.payload.memory] if R > 1 else w.payload.data[0]
        for j in range(cols):
            m.d.comb += array.weight.payload.data[j].eq(
                Mux(w.payload.weight_mask[j], chosen[j][w.payload.weight], 0))

        # -- MAC array -> result, from word 0 ----------------------------------------------
        m.submodules.writer = writer = BufferWriter(array.o.payload.data.shape(),
                                                    depth=specs["result"].depth,
                                                    sequential=True)
        m.d.comb += [
            writer.restart.eq(self.start & ~self.busy),
            writer.i.valid.eq(array.o.valid),
            writer.i.payload.data.eq(array.o.payload.data),
            array.o.ready.eq(writer.i.ready),
            self.mem.result.addr.eq(writer.mem.addr),
            self.mem.result.data.eq(writer.mem.data),
            self.mem.result.write.eq(writer.mem.write),
            self.result_words.eq(writer.count),
            array.clear_errors.eq(self.start & ~self.busy),
        ]
        tile_in = go & last_k
        tile_out = array.o.valid & array.o.ready & array.o.payload.last
        with m.If(restart):
            m.d.sync += [tiles_out.eq(0), no_tiles_out.eq(1)]
        with m.Else():
            m.d.sync += [
                tiles_out.eq(tiles_out + tile_in - tile_out),
                no_tiles_out.eq(Mux(tile_in & ~tile_out, 0,
                                    Mux(tile_out & ~tile_in, tiles_out == 1, no_tiles_out))),
            ]
        m.d.comb += done_compute.eq(computing & ~restart & ~issuing & no_tiles_out)
        return m
