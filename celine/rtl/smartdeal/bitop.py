"""The SD linear layer by bit-op computing (impl "bitop"): the packed Ce codes drive shifts
and adds of activations, x·Ce, and only then ·B; no weight is ever rebuilt
(docs/smartdeal.md, "The integer arithmetic"; golden: integer.linear_bitop_int, equal to
integer.linear_int(..., weights="wide"))."""

from amaranth.hdl import Cat, Module, Mux, ResetInserter, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ...engines.smartdeal.spec import ACT_BITS, SmartDealParams, buffers
from ...golden.smartdeal.format import BASIS, LENGTH_BITS
from ..common.buffer_reader import BufferReader
from ..common.buffer_writer import BufferWriter
from ..common.requant import Requantizer
from ..common.skid import SkidBuffer
from ..mac.result_drain import REQUANT_LAYOUT
from ..shell.contract import CYCLE_BITS, ERROR_BITS, RESULT_WORD_BITS, buffer_port_signature
from .bitop_lanes import BasisProducts, ShiftAddLanes, act_rows_layout
from .parser import SdParser
from .run import SdRun

__all__ = ["SdBitop"]


class SdBitop(wiring.Component):
    """y = x · w_int^T for the packed layer in `weights`, M = `tokens` rows of `act`, by
    bit-op computing; the ports, the run and its errors are SdLinear's (SdRun: TOKENS,
    the check once, nothing written on any error; `cycles`, `result_words`).

    The compute phase takes the token tiles (array_rows tokens, one a lane) one after
    the other, and for each streams the whole packed layer through the parser (SdParser,
    rewound at each tile): for output n, its Ce rows r come R a beat, each with the act
    word(s) that hold its 3 steps k = 3r + j of the tile's tokens (spec.buffers: R rows a
    word, so a beat needs the word it starts in and at most the next; a two-word window
    slides over the words, which are read in order, ceil(m0·blocks/R) per output, again
    for each output). Steps past L and tokens past M are 0.

    ShiftAddLanes: t[a][k][j] += s_rk (x[a][3r+j] << f_rk) at each nonzero code, per
    block; BasisProducts: at a block's end, y[a] += sum_{k,j} B[k][j] t[a][k][j] with
    bitop_multipliers multipliers a token lane (the lanes wait if a block is shorter than
    9/that cycles); at an output's end y (exact) goes through the common requantizer
    (when `requant.enable`) to `result`, a word of array_rows token lanes per output,
    from word 0: tile t, output n at word t·N + n.
    """

    def __init__(self, params):
        if not isinstance(params, SmartDealParams):
            raise TypeError(f"params must be a SmartDealParams, not {params!r}")
        if params.impl != "bitop":
            raise ValueError(f"params.impl must be 'bitop', not {params.impl!r}")
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
        E, R, lanes = p.exponent_bits, p.rows_per_cycle, p.array_rows
        steps = p.act_steps                                    # 3R
        specs = {b.name: b for b in self.buffers}

        # -- the run (SdRun) and the parser, rewound for each token tile ------------------
        m.submodules.run = run = SdRun(p)
        parser = SdParser(exponent_bits=E, rows_per_cycle=R, max_outputs=p.max_outputs,
                          max_length=p.max_inputs, max_block_rows=p.max_block_rows,
                          max_words=specs["weights"].depth)
        restart = run.restart
        m.submodules.parser = ResetInserter(restart)(parser)
        wiring.connect(m, run.words, parser.i)
        wiring.connect(m, wiring.flipped(self.mem.weights), run.weights)
        compute_done = Signal()
        rewind = Signal()
        m.d.comb += [
            run.start.eq(self.start), run.tokens.eq(self.tokens),
            self.busy.eq(run.busy), self.checked.eq(run.checked),
            self.errors.eq(run.errors), self.cycles.eq(run.cycles),
            run.rewind.eq(rewind), run.compute_done.eq(compute_done),
            parser.start.eq(run.decoder_start), parser.words.eq(0),   # the header's count
            parser.check_only.eq(run.check_only),
            run.decoder_errors.eq(parser.errors), run.decoder_done.eq(parser.done),
        ]
        run_start = Signal()
        m.d.comb += run_start.eq(self.start & ~run.busy)
        computing, tokens = run.computing, run.run_tokens
        header = parser.header

        # -- the layer's sizes, taken once a run from the first tile's header: N, L, and
        # the act words an output reads, ceil(m0·blocks / R) (the product by shifts and
        # adds, a bit of `blocks` a cycle) ------------------------------------------------
        max_blocks = -(-p.max_inputs // BASIS)
        rows_bits = (p.max_block_rows * max_blocks).bit_length()
        outputs = Signal(LENGTH_BITS)
        length = Signal(LENGTH_BITS)
        words_per_output = Signal(rows_bits)
        taken, multiplying, layer_ready = Signal(), Signal(), Signal()
        product = Signal(rows_bits)
        addend = Signal(rows_bits)
        multiplier = Signal(LENGTH_BITS)
        with m.If(run_start):
            m.d.sync += [taken.eq(0), layer_ready.eq(0)]
        with m.Elif(computing & parser.header_valid & ~taken):
            m.d.sync += [taken.eq(1), outputs.eq(header.outputs), length.eq(header.length),
                         product.eq(0), addend.eq(header.block_rows),
                         multiplier.eq(header.blocks_per_output), multiplying.eq(1)]
        with m.If(multiplying):
            with m.If(multiplier == 0):
                m.d.sync += [multiplying.eq(0), layer_ready.eq(1),
                             words_per_output.eq((product + R - 1) >> (R.bit_length() - 1))]
            with m.Else():
                with m.If(multiplier[0]):
                    m.d.sync += product.eq(product + addend)
                m.d.sync += [addend.eq(addend << 1), multiplier.eq(multiplier >> 1)]

        # -- the token tile ------------------------------------------------------------------
        tile_token = Signal(range(p.max_tokens + lanes + 1))       # its first token
        tile_base = Signal(range(specs["act"].depth + p.act_tile_words + 1))   # first word
        token_mask = Signal(lanes)
        issuing = Signal()                   # beats of the run remain
        for a in range(lanes):
            m.d.sync += token_mask[a].eq(tile_token + a < tokens)

        # -- act words: for each output, words 0 .. W-1 of the tile, with the steps < L ----
        reader = BufferReader(data.StructLayout({"data": specs["act"].width, "steps": steps}),
                              buffer_depth=specs["act"].depth, buffers=("act",),
                              queue_depth=5)
        m.submodules.act_reader = ResetInserter(restart)(reader)
        generating, generated = Signal(), Signal()
        word = Signal(rows_bits)
        output = Signal(LENGTH_BITS)
        steps_left = Signal(signed(LENGTH_BITS + 2))            # L - 3R·word
        with m.If(restart):
            m.d.sync += [generating.eq(0), generated.eq(0)]
        with m.Elif(computing & layer_ready & ~generated):
            m.d.sync += [generating.eq(1), generated.eq(1), word.eq(0), output.eq(0),
                         steps_left.eq(length)]
        m.d.comb += [
            reader.req.valid.eq(generating & ~restart),
            reader.req.payload.addr.eq(tile_base + Mux(steps_left > 0, word, 0)),
            reader.req.payload.steps.eq(Cat(*[steps_left > q for q in range(steps)])),
            self.mem.act.addr.eq(reader.mem.act.addr),
            reader.mem.act.data.eq(self.mem.act.data),
        ]
        with m.If(reader.req.valid & reader.req.ready):
            with m.If(word == words_per_output - 1):
                m.d.sync += [word.eq(0), steps_left.eq(length), output.eq(output + 1)]
                with m.If(output == outputs - 1):
                    m.d.sync += generating.eq(0)
            with m.Else():
                m.d.sync += [word.eq(word + 1), steps_left.eq(steps_left - steps)]

        # -- the window: two act words (masked), slid as the beats consume their rows -------
        rows_shape = act_rows_layout(p)
        slots = [Signal(rows_shape, name=f"slot{s}") for s in range(2)]
        full = [Signal(name=f"slot{s}_full") for s in range(2)]
        incoming = Signal(rows_shape)
        got = reader.o.payload
        for q in range(steps):
            i, j = divmod(q, BASIS)
            for a in range(lanes):
                lane = got.data[(q * lanes + a) * ACT_BITS:(q * lanes + a + 1) * ACT_BITS]
                m.d.comb += incoming[i][j][a].eq(
                    Mux(got.steps[q] & token_mask[a], lane.as_signed(), 0))

        # The parser's beats through a skid buffer (its `ready` registered: the parser's
        # queue logic hangs on it).
        skid = SkidBuffer(parser.o.payload.shape())
        m.submodules.beats = ResetInserter(restart)(skid)
        wiring.connect(m, parser.o, skid.i)
        beats = skid.o
        beat = beats.payload
        offset = Signal(range(R))                 # the beat's first row, mod R
        count = Signal(range(R + 1))              # the beat's valid rows (a prefix)
        for i in range(R):
            with m.If(beat.valid[i]):
                m.d.comb += count.eq(i + 1)
        reach = Signal(range(2 * R + 1))
        m.d.comb += reach.eq(offset + count)
        second = Signal()                         # the beat ends in the second word
        m.d.comb += second.eq(reach > R)
        ready = Signal()
        m.d.comb += ready.eq(full[0] & (~second | full[1]))

        m.submodules.shift_add = shift_add = ShiftAddLanes(p)
        m.submodules.products = products = BasisProducts(p)
        take = Signal()
        m.d.comb += [
            shift_add.valid.eq(beats.valid & ready),
            beats.ready.eq(shift_add.ready & ready),
            take.eq(beats.valid & beats.ready),
            shift_add.codes.eq(beat.rows),
            shift_add.end_block.eq(beat.end_block),
            shift_add.end_output.eq(beat.end_output),
            shift_add.basis.eq(beat.basis),
        ]
        for i in range(R):
            # Row i of the beat is row offset + i of the window's two words.
            choice = slots[0][i]
            for o in range(1, R):
                position = o + i
                row = slots[0][position] if position < R else slots[1][position - R]
                choice = Mux(offset == o, row, choice)
            m.d.comb += shift_add.x[i].eq(choice)

        # Words consumed: at an output's end every word it touched, else the first when
        # the beat reaches its end.
        pop1, pop2 = Signal(), Signal()
        m.d.comb += [pop1.eq(take & (beat.end_output | (reach >= R))),
                     pop2.eq(take & beat.end_output & second)]
        kept0 = Signal()                          # slot 0 full after the pops
        kept1 = Signal()
        m.d.comb += [kept0.eq(Mux(pop2, 0, Mux(pop1, full[1], full[0]))),
                     kept1.eq(full[1] & ~pop1)]
        m.d.comb += reader.o.ready.eq(~kept1)
        push = reader.o.valid & reader.o.ready
        with m.If(pop1 & ~pop2):
            m.d.sync += slots[0].eq(slots[1])
        m.d.sync += [full[0].eq(kept0 | push), full[1].eq(kept1 | (push & kept0))]
        with m.If(push):
            with m.If(kept0):
                m.d.sync += slots[1].eq(incoming)
            with m.Else():
                m.d.sync += slots[0].eq(incoming)
        with m.If(take):
            m.d.sync += offset.eq(Mux(beat.end_output, 0, reach % R if R > 1 else 0))
        with m.If(restart):
            m.d.sync += [full[0].eq(0), full[1].eq(0), offset.eq(0)]

        # -- the tiles: the layer's last beat ends a tile; the next one rewinds the parser --
        with m.If(run_start):
            m.d.sync += [tile_token.eq(0), tile_base.eq(0), issuing.eq(1)]
        m.d.sync += rewind.eq(0)
        with m.If(take & beat.last):
            with m.If(tile_token + lanes >= tokens):
                m.d.sync += issuing.eq(0)
            with m.Else():
                m.d.sync += [rewind.eq(1), tile_token.eq(tile_token + lanes),
                             tile_base.eq(tile_base + p.act_tile_words)]

        # -- ·B, then the requantizer and `result` ---------------------------------------------
        m.d.comb += [
            shift_add.hold_busy.eq(products.hold_busy),
            products.load.eq(shift_add.block_valid),
            products.t.eq(shift_add.block_t),
            products.basis.eq(shift_add.block_basis),
            products.end_output.eq(shift_add.block_end_output),
        ]
        word_shape = data.ArrayLayout(signed(p.result_width), lanes)
        m.submodules.writer = writer = BufferWriter(word_shape, depth=specs["result"].depth,
                                                    sequential=True)
        valid = Signal(Requantizer.latency)
        m.d.sync += valid.eq(Cat(products.o_valid, valid[:-1]))
        for a in range(lanes):
            requant = Requantizer(in_width=p.result_width)
            m.submodules[f"requant{a}"] = requant
            m.d.comb += [
                requant.en.eq(1), requant.x.eq(products.o_y[a]),
                requant.multiplier.eq(self.requant.multiplier),
                requant.shift.eq(self.requant.shift),
                requant.bypass.eq(~self.requant.enable),
                writer.i.payload.data[a].eq(requant.y),
            ]
        m.d.comb += [
            writer.restart.eq(run_start),
            writer.i.valid.eq(valid[-1]),
            self.mem.result.addr.eq(writer.mem.addr),
            self.mem.result.data.eq(writer.mem.data),
            self.mem.result.write.eq(writer.mem.write),
            self.result_words.eq(writer.count),
            compute_done.eq(computing & ~restart & ~rewind & ~issuing & ~shift_add.busy
                            & ~products.busy & ~valid.any()),
        ]
        return m
