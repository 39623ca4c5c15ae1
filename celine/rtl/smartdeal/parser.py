"""The SD decoder's parser: the packed words of a layer -> rows of Ce codes with their basis.

docs/smartdeal.md, "The SD decoder", describes the interface, the rates and what the error
flags guarantee; celine/golden/smartdeal/format.py defines the words.
"""

import functools
import operator

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ...golden.smartdeal import format as sd_format
from ...spec.checks import check_choice, check_int
from ..common.compare import greater_than, less_than
from ..common.skid import SkidBuffer
from .beat_buffer import BeatBuffer
from .layouts import errors_layout, header_layout, row_beat_layout

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
    IDLE, H0, H1, H2, HMUL, H3, H4, BASIS, ROWS, DRAIN = range(10)
    COUNT = 10


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
        # B is taken in chunks of a word's worth of symbols (P), the last one the rest
        # (NB mod P <= 4: a row's worth), so the queue holds R rows of the longest kind
        # plus a word: a word is taken when it fits whatever this cycle consumes (count <=
        # Q - P). For R > 1, where the words can be the bottleneck, P - 1 more, so that no
        # word waits while the queue is short of a group (a word is refused only with P
        # symbols beyond those queued); at R = 1 the rows are (test_throughput).
        self.basis_chunks = (self.symbols_per_word,) * (self.basis_symbols
                                                         // self.symbols_per_word)
        if self.basis_symbols % self.symbols_per_word:
            self.basis_chunks += (self.basis_symbols % self.symbols_per_word,)
        assert max(self.basis_chunks) <= max(self.symbols_per_word,
                                             ROW_SYMBOLS_MAX * rows_per_cycle)
        self.queue_depth = max(self.symbols_per_word, ROW_SYMBOLS_MAX * rows_per_cycle) \
            + self.symbols_per_word
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

    def _word_checks(self, word):
        """An input word's compares with constants, as {name: 1-bit value}: the header
        words' field checks, the header count's range and the spare bits. They are made
        where the word enters the skid buffer and travel through it beside the word, so
        the parser reads them from registers (the skid's word through these compares was
        a SmartDeal build's worst path more than once: the count's 32-bit compares into
        `input_done`, 8.3 ns and 6 levels; the field checks into `pending`, 7.9 ns)."""
        E, W, P = self.exponent_bits, self.symbol_bits, self.symbols_per_word
        low, high = word[:16], word[16:]
        return {
            # H0: magic, version, exponent bits, kind, reserved
            "header_ok0": ((word[:8] == sd_format.MAGIC) & (word[8:12] == sd_format.VERSION)
                           & (word[12:16] == E) & (word[16:18] < len(sd_format.KINDS))
                           & (word[18:] == 0)),
            # H1: outputs, length; H2: block rows, blocks per output
            "zero_size1": (low == 0) | (high == 0),
            "too_large1": (low > self.max_outputs) | (high > self.max_length),
            "bad_size2": (low == 0) | (high == 0) | (high > self.max_blocks_per_output),
            "too_large2": low > self.max_block_rows,
            # H3: the hardware weight multiplier, reserved
            "header_ok3": (word[:16] == sd_format.HARDWARE_WEIGHT_MULT) & (word[22:] == 0),
            # H4 with the header's count (words = 0): out of range, or the header alone
            "bad_count": (word < sd_format.HEADER_WORDS) | (word > self.max_words),
            "count_is_header": word == sd_format.HEADER_WORDS,
            # a body word: its bits above the P symbols
            "spare_set": (word[W * P:] != 0) if W * P < sd_format.WORD_BITS else Const(0, 1),
        }

    def elaborate(self, platform):
        m = Module()
        S = _State
        E, R = self.exponent_bits, self.rows_per_cycle
        W, P, NB, Q = self.symbol_bits, self.symbols_per_word, self.basis_symbols, \
            self.queue_depth
        chunks = self.basis_chunks
        basis_bits = sd_format.BASIS_VALUES * sd_format.BASIS_BITS

        # -- the input: a skid buffer (registered ready and word), the word's checks with
        # it (_word_checks) -----------------------------------------------------------------
        check_names = list(self._word_checks(self.i.payload))
        m.submodules.skid = skid = SkidBuffer(data.StructLayout(
            {"word": sd_format.WORD_BITS, **{name: 1 for name in check_names}}))
        m.d.comb += [skid.i.valid.eq(self.i.valid), self.i.ready.eq(skid.i.ready),
                     skid.i.payload.word.eq(self.i.payload),
                     *(getattr(skid.i.payload, name).eq(value)
                       for name, value in self._word_checks(self.i.payload).items())]
        word, word_valid = skid.o.payload.word, skid.o.valid
        checks = skid.o.payload
        word_symbols = [word[W * j:W * (j + 1)] for j in range(P)]

        state = Signal(range(S.COUNT))
        at = {name: Signal(name=f"at_{name}") for name in
              ("IDLE", "H0", "H1", "H2", "HMUL", "H3", "H4", "BASIS", "ROWS", "DRAIN")}
        for name, sig in at.items():
            m.d.comb += sig.eq(state == getattr(S, name))
        words_total = Signal.like(self.words)
        words_left = Signal.like(self.words)
        input_done = Signal()           # registered: words_left == 0
        check_only = Signal()
        from_header = Signal()          # words = 0: the count is the header's
        started = Signal()

        # The header's fields (kept whole) and the layer's counters.
        outputs = Signal(sd_format.LENGTH_BITS)
        length = Signal(sd_format.LENGTH_BITS)
        block_rows = Signal(sd_format.LENGTH_BITS)
        blocks_per_output = Signal(sd_format.LENGTH_BITS)
        rows_left = Signal(range(self.max_block_rows + 1))
        blocks_left = Signal(range(self.max_blocks_per_output + 1))
        outputs_left = Signal(range(self.max_outputs + 1))
        at_first = Signal()
        # Registered: blocks_left == 1 (the output's last block), outputs_left == 1.
        last_block_of_output = Signal()
        last_output = Signal()
        last_block_of_output_next = Signal()
        last_output_next = Signal()
        m.d.comb += [last_block_of_output_next.eq(last_block_of_output),
                     last_output_next.eq(last_output)]
        m.d.sync += [last_block_of_output.eq(last_block_of_output_next),
                     last_output.eq(last_output_next)]
        # k = min(R, rows_left), the rows the next group takes, one-hot, and rows_left <= R:
        # registered (from rows_left's next value), as they steer the queue.
        ksel = {k: Signal(name=f"ksel{k}") for k in range(1, R + 1)}
        block_ending = Signal()
        # The basis chunk being loaded, one-hot.
        bsel = [Signal(name=f"bsel{c}", init=int(c == 0)) for c in range(len(chunks))]

        # -- the symbol queue ----------------------------------------------------------
        # q[0] is the oldest symbol; `count` of them are valid. Every cycle the queue drops
        # `shift` symbols from its head (a row group or a chunk of B) and appends the word
        # taken, if any, behind what is left.
        q = [Signal(W, name=f"q{i}") for i in range(Q)]
        # `count`, the valid symbols, is kept as a one-hot (count_is[c]: count == c, c = 0
        # .. Q) and a thermometer (count_gt[j]: count > j, j = 0 .. Q - 1), both moved by
        # the same one-hot shift as the queue: no adder or comparator on the loop.
        count_is = [Signal(name=f"count_is{c}", init=int(c == 0)) for c in range(Q + 1)]
        count_gt = [Signal(name=f"count_gt{j}") for j in range(Q)]
        room = Signal()
        m.d.comb += room.eq(~count_gt[Q - P])           # count <= Q - P: a word fits
        state_next = Signal.like(state)
        in_rows = Signal()              # registered: state == ROWS
        in_basis = Signal()             # registered: state == BASIS
        m.d.comb += state_next.eq(state)

        # registered: state is H0 .. H4 (a header word is taken), state is DRAIN; made from
        # flat conditions below, like in_rows and in_basis (the state's decode through
        # `take` into the errors and back into the state was a SmartDeal build's worst
        # path, 8.2 to 8.4 ns, 7 levels).
        in_header = Signal()
        in_drain = Signal()
        in_body = Signal()
        m.d.comb += in_body.eq(in_basis | in_rows)
        take = Signal()
        body_take = Signal()
        m.d.comb += [
            take.eq(word_valid & (in_header | (in_body & room & ~input_done)
                                  | (in_drain & ~input_done))),
            body_take.eq(take & in_body),
            skid.o.ready.eq(take),
        ]

        # -- the output: a two-beat buffer (its ready registered), beats with their B -----
        m.submodules.out = out = BeatBuffer(self.o.payload.shape())
        wiring.connect(m, out.o, wiring.flipped(self.o))
        beat = out.i.payload
        basis = Signal(NB * W)                      # B's symbols (72 bits, then zeros)
        out_free = Signal()
        m.d.comb += [
            out_free.eq(out.i.ready),
            beat.basis.eq(beat.basis.shape()(basis[:basis_bits])),
            self.busy.eq(~at["IDLE"] | self.o.valid),
            self.done.eq(started & at["IDLE"] & ~self.o.valid),
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

        # enough (registered): the group's symbols are surely queued (4 a row at most);
        # fits: they are (exact; for the tail).
        enough = Signal()
        fits = Signal()
        m.d.comb += fits.eq(_any(ksel[k] & _select(starts[k], lambda t: count_gt[t - 1])
                                 for k in ksel))
        # At the end of the stream (no word left to come) a group that needs fewer than
        # 4 symbols a row goes if it fits: decided from `fits` registered while the queue
        # stood still, so that the exact check is off the queue's loop.
        tail_fits = Signal()
        tail_stable = Signal()

        tail_ok = Signal()
        m.d.comb += tail_ok.eq(input_done & tail_stable & tail_fits)
        # rows_can (registered): a group may go this cycle if the output takes it; so
        # rows_go = rows_can & out_free, two flip-flops ahead of the queue's selects.
        rows_can = Signal()

        # The layer's last group goes only once the end of the stream is checked (with the
        # same registered evaluation): after it, less than a word of symbols left (and no
        # word to come), all of them 0. So the beat flagged `last` ends good streams only.
        last_group = Signal()
        m.d.comb += last_group.eq(block_ending & last_block_of_output & last_output)

        def short_after(t):                 # count - t < P
            return ~count_gt[t + P - 1] if t + P - 1 < Q else Const(1, 1)

        def zero_after(t):                  # the symbols from t on are 0
            return functools.reduce(operator.and_, [~count_gt[i] | (q[i] == 0)
                                                    for i in range(t, min(t + P, Q))],
                                    Const(1, 1))

        end_short = Signal()
        end_zero = Signal()
        end_short_now = Signal()
        end_zero_now = Signal()
        m.d.comb += [
            end_short_now.eq(_any(ksel[k] & _select(starts[k], short_after) for k in ksel)),
            end_zero_now.eq(_any(ksel[k] & _select(starts[k], zero_after) for k in ksel)),
        ]
        m.d.sync += [end_short.eq(end_short_now), end_zero.eq(end_zero_now)]
        end_checked = Signal()      # the last group fits, its verdict is ready
        m.d.comb += end_checked.eq(in_rows & last_group & tail_stable & tail_fits)

        rows_go = Signal()
        rows_truncated = Signal()
        m.d.comb += [
            rows_go.eq(rows_can & out_free),
            rows_truncated.eq(in_rows & input_done & ~enough & tail_stable & ~tail_fits),
        ]

        # -- block bases, a chunk a cycle (each beat carries a copy) ----------------------
        chunk_fits = Signal()           # registered: the chunk is queued
        bsel_next = [Signal(name=f"bsel_next{c}") for c in range(len(chunks))]
        m.d.comb += [bsel_next[c].eq(bsel[c]) for c in range(len(chunks))]
        basis_go = Signal()
        basis_truncated = Signal()
        last_chunk = bsel[-1]
        m.d.comb += [
            basis_go.eq(in_basis & chunk_fits),
            basis_truncated.eq(in_basis & input_done & ~chunk_fits),
        ]
        chunk_bits = []                              # bits above B's 72 in a chunk
        for c, size in enumerate(chunks):
            first = sum(chunks[:c]) * W
            with m.If(basis_go & bsel[c]):
                m.d.sync += basis[first:first + size * W].eq(Cat(*q[:size]))
            if first + size * W > basis_bits:
                low = max(0, basis_bits - first)
                chunk_bits.append(bsel[c] & (Cat(*q[:size])[low:] != 0))
        basis_above = _any(chunk_bits)

        # -- the queue's update ------------------------------------------------------------
        # A cycle drops from the queue's head either a row group's symbols (rows_go: a
        # group of k rows ends at starts[k]) or a basis chunk's (basis_go), never both (a
        # group goes in ROWS, a chunk in BASIS), or nothing. The queue's and count's next
        # values are made for each of the two cases from registers and the queue alone,
        # and rows_go picks one in the last level: rows_go is the end of the group's
        # decision, and through the group's shift into the count it was a SmartDeal
        # build's worst path (rows_can to count_is, 8.1 ns, 6 levels). The queue's symbols
        # instead take rows_go into the shift's select (move t: the group's if rows_go,
        # else the chunk's or none), which is ready before the word's placement at `count`:
        # the placement, the shift, then rows_go's pick were a SmartDeal build's worst
        # path (count_is to the queue, 8.6 ns, 7 levels).
        max_shift = max(P, ROW_SYMBOLS_MAX * R)
        group_moves, stay_moves = [], [(0, ~basis_go)]
        for t in range(1, max_shift + 1):
            group = [ksel[k] & starts[k][t] for k in ksel if t in starts[k]]
            chunk = [basis_go & bsel[c] for c, size in enumerate(chunks) if size == t]
            if group:
                group_moves.append((t, _any(group)))
            if chunk:
                stay_moves.append((t, _any(chunk)))

        # ext[j]: the queue as it would be with the word appended (when taken, it lands
        # at `count`; count <= Q - P then). Positions past the valid ones are don't-care.
        ext = []
        for j in range(Q):
            placed = _any(Mux(count_is[c], word_symbols[j - c], 0)
                          for c in range(max(0, j - P + 1), min(j, Q - P) + 1))
            sig = Signal(W, name=f"ext{j}")
            m.d.comb += sig.eq(Mux(count_gt[j], q[j], placed))
            ext.append(sig)

        def moved(vector, x, below, moves):
            """vector[x + shift]: `below` for an index under 0, 0 past the end."""
            return _any(Mux(bit, vector[x + t] if x + t >= 0 else below, 0)
                        for t, bit in moves if x + t < len(vector))

        def count_after(moves):
            """count == c and count > j after `moves` (count - shift, + P with a word
            taken)."""
            count_is_after = [Mux(body_take, moved(count_is, c - P, 0, moves) if c >= P else 0,
                                  moved(count_is, c, 0, moves)) for c in range(Q + 1)]
            count_gt_after = [Mux(body_take, moved(count_gt, j - P, 1, moves),
                                  moved(count_gt, j, 1, moves)) for j in range(Q)]
            return count_is_after, count_gt_after

        count_is_go, count_gt_go = count_after(group_moves)
        count_is_stay, count_gt_stay = count_after(stay_moves)
        shifts = {}
        for t, bit in group_moves:
            shifts[t] = rows_go & bit
        for t, bit in stay_moves:
            shifts[t] = shifts[t] | (~rows_go & bit) if t in shifts else ~rows_go & bit
        shift_by = {t: Signal(name=f"shift_by{t}") for t in sorted(shifts)}
        m.d.comb += [shift_by[t].eq(shifts[t]) for t in shift_by]
        for i in range(Q):
            m.d.sync += q[i].eq(_any(Mux(bit, ext[i + t], 0)
                                     for t, bit in shift_by.items() if i + t < Q))
        count_is_next = [Signal(name=f"count_is_next{c}") for c in range(Q + 1)]
        count_gt_next = [Signal(name=f"count_gt_next{j}") for j in range(Q)]
        for c in range(Q + 1):
            m.d.comb += count_is_next[c].eq(Mux(rows_go, count_is_go[c], count_is_stay[c]))
        for j in range(Q):
            m.d.comb += count_gt_next[j].eq(Mux(rows_go, count_gt_go[j], count_gt_stay[j]))
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
            end_output.eq(block_ending & last_block_of_output),
            layer_end.eq(last_group),
        ]

        # -- the errors of this cycle --------------------------------------------------------
        err = Signal(errors_layout())
        err_now = Signal()
        m.d.comb += err_now.eq(err.as_value().any())
        start_now = Signal()
        short = Signal()
        m.d.comb += [start_now.eq(at["IDLE"] & self.start & ~self.o.valid),
                     short.eq((self.words != 0) & (self.words < sd_format.HEADER_WORDS))]

        outputs_in, length_in = word[:16], word[16:]
        rows_in, bpo_in = word[:16], word[16:]

        # The header's sizes: padded = 3 m0 * blocks_per_output by shifts and adds (HMUL,
        # one bit of blocks_per_output a cycle); length <= padded < length + 3 m0 (no block
        # of padding only), as format.LayerHeader checks.
        product_width = (sd_format.BASIS * self.max_block_rows
                         * self.max_blocks_per_output).bit_length()
        product = Signal(product_width)
        addend = Signal(product_width)
        multiplier = Signal(sd_format.LENGTH_BITS)
        # multiplier == 0, registered with it (the compare into the state's next value and
        # `in_rows` was a SmartDeal build's worst path, 9.1 ns and 7 levels).
        multiplier_zero = Signal()
        three_m0 = Signal(sd_format.LENGTH_BITS + 2)
        m.d.comb += three_m0.eq(block_rows + (block_rows << 1))
        # The product's check takes two registered stages (the difference and the low
        # bound, then the compare with 3 m0: in one cycle they were a build's worst path,
        # 11.8 ns and 25 levels of carry chains): HMUL ends two cycles after the last
        # addition.
        # `product_fail`: the product is bad and HMUL ends this cycle (settled == 2), a
        # register set from the cycle before (settled == 1: the product's last stage is
        # then decided, and nothing but HMUL's end follows). As HMUL's end decoded from the
        # state and ANDed with the check, through the errors into the state's reset, it
        # was a SmartDeal build's worst path (8.0 ns, 6 levels).
        product_under = Signal()
        excess = Signal(product_width)
        three_m0_r = Signal.like(three_m0)
        settled = Signal(range(3))          # cycles since the last addition, up to 2
        product_fail = Signal()
        m.d.sync += [product_under.eq(product < length), excess.eq(product - length),
                     three_m0_r.eq(three_m0),
                     product_fail.eq(at["HMUL"] & multiplier_zero & (settled == 1)
                                     & (product_under | (excess >= three_m0_r)))]

        # The header words' checks are registered (`pending`): an error counts the cycle
        # after its word is taken (an error then drops the checks still pending).
        h4_bad = Signal()
        m.d.comb += h4_bad.eq(Mux(from_header, checks.bad_count, word != words_total))
        word_bad_header = ((at["H0"] & take & ~checks.header_ok0)
                           | (at["H1"] & take & checks.zero_size1)
                           | (at["H2"] & take & checks.bad_size2)
                           | (at["H3"] & take & ~checks.header_ok3))
        word_too_large = ((at["H1"] & take & ~checks.zero_size1 & checks.too_large1)
                          | (at["H2"] & take & ~checks.bad_size2 & checks.too_large2))
        word_wrong_length = at["H4"] & take & h4_bad
        # The checks are 0 outside the header's states, and there an error this cycle can
        # only be a pending one (the others need IDLE, HMUL or the body), so a pending error
        # stands for `err_now`: through `take` and every error term into `pending`'s reset
        # it was a SmartDeal build's worst path (8.6 ns, 7 levels).
        pending = Signal(3)         # bad_header, too_large, wrong_length
        m.d.sync += pending.eq(Mux(pending.any(), 0,
                                   Cat(word_bad_header, word_too_large, word_wrong_length)))
        # A body word's spare bits are checked the same way (`spare_bad`, the cycle after
        # the word is taken): through `take` into the errors and the state's reset it was a
        # SmartDeal build's worst path (input_done to the state, 8.09 ns, 7 levels). The
        # group of the word's own cycle is held back from the output as before; the group
        # of the next cycle is too, and the only other error that cycle can bring (a chunk
        # of B truncated by that word, the input's last) is masked: the flag stays
        # bad_code alone, as when the check was in the word's cycle. (The end check and
        # rows_truncated need a still queue, and the word moved it.)
        spare_bad = Signal()
        m.d.sync += spare_bad.eq(body_take & checks.spare_set)
        m.d.comb += [
            err.bad_header.eq(pending[0] | product_fail),
            err.too_large.eq(pending[1]),
            err.wrong_length.eq(pending[2] | (start_now & short)
                                | (end_checked & (~input_done | ~end_short))),
            err.bad_code.eq(spare_bad
                            | (rows_go & _any(bad_masks))
                            | (basis_go & basis_above)
                            | (end_checked & input_done & end_short & ~end_zero)),
            err.truncated_block.eq(rows_truncated | (basis_truncated & ~spare_bad)),
        ]

        # -- control -----------------------------------------------------------------------
        # Counters whose next values steer the next cycle: words_left (input_done),
        # rows_left (ksel, block_ending).
        words_left_next = Signal.like(words_left)
        rows_left_next = Signal.like(rows_left)
        m.d.comb += [words_left_next.eq(words_left - take), rows_left_next.eq(rows_left)]
        with m.If(start_now):
            m.d.comb += words_left_next.eq(Mux(self.words == 0, sd_format.HEADER_WORDS,
                                               self.words))
        with m.If(at["H4"] & take & from_header):
            # A count out of range is wrong_length: input_done rises and nothing more is
            # taken, so words_left's value does not matter then (the compares that chose
            # 0 for it were a SmartDeal build's worst path, 8.8 ns and 7 levels).
            m.d.comb += words_left_next.eq(word - sd_format.HEADER_WORDS)
        # rows_left after a group and at a block's start, with their k and block_ending,
        # are computed from registers; the go signals only select among them.
        rows_after = Signal.like(rows_left)
        m.d.comb += rows_after.eq(rows_left - _any(Mux(ksel[k], k, 0) for k in ksel))
        block_start = basis_go & last_chunk

        def steer(value):
            return [*(value == k if k < R else value >= R for k in ksel), value <= R]

        # A group takes k = min(R, rows_left) rows, so rows_after = max(0, rows_left - R)
        # and its steer flags are rows_left's compares with constants (no subtraction:
        # rows_left's adder and the compare's carry chain into rows_can were a SmartDeal
        # build's worst path, 8.8 ns and 14 levels).
        after = [*(rows_left == R + k if k < R else ~less_than(rows_left, 2 * R)
                   for k in ksel), ~greater_than(rows_left, 2 * R)]
        # A block's first steer flags: block_rows' compares, registered (block_rows is
        # set by H2, long before the first block starts; its compares' carry chains into
        # rows_can were a SmartDeal build's worst path, 8.5 ns and 20 levels).
        first_rows = [Signal(name=f"first_rows{k}") for k in range(len(ksel) + 1)]
        m.d.sync += [flag.eq(value) for flag, value in zip(first_rows, steer(block_rows))]
        now = [*ksel.values(), block_ending]
        steer_next = [Mux(rows_go, a, Mux(block_start, f, n))
                      for a, f, n in zip(after, first_rows, now)]
        ksel_next = dict(zip(ksel, steer_next[:-1]))
        with m.If(rows_go):
            m.d.comb += rows_left_next.eq(rows_after)
        with m.If(block_start):
            m.d.comb += rows_left_next.eq(block_rows)
        # input_done's next value without the counter's adder: the count's last word
        # taken, or a header count of 5 words (or a bad one).
        input_done_next = Signal()
        body_done_next = Signal()
        m.d.comb += [body_done_next.eq(Mux(take, words_left == 1, input_done)),
                     input_done_next.eq(body_done_next)]
        with m.If(start_now):
            m.d.comb += input_done_next.eq(0)
        with m.If(at["H4"] & take & from_header):
            m.d.comb += input_done_next.eq(checks.bad_count | checks.count_is_header)
        m.d.sync += [words_left.eq(words_left_next), input_done.eq(input_done_next),
                     rows_left.eq(rows_left_next), block_ending.eq(steer_next[-1])]
        for k in ksel:
            m.d.sync += ksel[k].eq(ksel_next[k])

        m.d.comb += [
            # (Of the errors, only these can come with a group.)
            out.i.valid.eq(rows_go & ~check_only & ~(body_take & checks.spare_set) & ~spare_bad
                           & ~_any(bad_masks)),
            beat.rows.as_value().eq(Cat(*row_values)),
            beat.valid.eq(row_valid_bits),
            beat.first.eq(at_first),
            beat.end_block.eq(block_ending),
            beat.end_output.eq(end_output),
            beat.last.eq(layer_end),
        ]
        with m.If(rows_go):
            m.d.sync += at_first.eq(0)
            with m.If(block_ending):
                with m.If(last_block_of_output):
                    m.d.sync += [blocks_left.eq(blocks_per_output),
                                 outputs_left.eq(outputs_left - 1)]
                    m.d.comb += [last_block_of_output_next.eq(blocks_per_output == 1),
                                 last_output_next.eq(outputs_left == 2)]
                    m.d.comb += state_next.eq(Mux(last_output, S.IDLE, S.BASIS))
                with m.Else():
                    m.d.sync += blocks_left.eq(blocks_left - 1)
                    m.d.comb += last_block_of_output_next.eq(blocks_left == 2)
                    m.d.comb += state_next.eq(S.BASIS)
        with m.If(basis_go):
            m.d.comb += [bsel_next[c].eq(bsel[c - 1]) for c in range(len(chunks))]
            with m.If(last_chunk):
                m.d.sync += at_first.eq(1)
                m.d.comb += state_next.eq(S.ROWS)

        with m.If(start_now):
            m.d.sync += [words_total.eq(self.words), check_only.eq(self.check_only),
                         self.header_valid.eq(0), started.eq(1),
                         from_header.eq(self.words == 0)]
            m.d.comb += [state_next.eq(Mux(short, S.DRAIN, S.H0)),
                         *[count_is_next[c].eq(c == 0) for c in range(Q + 1)],
                         *[count_gt_next[j].eq(0) for j in range(Q)],
                         *[bsel_next[c].eq(c == 0) for c in range(len(chunks))]]
        with m.If(at["H0"] & take):
            m.d.sync += self.header.kind.eq(word[16])
            m.d.comb += state_next.eq(S.H1)
        with m.If(at["H1"] & take):
            m.d.sync += [outputs.eq(outputs_in), length.eq(length_in)]
            m.d.comb += state_next.eq(S.H2)
        with m.If(at["H2"] & take):
            m.d.sync += [block_rows.eq(rows_in), blocks_per_output.eq(bpo_in),
                         product.eq(0), addend.eq(rows_in + (rows_in << 1)),
                         multiplier.eq(bpo_in), multiplier_zero.eq(bpo_in == 0),
                         settled.eq(0)]
            m.d.comb += state_next.eq(S.HMUL)
        with m.If(at["HMUL"]):
            with m.If(multiplier_zero):
                # Two cycles for the product's check to follow the last addition, then H3.
                with m.If(settled != 2):
                    m.d.sync += settled.eq(settled + 1)
                with m.Else():
                    m.d.comb += state_next.eq(S.H3)
            with m.Else():
                with m.If(multiplier[0]):
                    m.d.sync += product.eq(product + addend)
                m.d.sync += [addend.eq(addend << 1), multiplier.eq(multiplier >> 1),
                             multiplier_zero.eq(multiplier[1:] == 0)]
        with m.If(at["H3"] & take):
            m.d.sync += self.header.weight_shift.eq(word[16:22])
            m.d.comb += state_next.eq(S.H4)
        with m.If(at["H4"] & take):
            m.d.sync += [self.header_valid.eq(~err_now & ~h4_bad), outputs_left.eq(outputs),
                         blocks_left.eq(blocks_per_output),
                         self.header.outputs.eq(outputs), self.header.length.eq(length),
                         self.header.block_rows.eq(block_rows),
                         self.header.blocks_per_output.eq(blocks_per_output)]
            m.d.comb += [state_next.eq(S.BASIS), last_output_next.eq(outputs == 1),
                         last_block_of_output_next.eq(blocks_per_output == 1)]
        with m.If(at["DRAIN"] & input_done):
            m.d.comb += state_next.eq(S.IDLE)

        # An error: its flag (sticky until the next start), then the rest of the words
        # are taken and dropped.
        with m.If(err_now | start_now):
            m.d.sync += self.errors.as_value().eq(
                Mux(start_now, 0, self.errors.as_value()) | err.as_value())
        with m.If(err_now):
            m.d.comb += state_next.eq(S.DRAIN)

        # The registers that steer the queue, from the next values: the state's flags,
        # count (and its compares), the basis chunk.
        # rows_can from the next values (the end checks and `fits` hold for the next
        # cycle only if the queue stands still: tail_ok says so).
        # rows_can is 0 unless the next state is ROWS, which neither a start nor the
        # header's last word leads to: so its input_done_next is the body's alone
        # (`body_done_next`), without the header count's 32-bit compares (the skid's word
        # through them into rows_can was a SmartDeal build's worst path, 9.5 ns).
        #
        # rows_go, which moves the queue, feeds rows_can's next value, a loop: through the
        # group's shift into count's next thermometer and the steer flags, then `enough`,
        # it was a SmartDeal build's worst path (8.2 ns, 7 levels). So the next value is
        # computed twice, for a group going and for none, from registers and the queue
        # alone, and rows_go (with the errors, which send the state to DRAIN) picks one in
        # the last level. The state's next value is ROWS, without an error, if a group
        # goes and does not end its block, or if none goes in ROWS or as the block's
        # basis ends (a start or a header word never leads to ROWS).
        def enough_after(steer_flags, count_gt_after):
            """`enough` for the next cycle, given its steer flags and count > j."""
            return _any(flag & count_gt_after[ROW_SYMBOLS_MAX * k - 1]
                        for k, flag in zip(ksel, steer_flags))

        stay_steer = [Mux(block_start, f, n) for f, n in zip(first_rows, now)]
        enough_go, enough_stay = Signal(), Signal()
        can_go, can_stay = Signal(), Signal()
        tail_ok_stay = Signal()
        m.d.comb += [
            enough_go.eq(enough_after(after[:-1], count_gt_go)),
            enough_stay.eq(enough_after(stay_steer[:-1], count_gt_stay)),
            # A group goes (in ROWS): the state stays ROWS if the block does not end. The
            # next group, if it is the layer's last, waits for its end checks on a still
            # queue (tail_ok is 0 as this one moves it); any other goes when `enough`.
            can_go.eq(~block_ending & ~(after[-1] & last_block_of_output & last_output)
                      & enough_go),
            tail_ok_stay.eq(body_done_next & ~(basis_go | take) & fits),
            can_stay.eq((in_rows | block_start)
                        & Mux(stay_steer[-1] & last_block_of_output & last_output,
                              tail_ok_stay & end_short_now & end_zero_now,
                              enough_stay | tail_ok_stay)),
        ]
        enough_next = Mux(rows_go, enough_go, enough_stay) & ~start_now
        # chunk_fits the same way: a group going leaves the chunk as it is (a group goes in
        # ROWS, a chunk in BASIS) and is never a start's cycle (IDLE), so only the count
        # differs. Through the group's moves into count's next thermometer, then the
        # chunk's AND-OR, it was a SmartDeal build's worst path (ksel to chunk_fits, 8.6 ns).
        chunk_fits_go, chunk_fits_stay = Signal(), Signal()
        m.d.comb += [
            chunk_fits_go.eq(_any(bsel[c] & count_gt_go[size - 1]
                                  for c, size in enumerate(chunks))),
            chunk_fits_stay.eq(_any(bsel_next[c] & count_gt_stay[size - 1]
                                    for c, size in enumerate(chunks)) & ~start_now),
        ]
        # in_rows and in_basis from their own flat conditions, not state_next's compares
        # (the state's priority chain into in_basis was a SmartDeal build's worst path,
        # 8.2 ns and 7 levels): the state is ROWS next as above; it is BASIS next, without
        # an error, if it stays there (the block's last chunk not going), after the
        # header's last word, or after a block's last group that does not end the layer.
        rows_next, basis_next = Signal(), Signal()
        m.d.comb += [
            rows_next.eq(~err_now & Mux(rows_go, ~block_ending, in_rows | block_start)),
            basis_next.eq(~err_now & ((in_basis & ~block_start) | (at["H4"] & take)
                                      | (rows_go & block_ending
                                         & ~(last_block_of_output & last_output)))),
        ]
        # The header's states: a start that is not short enters H0; H2's and H4's words
        # leave them (for HMUL and BASIS), HMUL's end returns to H3. DRAIN: an error or a
        # short start enters it, the input's end leaves it.
        m.d.sync += [
            in_header.eq(~err_now & ((start_now & ~short)
                                     | (in_header & ~((at["H2"] | at["H4"]) & take))
                                     | (at["HMUL"] & multiplier_zero & (settled == 2)))),
            in_drain.eq(err_now | (start_now & short) | (in_drain & ~input_done)),
        ]
        m.d.sync += rows_can.eq(~err_now & Mux(rows_go, can_go, can_stay))
        m.d.sync += [state.eq(state_next),
                     in_rows.eq(rows_next), in_basis.eq(basis_next),
                     *[bsel[c].eq(bsel_next[c]) for c in range(len(chunks))],
                     enough.eq(enough_next),
                     chunk_fits.eq(Mux(rows_go, chunk_fits_go, chunk_fits_stay)),
                     *[count_is[c].eq(count_is_next[c]) for c in range(Q + 1)],
                     *[count_gt[j].eq(count_gt_next[j]) for j in range(Q)]]
        return m
