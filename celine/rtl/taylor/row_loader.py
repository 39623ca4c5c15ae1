from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ...engines.taylor.spec import LANES, TaylorParams
from ..common.fanout import register_copies
from ..common.lookahead import lookahead


def beat_layout(width):
    """One stream beat: LANES elements of a row, `last` on a block's final beat."""
    return data.StructLayout({"data": data.ArrayLayout(signed(width), LANES), "last": 1})


SELECT_GROUP = LANES // 2     # elements of a row a copy of the slot select steers


class RowLoader(wiring.Component):
    """Collects the input stream into two token slots (double buffering).

    Per kept head the stream carries N tokens of (K row, V row) and then N Q rows, each
    row as `row_beats` beats. A K/V token fills both rows of a slot (a = K, b = V); a Q
    token fills row a. A filled slot is full until the consumer pulses `release` (it then
    moves to the other slot); the loader fills the slots in the same alternating order,
    so up to two tokens wait ahead of the computation. The consumer sees its slot:
    `row_a`, `row_b` and `ready` (the slot is full).

    `start` (with `tokens` and `heads`, the number of kept heads, held for the run)
    restarts the sequence. `framing` pulses when an accepted beat's `last` disagrees with
    its position (the last beat of a head's K/V block and of its Q block carry it); the
    count of N tokens, not `last`, decides where blocks end.
    """

    def __init__(self, params: TaylorParams):
        self.params = params
        row = data.ArrayLayout(signed(params.operand_width), params.head_dim)
        super().__init__({
            "i": In(stream.Signature(beat_layout(params.operand_width))),
            "start": In(1),
            "tokens": In(params.token_width),
            "heads": In(range(params.heads + 1)),
            "row_a": Out(row),
            "row_b": Out(row),
            "ready": Out(1),
            "release": In(1),
            "framing": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        beats = p.row_beats
        word = LANES * p.operand_width

        active = Signal()           # more beats expected in this run
        head = Signal(range(p.heads + 1))
        query = Signal()            # loading Q rows (else K/V tokens)
        token = Signal(p.token_width)
        beat = Signal(range(2 * beats))
        slot = Signal()             # the slot being filled
        read_slot = Signal()        # the slot the consumer holds
        row = data.ArrayLayout(signed(p.operand_width), p.head_dim)
        rows_a = [Signal(row, name=f"slot{s}_a") for s in range(2)]
        rows_b = [Signal(row, name=f"slot{s}_b") for s in range(2)]
        full = Signal(2)
        # The consumer's slot selects 2 x head_dim elements: each group of SELECT_GROUP
        # elements of each row is chosen by a copy of `read_slot` of its own (a module
        # each, so that synthesis keeps them and places each beside its multiplexers), not
        # by one register driving every multiplexer. (A copy a word of 8 elements, 64
        # multiplexers, was a Taylor build's worst path: a 4.2 ns net into the tile feed; a
        # copy an element put 128 flip-flops on the release's net, 8.4 ns.)
        # The copies load (start: 0, release: the other slot) with an enable, so that the
        # release, the end of the sequencer's decision, reaches them without a multiplexer
        # after it (through one, it was a Taylor build's worst path: 9.1 ns, 6 levels).
        groups = p.head_dim // SELECT_GROUP
        selects = register_copies(m, "read_slot", Mux(self.start, 0, ~read_slot), 2 * groups,
                                  enable=self.start | self.release)
        for n, (out, rows) in enumerate(((self.row_a, rows_a), (self.row_b, rows_b))):
            for e in range(p.head_dim):
                m.d.comb += out[e].eq(Mux(selects[n * groups + e // SELECT_GROUP],
                                          rows[1][e], rows[0][e]))
        m.d.comb += self.ready.eq(full.bit_select(read_slot, 1))

        token_beats = Mux(query, beats, 2 * beats)
        last_beat = beat == token_beats - 1
        # Whether `token` is the block's last: a register (the compare with `tokens`, which
        # comes from the link's registers, runs a cycle ahead of the framing check and the
        # block ends that use it). Right from the cycle after `start`, the first a beat can
        # be taken in.
        # N - 1 and N - 2 are registers too (right from the cycle after `start`, as `tokens`
        # is held from `start` on), so the compares with `token` have no adder (with them,
        # `token` into `last_token` was a Taylor build's worst path: 8.4 ns, 10 levels).
        one_token = self.tokens == 1
        tokens_less1 = Signal.like(self.tokens)
        tokens_less2 = Signal.like(self.tokens)
        m.d.sync += [tokens_less1.eq(self.tokens - 1), tokens_less2.eq(self.tokens - 2)]
        token_step = Signal()
        last_token = lookahead(m, "last_token",
                               Mux(self.start, one_token, token == tokens_less1),
                               token_step & ~self.start, one_token, token == tokens_less2)
        m.d.comb += self.i.ready.eq(active & ~full.bit_select(slot, 1))

        accepted = self.i.valid & self.i.ready
        m.d.comb += token_step.eq(accepted & last_beat)
        m.d.comb += self.framing.eq(accepted & (self.i.payload.last != (last_beat & last_token)))

        # An accepted beat is written into its slot a cycle later (LOAD_DELAY), from
        # registers: its data and one write enable per word of each slot's rows, decoded
        # from the slot and the beat. Written straight from the stream, `accepted` (and
        # `active` behind `ready`) fanned out to the enables of all 4 x head_dim elements
        # (one build: a 10.4 ns net). The slot turns full with its last word's write.
        beat_data = Signal.like(self.i.payload.data, reset_less=True)
        enables = [[Signal(name=f"write{s}_{w}") for w in range(2 * beats)] for s in range(2)]
        filled = Signal()            # the last word of a token is written this cycle
        filled_slot = Signal()
        m.d.sync += [beat_data.eq(self.i.payload.data),
                     filled.eq(accepted & last_beat), filled_slot.eq(slot)]
        for s in range(2):
            for w in range(2 * beats):
                m.d.sync += enables[s][w].eq(accepted & (slot == s) & (beat == w))
                rows = rows_a[s] if w < beats else rows_b[s]
                with m.If(enables[s][w]):
                    m.d.sync += rows.as_value().word_select(w % beats, word).eq(beat_data)
        with m.If(filled):
            m.d.sync += full.bit_select(filled_slot, 1).eq(1)

        with m.If(accepted):
            m.d.sync += beat.eq(beat + 1)
            with m.If(last_beat):
                m.d.sync += [beat.eq(0), slot.eq(~slot)]
                m.d.sync += token.eq(token + 1)
                with m.If(last_token):
                    m.d.sync += token.eq(0)
                    with m.If(query):
                        m.d.sync += [query.eq(0), head.eq(head + 1)]
                        with m.If(head + 1 == self.heads):
                            m.d.sync += active.eq(0)
                    with m.Else():
                        m.d.sync += query.eq(1)

        with m.If(self.release):
            m.d.sync += [full.bit_select(read_slot, 1).eq(0), read_slot.eq(~read_slot)]

        with m.If(self.start):
            m.d.sync += [active.eq(self.heads != 0), head.eq(0), query.eq(0), token.eq(0),
                         beat.eq(0), slot.eq(0), read_slot.eq(0), full.eq(0)]
        return m
