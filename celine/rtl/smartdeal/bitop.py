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

WINDOW = range(4)           # the act words the window holds (a ring)


class SdBitop(wiring.Component):
    """y = x · w_int^T for the packed layer in `weights`, M = `tokens` rows of `act`, by
    bit-op computing; the ports, the run and its errors are SdLinear's (SdRun: TOKENS,
    the check once, nothing written on any error; `cycles`, `result_words`).

    The compute phase takes the token tiles (array_rows tokens, one a lane) one after
    the other, and for each streams the whole packed layer through the parser (SdParser,
    rewound at each tile, behind a skid buffer): for output n, its Ce rows r come R a
    beat, each with the act word(s) holding its steps k = 3r + j of the tile's tokens
    (spec.buffers: R rows a word, so a beat needs the word it starts in and at most the
    next). The words are read in order, ceil(m0·blocks/R) for each output (m0·blocks
    from the header by shifts and adds, once a run), into a ring of four words (written
    in place, read from the oldest: no word moves) that the beats consume; steps past L and tokens past M read 0.

    ShiftAddLanes: t[a][k][j] += s_rk (x[a][3r+j] << f_rk) at each nonzero code, per
    block; BasisProducts: at a block's end, y[a] += sum_{k,j} B[k][j] t[a][k][j] with
    bitop_multipliers (P) multipliers a token lane, 9/P cycles a block (a beat that ends
    a block waits until 9/P cycles after the previous block's end: neither pipeline ever
    stalls); at an output's end y (exact) goes through the common requantizer (when
    `requant.enable`) to `result`, a word of array_rows token lanes per output, from
    word 0: tile t, output n at word t·N + n. The only multipliers are the P a lane and
    the requantizers'.
    """

    def __init__(self, params):
        if not isinstance(params, SmartDealParams) or params.impl != "bitop":
            self._MustUse__silence = True       # no "created but never used" warning
            if not isinstance(params, SmartDealParams):
                raise TypeError(f"params must be a SmartDealParams, not {params!r}")
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
        last_word = Signal(rows_bits)          # the act words an output reads, - 1
        single_word, single_output = Signal(), Signal()
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
                words = (product + R - 1) >> (R.bit_length() - 1)
                m.d.sync += [multiplying.eq(0), layer_ready.eq(1), last_word.eq(words - 1),
                             single_word.eq(words == 1), single_output.eq(outputs == 1)]
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

        # -- act words: for each output, words 0 .. W-1 of the tile, each with its steps
        # below L (a word past them: any address, here the tile's first) ------------------
        reader = BufferReader(data.StructLayout({"data": specs["act"].width, "steps": steps}),
                              buffer_depth=specs["act"].depth, buffers=("act",),
                              queue_depth=6, read_latency=specs["act"].read_latency)
        m.submodules.act_reader = ResetInserter(restart)(reader)
        generating, generated = Signal(), Signal()
        words_left = Signal(rows_bits)        # the output's words after this one
        outputs_left = Signal(LENGTH_BITS)    # the outputs after this one
        last, final = Signal(), Signal()      # registered: words_left == 0, outputs_left == 0
        steps_left = Signal(signed(LENGTH_BITS + 2))          # L - 3R·(the word's index)
        address = Signal.like(reader.req.payload.addr)        # registered request
        step_mask = Signal(steps)

        def point(left, at):
            """The request's address and steps for `left` = L - 3R·index, `at` = its word."""
            return [address.eq(Mux(left > 0, at, tile_base)),
                    step_mask.eq(Cat(*[left > q for q in range(steps)]))]

        def first_word():
            return [words_left.eq(last_word), last.eq(single_word), steps_left.eq(length),
                    *point(length, tile_base)]

        with m.If(restart):
            m.d.sync += [generating.eq(0), generated.eq(0)]
        with m.Elif(computing & layer_ready & ~generated):
            m.d.sync += [generating.eq(1), generated.eq(1), outputs_left.eq(outputs - 1),
                         final.eq(single_output), *first_word()]
        m.d.comb += [
            reader.req.valid.eq(generating & ~restart),
            reader.req.payload.addr.eq(address),
            reader.req.payload.steps.eq(step_mask),
            self.mem.act.addr.eq(reader.mem.act.addr),
            reader.mem.act.data.eq(self.mem.act.data),
        ]
        with m.If(reader.req.valid & reader.req.ready):
            with m.If(last):
                m.d.sync += first_word()
                with m.If(final):
                    m.d.sync += generating.eq(0)
                with m.Else():
                    m.d.sync += [outputs_left.eq(outputs_left - 1),
                                 final.eq(outputs_left == 1)]
            with m.Else():
                left = steps_left - steps
                m.d.sync += [words_left.eq(words_left - 1), last.eq(words_left == 1),
                             steps_left.eq(left), *point(left, address + 1)]

        # -- the window: a ring of four act words (masked), in order from `head`; a beat
        # reads the first two, and the words it is done with leave -----------------------
        rows_shape = act_rows_layout(p)
        ring = len(WINDOW)
        slots = [Signal(rows_shape, name=f"slot{s}") for s in WINDOW]
        head = Signal(range(ring))                # the oldest word
        tail = Signal(ring, init=1)               # where the next word goes (one-hot)
        level = Signal(range(ring + 1))           # words held
        room = Signal(init=1)                     # registered: level < ring
        incoming = Signal(rows_shape)
        got = reader.o.payload
        for q in range(steps):
            i, j = divmod(q, BASIS)
            for a in range(lanes):
                lane = got.data[(q * lanes + a) * ACT_BITS:(q * lanes + a + 1) * ACT_BITS]
                m.d.comb += incoming[i][j][a].eq(
                    Mux(got.steps[q] & token_mask[a], lane.as_signed(), 0))
        m.d.comb += reader.o.ready.eq(room)
        push = Signal()
        m.d.comb += push.eq(reader.o.valid & room)
        for n, slot in enumerate(slots):
            with m.If(push & tail[n]):
                m.d.sync += slot.eq(incoming)
        first, following = Signal(rows_shape), Signal(rows_shape)
        m.d.comb += [first.eq(slots[0]), following.eq(slots[1])]
        for n in WINDOW[1:]:
            with m.If(head == n):
                m.d.comb += [first.eq(slots[n]), following.eq(slots[(n + 1) % ring])]

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
        second = Signal()                         # the beat ends in the following word
        m.d.comb += second.eq(reach > R)
        # A block's end waits until `groups` cycles after the previous one, so that its t
        # reaches BasisProducts when the hold is free (both pipelines never stall).
        m.submodules.products = products = BasisProducts(p)
        groups = products.groups
        cooldown = Signal(range(groups))
        cool = Signal(init=1)                     # registered: cooldown == 0
        go = Signal()
        m.d.comb += go.eq((level != 0) & (~second | (level >= 2)) & (~beat.end_block | cool))

        m.submodules.shift_add = shift_add = ShiftAddLanes(p)
        take = Signal()
        m.d.comb += [
            beats.ready.eq(go),
            take.eq(beats.valid & go),
            shift_add.valid.eq(take),
            shift_add.codes.eq(beat.rows),
            shift_add.end_block.eq(beat.end_block),
            shift_add.end_output.eq(beat.end_output),
            shift_add.basis.eq(beat.basis),
        ]
        if groups > 1:
            with m.If(take & beat.end_block):
                m.d.sync += [cooldown.eq(groups - 1), cool.eq(0)]
            with m.Elif(cooldown != 0):
                m.d.sync += [cooldown.eq(cooldown - 1), cool.eq(cooldown == 1)]
        for i in range(R):
            # Row i of the beat is row offset + i of the first two words.
            choice = first[i]
            for o in range(1, R):
                position = o + i
                row = first[position] if position < R else following[position - R]
                choice = Mux(offset == o, row, choice)
            m.d.comb += shift_add.x[i].eq(choice)

        # Words done with: at an output's end every word it touched, else the first when
        # the beat reaches its end.
        pops = Signal(range(3))
        m.d.comb += pops.eq(Mux(take & (beat.end_output | (reach >= R)),
                                Mux(beat.end_output & second, 2, 1), 0))
        held = Signal(range(ring + 1))
        m.d.comb += held.eq(level + push - pops)
        m.d.sync += [head.eq(head + pops), level.eq(held), room.eq(held != ring)]
        with m.If(push):
            m.d.sync += tail.eq(tail.rotate_left(1))
        with m.If(take):
            m.d.sync += offset.eq(Mux(beat.end_output, 0, reach % R if R > 1 else 0))
        with m.If(restart):
            m.d.sync += [head.eq(0), tail.eq(1), level.eq(0), room.eq(1), offset.eq(0),
                         cooldown.eq(0), cool.eq(1)]

        # -- the tiles: the layer's last beat ends a tile; the next one rewinds the parser --
        with m.If(run_start):
            m.d.sync += [tile_token.eq(0), tile_base.eq(0), issuing.eq(1)]
        with m.If(take & beat.last):
            with m.If(tile_token + lanes >= tokens):
                m.d.sync += issuing.eq(0)
            with m.Else():
                m.d.comb += rewind.eq(1)              # SdRun: restart the next cycle
                m.d.sync += [tile_token.eq(tile_token + lanes),
                             tile_base.eq(tile_base + p.act_tile_words)]

        # -- ·B, then the requantizer and `result` ---------------------------------------------
        m.d.comb += [
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
            compute_done.eq(computing & ~restart & ~issuing & ~shift_add.busy
                            & ~products.busy & ~valid.any()),
        ]
        return m
