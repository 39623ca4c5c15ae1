"""The SD decoder's parser: the packed words of a layer -> rows of Ce codes with their basis.

docs/smartdeal.md, "The SD decoder", describes the interface, the rates and what the error
flags guarantee; celine/golden/smartdeal/format.py defines the words.
"""

import functools
import operator

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ...golden.smartdeal import format as sd_format
from ...spec.checks import check_choice, check_int
from ..common.skid import SkidBuffer
from .layouts import (errors_layout, header_layout, row_beat_layout, row_layout)

__all__ = ["SdParser", "ROWS_PER_CYCLE", "check_decoder_params"]

ROWS_PER_CYCLE = (1, 2, 4)
CODES_MAX = sd_format.BASIS            # code symbols after a mask symbol, at most
ROW_SYMBOLS_MAX = 1 + CODES_MAX         # symbols of one row, at most
LIMIT = (1 << sd_format.LENGTH_BITS) - 1


def _any(values):
    values = list(values)
    return functools.reduce(operator.or_, values) if values else Const(0, 1)


def _select(onehot, values):
    """OR of values[p] where onehot[p] (onehot: {position: 1-bit}, values: callable)."""
    return _any(Mux(bit, values(p), 0) for p, bit in onehot.items())


def check_decoder_params(exponent_bits, rows_per_cycle, max_outputs, max_length,
                         max_block_rows, max_words):
    """The SD decoder's generator parameters (TypeError/ValueError with pinned messages)."""
    check_int("exponent_bits", exponent_bits)
    check_choice("exponent_bits", exponent_bits, sd_format.EXPONENT_BITS)
    check_int("rows_per_cycle", rows_per_cycle)
    check_choice("rows_per_cycle", rows_per_cycle, ROWS_PER_CYCLE)
    check_int("max_outputs", max_outputs, minimum=1, maximum=LIMIT)
    check_int("max_length", max_length, minimum=1, maximum=LIMIT)
    check_int("max_block_rows", max_block_rows, minimum=1, maximum=LIMIT)
    check_int("max_words", max_words, minimum=sd_format.HEADER_WORDS + 1,
              maximum=sd_format.WORD_MASK)


class _State:
    IDLE, H0, H1, H2, HMUL, H3, H4, BASIS, ROWS, END, DRAIN = range(11)
    COUNT = 11


class SdParser(wiring.Component):
    """Packed words of one layer in (`i`, 32 bits a beat, header first, exactly as
    format.pack writes them) -> beats of up to R rows of Ce codes out (`o`,
    layouts.row_beat_layout), with the block's basis B in every beat.

    Parameters: exponent_bits E (2, 3, 4: the format's, fixing the symbol width W and the
    P symbols a word), rows_per_cycle R (1, 2, 4: the rows of a beat, the rate 3R weights
    a cycle), and the largest layer it takes: max_outputs, max_length (weights per output,
    the header's L), max_block_rows (m0), max_words (the `words` input's range; the
    weight buffer's depth).

    Control: `start` (a pulse while `busy` is low) begins a layer of `words` words (the
    count the producer sends: unpack's len(words)); `words` = 0 takes the count from the
    header's length field instead, for a producer that has no count of its own (the one
    check lost: the header's length against the words given). With `check_only`
    (sampled with start) the words are parsed and checked but no beat is emitted. `busy`
    stays high until every one of the words has been taken and the last beat has left;
    `done` is high from then until the next start.
    `errors` (layouts.errors_layout, cleared by start) are sticky flags, one per
    format.FormatError kind plus `too_large`; `header` holds the header's fields once
    `header_valid` is high (the header passed every check).

    Errors: the same streams as format.unpack raise the same kind (a stream with one fault
    sets exactly one flag); the decoder also flags as bad_header a header with M_w != 1
    or another E than its own, and as `too_large` a well-formed layer larger than its
    parameters. After the cycle an error is found no beat is loaded; the words left are
    taken and dropped. The beat with `last` is held back until the end of the stream has
    been checked (no words left over, zero padding): a good stream ends with it, a bad
    one never emits it.

    Rates: up to R rows a cycle within a block (a beat never spans two blocks), one cycle
    per block to load B, at most one word a cycle in; the header takes 5 words plus a few
    cycles to check its sizes (a shift-and-add product, no multiplier).
    """

    def __init__(self, *, exponent_bits=2, rows_per_cycle=1, max_outputs=1024,
                 max_length=1024, max_block_rows=192, max_words=65536):
        try:
            check_decoder_params(exponent_bits, rows_per_cycle, max_outputs, max_length,
                                 max_block_rows, max_words)
        except Exception:
            self._MustUse__silence = True       # no "created but never used" warning
            raise
        self.exponent_bits, self.rows_per_cycle = exponent_bits, rows_per_cycle
        self.max_outputs, self.max_length = max_outputs, max_length
        self.max_block_rows, self.max_words = max_block_rows, max_words
        self.symbol_bits = sd_format.symbol_bits(exponent_bits)
        self.symbols_per_word = sd_format.symbols_per_word(exponent_bits)
        self.basis_symbols = sd_format.basis_symbols(exponent_bits)
        # The symbol queue: room for a block's B or R rows of the longest kind, plus a word
        # (a word is taken when it fits whatever this cycle consumes: count <= Q - P). For
        # R > 1, where the words can be the bottleneck, P - 1 more, so that no word waits
        # while the queue is short of a group or of B (a word is refused only with P
        # symbols beyond those queued); at R = 1 the rows are (test_throughput).
        group = max(self.basis_symbols, ROW_SYMBOLS_MAX * rows_per_cycle)
        self.queue_depth = group + self.symbols_per_word
        if rows_per_cycle > 1:
            self.queue_depth += self.symbols_per_word - 1
        # A valid header has blocks_per_output = ceil(L / (3 m0)) <= ceil(L / 3).
        self.max_blocks_per_output = -(-max_length // sd_format.BASIS)
        super().__init__({
            "i": In(stream.Signature(sd_format.WORD_BITS)),
            "o": Out(stream.Signature(row_beat_layout(exponent_bits, rows_per_cycle))),
            "start": In(1),
            "words": In(range(max_words + 1)),
            "check_only": In(1),
            "busy": Out(1),
            "done": Out(1),
            "errors": Out(errors_layout()),
            "header": Out(header_layout()),
            "header_valid": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        S = _State
        E, R = self.exponent_bits, self.rows_per_cycle
        W, P, NB, Q = self.symbol_bits, self.symbols_per_word, self.basis_symbols, \
            self.queue_depth
        basis_bits = sd_format.BASIS_VALUES * sd_format.BASIS_BITS

        # -- the input: a skid buffer (registered ready and word) -------------------------
        m.submodules.skid = skid = SkidBuffer(sd_format.WORD_BITS)
        wiring.connect(m, wiring.flipped(self.i), skid.i)
        word, word_valid = skid.o.payload, skid.o.valid
        word_symbols = [word[W * j:W * (j + 1)] for j in range(P)]
        spare = word[W * P:] if W * P < sd_format.WORD_BITS else Const(0, 1)

        state = Signal(range(S.COUNT))
        words_total = Signal.like(self.words)
        words_left = Signal.like(self.words)
        input_done = Signal()
        check_only = Signal()
        from_header = Signal()          # words = 0: the count is the header's
        started = Signal()
        m.d.comb += input_done.eq(words_left == 0)

        # The header's fields (kept whole) and the layer's counters.
        outputs = Signal(sd_format.LENGTH_BITS)
        length = Signal(sd_format.LENGTH_BITS)
        block_rows = Signal(sd_format.LENGTH_BITS)
        blocks_per_output = Signal(sd_format.LENGTH_BITS)
        rows_left = Signal(range(self.max_block_rows + 1))
        blocks_left = Signal(range(self.max_blocks_per_output + 1))
        outputs_left = Signal(range(self.max_outputs + 1))
        at_first = Signal()

        # -- the symbol queue ----------------------------------------------------------
        # q[0] is the oldest symbol; `count` of them are valid. Every cycle the queue drops
        # `shift` symbols from its head (a row group or a block's B) and appends the word
        # taken, if any, behind what is left.
        q = [Signal(W, name=f"q{i}") for i in range(Q)]
        count = Signal(range(Q + 1))
        room = Signal()
        m.d.comb += room.eq(count <= Q - P)

        in_header = Signal()
        in_body = Signal()
        m.d.comb += [
            in_header.eq((state == S.H0) | (state == S.H1) | (state == S.H2)
                         | (state == S.H3) | (state == S.H4)),
            in_body.eq((state == S.BASIS) | (state == S.ROWS)),
        ]
        take = Signal()
        m.d.comb += [
            take.eq(word_valid & (in_header
                                  | (in_body & room & ~input_done)
                                  | ((state == S.DRAIN) & ~input_done))),
            skid.o.ready.eq(take),
        ]

        # -- the output register -------------------------------------------------------
        out_valid = Signal()
        out_rows = Signal(data.ArrayLayout(row_layout(E), R))
        out_row_valid = Signal(R)
        out_flags = Signal(4)                       # first, end_block, end_output, last
        basis = Signal(data.ArrayLayout(self.o.payload.basis.shape().elem_shape,
                                        sd_format.BASIS_VALUES))
        out_free = Signal()
        m.d.comb += [
            out_free.eq(~out_valid | self.o.ready),
            self.o.valid.eq(out_valid),
            self.o.payload.rows.eq(out_rows),
            self.o.payload.valid.eq(out_row_valid),
            self.o.payload.basis.eq(basis),
            self.o.payload.first.eq(out_flags[0]),
            self.o.payload.end_block.eq(out_flags[1]),
            self.o.payload.end_output.eq(out_flags[2]),
            self.o.payload.last.eq(out_flags[3]),
            self.busy.eq((state != S.IDLE) | out_valid),
            self.done.eq(started & (state == S.IDLE) & ~out_valid),
        ]

        # -- row groups: where the next R rows start (a chain of one-hot positions) -----
        def popcount_is(p, c):
            bits = [q[p][b] for b in range(sd_format.BASIS)]
            terms = []
            for pattern in range(1 << sd_format.BASIS):
                if bin(pattern).count("1") == c:
                    terms.append(functools.reduce(operator.and_, [
                        bits[b] if pattern >> b & 1 else ~bits[b]
                        for b in range(sd_format.BASIS)]))
            return _any(terms)

        # starts[i]: {position: 1-bit} one-hot start of row i of the group (row 0 at the
        # head); starts[R] is where the group ends. Each step: the next start is this
        # one + 1 + popcount(its mask), an AND-OR of 4 terms a position.
        starts = [{0: Const(1, 1)}]
        for i in range(R):
            nxt = {}
            for t in range(i + 1, ROW_SYMBOLS_MAX * (i + 1) + 1):
                terms = [bit & popcount_is(p, t - p - 1) for p, bit in starts[i].items()
                         if 1 <= t - p <= ROW_SYMBOLS_MAX]
                sig = Signal(name=f"start{i + 1}_{t}")
                m.d.comb += sig.eq(_any(terms))
                nxt[t] = sig
            starts.append(nxt)

        # k = min(R, rows_left): the rows this group takes (registered counter, decoded).
        ksel = {}
        for k in range(1, R + 1):
            ksel[k] = Signal(name=f"ksel{k}")
            m.d.comb += ksel[k].eq(rows_left == k if k < R else rows_left >= R)
        block_ending = Signal()
        m.d.comb += block_ending.eq(rows_left <= R)
        enough = Signal()       # the group's symbols are surely queued (4 a row at most)
        fits = Signal()         # the group's symbols are queued (exact; for the tail)
        m.d.comb += [
            enough.eq(_any(ksel[k] & (count >= ROW_SYMBOLS_MAX * k) for k in ksel)),
            fits.eq(_any(ksel[k] & _select(starts[k], lambda t: count >= t) for k in ksel)),
        ]
        # At the end of the stream (no word left to come) a group that needs fewer than
        # 4 symbols a row goes if it fits: decided from `fits` registered while the queue
        # stood still, so that the exact check is off the queue's loop.
        tail_fits = Signal()
        tail_stable = Signal()

        rows_go = Signal()
        rows_truncated = Signal()
        m.d.comb += [
            rows_go.eq((state == S.ROWS) & out_free
                       & (enough | (input_done & tail_stable & tail_fits))),
            rows_truncated.eq((state == S.ROWS) & input_done & ~enough & tail_stable
                              & ~tail_fits),
        ]
        kgo = {k: Signal(name=f"kgo{k}") for k in ksel}
        for k in ksel:
            m.d.comb += kgo[k].eq(ksel[k] & rows_go)

        # -- block bases -----------------------------------------------------------------
        head_bits = Cat(*q[:NB])
        basis_go = Signal()
        basis_truncated = Signal()
        m.d.comb += [
            basis_go.eq((state == S.BASIS) & out_free & (count >= NB)),
            basis_truncated.eq((state == S.BASIS) & input_done & (count < NB)),
        ]

        # -- the queue's update ------------------------------------------------------------
        max_shift = max(NB, ROW_SYMBOLS_MAX * R)
        shift = {}
        for t in range(1, max_shift + 1):
            terms = [kgo[k] & starts[k][t] for k in ksel if t in starts[k]]
            if t == NB:
                terms.append(basis_go)
            if terms:
                shift[t] = Signal(name=f"shift{t}")
                m.d.comb += shift[t].eq(_any(terms))
        no_shift = Signal()
        m.d.comb += no_shift.eq(~_any(shift.values()))
        shift_amount = Signal(range(max_shift + 1))
        m.d.comb += shift_amount.eq(_any(Mux(bit, t, 0) for t, bit in shift.items()))

        # ext[j]: the queue as it would be with the word appended (when taken, it lands
        # at `count`; count <= Q - P then). Positions past the valid ones are don't-care.
        count_is = [Signal(name=f"count_is{c}") for c in range(Q - P + 1)]
        for c, sig in enumerate(count_is):
            m.d.comb += sig.eq(count == c)
        ext = []
        for j in range(Q):
            placed = _any(Mux(count_is[c], word_symbols[j - c], 0)
                          for c in range(max(0, j - P + 1), min(j, Q - P) + 1))
            sig = Signal(W, name=f"ext{j}")
            m.d.comb += sig.eq(Mux(count > j, q[j], placed))
            ext.append(sig)
        for i in range(Q):
            terms = [Mux(no_shift, ext[i], 0)]
            terms += [Mux(bit, ext[i + t], 0) for t, bit in shift.items() if i + t < Q]
            m.d.sync += q[i].eq(_any(terms))
        body_take = Signal()
        m.d.comb += body_take.eq(take & in_body)
        m.d.sync += count.eq(count + Mux(body_take, P, 0) - shift_amount)
        m.d.sync += [tail_fits.eq(fits), tail_stable.eq(~(rows_go | basis_go | take))]

        # -- the rows of a group -----------------------------------------------------------
        def record(p):
            """The row whose mask symbol is at p: Cat of its 3 coefficients' fields."""
            mask = q[p][:sd_format.BASIS]
            codes = [q[p + 1],
                     Mux(mask[0], q[p + 2], q[p + 1]),
                     Mux(mask[0] & mask[1], q[p + 3],
                         Mux(mask[0] | mask[1], q[p + 2], q[p + 1]))]
            fields = []
            for k in range(sd_format.BASIS):
                nz = mask[k]
                fields.append(Cat(nz, codes[k][E] & nz, Mux(nz, codes[k][:E], 0)))
            return Cat(*fields)

        def reserved(p):
            return q[p][sd_format.BASIS:] != 0 if W > sd_format.BASIS else Const(0, 1)

        row_values = []
        bad_masks = []
        for i in range(R):
            active = _any(ksel[k] for k in ksel if k > i)
            row_values.append(Mux(active, _select(starts[i], record), 0))   # else all 0
            bad_masks.append(active & _select(starts[i], reserved))
        row_valid_bits = Cat(*[_any(ksel[k] for k in ksel if k > i) for i in range(R)])
        layer_end = Signal()
        end_output = Signal()
        m.d.comb += [
            end_output.eq(block_ending & (blocks_left == 1)),
            layer_end.eq(end_output & (outputs_left == 1)),
        ]

        # -- the errors of this cycle --------------------------------------------------------
        err = Signal(errors_layout())
        err_now = Signal()
        m.d.comb += err_now.eq(err.as_value().any())
        at = {name: Signal(name=f"at_{name}") for name in
              ("IDLE", "H0", "H1", "H2", "HMUL", "H3", "H4", "END", "DRAIN")}
        for name, sig in at.items():
            m.d.comb += sig.eq(state == getattr(S, name))
        start_now = Signal()
        short = Signal()
        m.d.comb += [start_now.eq(at["IDLE"] & self.start & ~out_valid),
                     short.eq((self.words != 0) & (self.words < sd_format.HEADER_WORDS))]

        header_ok0 = ((word[:8] == sd_format.MAGIC) & (word[8:12] == sd_format.VERSION)
                      & (word[12:16] == E) & (word[16:18] < len(sd_format.KINDS))
                      & (word[18:] == 0))
        outputs_in, length_in = word[:16], word[16:]
        zero_size1 = (outputs_in == 0) | (length_in == 0)
        rows_in, bpo_in = word[:16], word[16:]
        bad_size2 = (rows_in == 0) | (bpo_in == 0) | (bpo_in > self.max_blocks_per_output)
        header_ok3 = (word[:16] == sd_format.HARDWARE_WEIGHT_MULT) & (word[22:] == 0)

        # The header's sizes: padded = 3 m0 * blocks_per_output by shifts and adds (HMUL,
        # one bit of blocks_per_output a cycle); length <= padded < length + 3 m0 (no block
        # of padding only), as format.LayerHeader checks.
        product_width = (sd_format.BASIS * self.max_block_rows
                         * self.max_blocks_per_output).bit_length()
        product = Signal(product_width)
        addend = Signal(product_width)
        multiplier = Signal(sd_format.LENGTH_BITS)
        three_m0 = Signal(sd_format.LENGTH_BITS + 2)
        m.d.comb += three_m0.eq(block_rows + (block_rows << 1))
        product_done = Signal()
        m.d.comb += product_done.eq(at["HMUL"] & (multiplier == 0))

        # The end of the stream (END, with the last beat held back): no word left, less
        # than a word of symbols queued, all of them 0.
        left_over = Signal()
        padding_nonzero = Signal()
        m.d.comb += [
            left_over.eq(~input_done | (count >= P)),
            padding_nonzero.eq(_any((count > i) & (q[i] != 0) for i in range(P))),
        ]

        m.d.comb += [
            err.bad_header.eq((at["H0"] & take & ~header_ok0)
                              | (at["H1"] & take & zero_size1)
                              | (at["H2"] & take & bad_size2)
                              | (product_done & ((product < length)
                                                 | (product - length >= three_m0)))
                              | (at["H3"] & take & ~header_ok3)),
            err.too_large.eq((at["H1"] & take & ~zero_size1
                          & ((outputs_in > self.max_outputs) | (length_in > self.max_length)))
                         | (at["H2"] & take & ~bad_size2 & (rows_in > self.max_block_rows))),
            err.wrong_length.eq((start_now & short)
                                | (at["H4"] & take & ~from_header & (word != words_total))
                                | (at["H4"] & take & from_header
                                   & ((word < sd_format.HEADER_WORDS)
                                      | (word > self.max_words)))
                                | (at["END"] & left_over)),
            err.bad_code.eq((body_take & (spare != 0))
                            | (rows_go & _any(bad_masks))
                            | (basis_go & ((head_bits[basis_bits:] != 0)
                                           if NB * W > basis_bits else Const(0, 1)))
                            | (at["END"] & ~left_over & padding_nonzero)),
            err.truncated_block.eq(rows_truncated | basis_truncated),
        ]

        # -- control -----------------------------------------------------------------------
        with m.If(take):
            m.d.sync += words_left.eq(words_left - 1)

        with m.If(out_valid & self.o.ready):
            m.d.sync += out_valid.eq(0)
        with m.If(rows_go):
            m.d.sync += [out_rows.as_value().eq(Cat(*row_values)),
                         out_row_valid.eq(row_valid_bits),
                         out_flags.eq(Cat(at_first, block_ending, end_output, layer_end)),
                         rows_left.eq(rows_left - _any(Mux(ksel[k], k, 0) for k in ksel)),
                         at_first.eq(0)]
            with m.If(~err_now & ~check_only & ~layer_end):
                m.d.sync += out_valid.eq(1)
            with m.If(block_ending):
                with m.If(blocks_left == 1):
                    m.d.sync += [blocks_left.eq(blocks_per_output),
                                 outputs_left.eq(outputs_left - 1),
                                 state.eq(Mux(outputs_left == 1, S.END, S.BASIS))]
                with m.Else():
                    m.d.sync += [blocks_left.eq(blocks_left - 1), state.eq(S.BASIS)]
        with m.If(basis_go):
            m.d.sync += [basis.as_value().eq(head_bits[:basis_bits]),
                         rows_left.eq(block_rows), at_first.eq(1), state.eq(S.ROWS)]

        with m.If(start_now):
            m.d.sync += [words_total.eq(self.words), check_only.eq(self.check_only),
                         self.header_valid.eq(0), count.eq(0), started.eq(1),
                         from_header.eq(self.words == 0),
                         words_left.eq(Mux(self.words == 0, sd_format.HEADER_WORDS,
                                           self.words)),
                         state.eq(Mux(short, S.DRAIN, S.H0))]
        with m.If(at["H0"] & take):
            m.d.sync += [self.header.kind.eq(word[16]), state.eq(S.H1)]
        with m.If(at["H1"] & take):
            m.d.sync += [outputs.eq(outputs_in), length.eq(length_in), state.eq(S.H2)]
        with m.If(at["H2"] & take):
            m.d.sync += [block_rows.eq(rows_in), blocks_per_output.eq(bpo_in),
                         product.eq(0), addend.eq(rows_in + (rows_in << 1)),
                         multiplier.eq(bpo_in), state.eq(S.HMUL)]
        with m.If(at["HMUL"]):
            with m.If(multiplier == 0):
                m.d.sync += state.eq(S.H3)
            with m.Else():
                with m.If(multiplier[0]):
                    m.d.sync += product.eq(product + addend)
                m.d.sync += [addend.eq(addend << 1), multiplier.eq(multiplier >> 1)]
        with m.If(at["H3"] & take):
            m.d.sync += [self.header.weight_shift.eq(word[16:22]), state.eq(S.H4)]
        with m.If(at["H4"] & take):
            m.d.sync += [self.header_valid.eq(1), outputs_left.eq(outputs),
                         blocks_left.eq(blocks_per_output), state.eq(S.BASIS),
                         self.header.outputs.eq(outputs), self.header.length.eq(length),
                         self.header.block_rows.eq(block_rows),
                         self.header.blocks_per_output.eq(blocks_per_output)]
            with m.If(from_header):
                # (A count out of range is wrong_length: nothing more is taken.)
                m.d.sync += words_left.eq(Mux(err.wrong_length, 0,
                                              word - sd_format.HEADER_WORDS))
        with m.If(at["END"] & ~left_over & ~padding_nonzero):
            m.d.sync += [out_valid.eq(~check_only), state.eq(S.IDLE)]
        with m.If(at["DRAIN"] & input_done):
            m.d.sync += state.eq(S.IDLE)

        # An error: its flag (sticky until the next start), then the rest of the words
        # are taken and dropped.
        with m.If(err_now | start_now):
            m.d.sync += self.errors.as_value().eq(
                Mux(start_now, 0, self.errors.as_value()) | err.as_value())
        with m.If(err_now):
            m.d.sync += state.eq(S.DRAIN)
        return m
