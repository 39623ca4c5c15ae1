"""The SpMM of a head's second phase: o_i = sum_j p_ij v_j over the kept entries, output-
stationary on the whole MAC bank, then requantized into `out` (docs/vitcod.md, "The
hardware")."""

from amaranth.hdl import Array, Cat, Module, Mux, Signal, unsigned
from amaranth.utils import exact_log2
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .mac_bank import MacBank, bank_signature
from ..common.delay import delayed
from ..common.fanout import register_copies
from .output_stage import OutputStage, output_latency
from ..shell.contract import buffer_port_signature, read_port_signature
from ...engines.vitcod.spec import V_OPERAND_REGISTER, V_READ_LATENCY, VitcodParams, buffers
from ...spec.numerics import MULT_BITS, SHIFT_BITS

__all__ = ["OFFER_TO_BANK", "START_TO_OFFER", "Spmm", "entry_layout", "spmm_latency"]

# Cycles from an entry offered on an idle SpMM to its first slice on the bank: it is
# registered with its v address, whose read returns the row V_READ_LATENCY cycles later,
# and the row's slice is registered (V_OPERAND_REGISTER) before the bank's operand
# multiplexer.
OFFER_TO_BANK = 1 + V_READ_LATENCY + V_OPERAND_REGISTER
# `entries.ready` rises the cycle after the start pulse.
START_TO_OFFER = 1
# Accumulator units each copy of the products' `valid` and `first` tags drives.
GROUP = 4


def entry_layout(params):
    """One kept entry of row i, in row order: column j, probability p_ij (0 .. 2^F) and
    `last` on the row's final entry. `row` is informative: the SpMM counts rows itself."""
    return data.StructLayout({
        "row": unsigned(params.token_bits),
        "col": unsigned(params.token_bits),
        "p": unsigned(params.prob_width),
        "last": 1,
    })


def spmm_latency(params):
    """Cycles an uninterrupted run takes beyond its E·d/M entry cycles (Spmm, "latency"):
    d / out_lanes + START_TO_OFFER + OFFER_TO_BANK + MacBank.latency + REQUANT_LATENCY."""
    return START_TO_OFFER + OFFER_TO_BANK + MacBank.latency + output_latency(params)


class Spmm(wiring.Component):
    """P·V of one head over a stream of kept entries, output-stationary.

    `start` (while not busy) samples `tokens` N, `head_base` (v row j of the head is word
    head_base + j, output row i goes to word head_base + i), `out_mult` and `out_shift`;
    `busy` stays high until all N rows are written to `out`. `entries` carries N rows in
    order, each with at least one entry and `last` on its final one (entry_layout).

    Each entry reads v row head_base + col (`v`: address registered, data V_READ_LATENCY
    cycles later; X's slice index waits for it in Y, which picks the slice into a
    register, Z, V_OPERAND_REGISTER cycles before the bank; p and the tags wait for Z)
    and spends S = d / M cycles on the M multipliers of the bank (`mul`): slice s
    presents v[sM .. sM+M-1] (sign-extended) and p (zero-extended). The products come back
    MacBank.latency cycles later into S rotating groups of M accumulators (out_acc_width
    bits, two's complement wrap; the row's sum always fits): a row's first entry loads
    them, later ones add. The final product of a row goes with the other groups straight
    into the OutputStage's working register, so the next row starts at once.

    Schedule: the bank and the output stage never stall, so a row's sums reach the output
    stage exactly S + V_READ_LATENCY + V_OPERAND_REGISTER cycles after its last entry left
    the entry register. The output stage takes a row every K = d / out_lanes cycles, so a
    row's last entry waits (and `entries.ready` falls) until K cycles after the previous
    row's last entry: a counter (`gap`), no path from the output stage. Entry k of the run
    (0-based, all rows) has its first slice on the bank in cycle

        b_k = max(o_k + OFFER_TO_BANK, b_(k-1) + S, b_l + K if k ends a row)

    with the start pulse in cycle 0, o_k the first cycle `entries` offers it (1 if it was
    offered before) and l the previous row's last entry. With its entries there, a row of
    e entries thus ends max(e·S, K) cycles after the previous one: the floor a row is
    max(S, K). The last row's word is written in cycle b + S + K + 5 and `busy` is low
    from cycle b + S + K + 6 on (b its last entry's first slice on the bank). With
    `entries` always valid that is cycle

        e_0·S + sum over rows n >= 1 of max(e_n·S, K) + `latency`,

    latency = spmm_latency = START_TO_OFFER + OFFER_TO_BANK + MacBank.latency + OutputStage
    latency (K + Requantizer.latency): E·S plus that when every row but the first has
    e·S >= K.
    """

    def __init__(self, params):
        if not isinstance(params, VitcodParams):
            raise TypeError(f"params must be a VitcodParams, not {params!r}")
        self.params = params
        self.slices = params.spmm_cycles
        self.latency = spmm_latency(params)
        bufs = {b.name: b for b in buffers(params)}
        super().__init__({
            "start": In(1),
            "tokens": In(unsigned(params.token_bits + 1)),
            "head_base": In(range(bufs["v"].depth)),
            "out_mult": In(unsigned(MULT_BITS)),
            "out_shift": In(unsigned(SHIFT_BITS)),
            "busy": Out(1),
            "entries": In(stream.Signature(entry_layout(params))),
            "v": Out(read_port_signature(bufs["v"])),
            "mul": Out(bank_signature(params.spmm_units)),
            "out": Out(buffer_port_signature(bufs["out"])),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        units, slices, w = p.spmm_units, self.slices, p.operand_width
        acc_width = p.out_acc_width

        m.submodules.output = output = OutputStage(p)
        wiring.connect(m, wiring.flipped(self.out), output.out)

        # -- the run --------------------------------------------------------------------
        head_base = Signal.like(self.head_base)
        rows_in = Signal(range(p.max_tokens + 1))     # rows whose entries are still to come
        rows_some = Signal()                          # rows_in != 0, kept in a register
        rows_left = Signal(range(p.max_tokens + 1))   # rows not yet handed off
        next_first = Signal()                         # the next entry starts a row
        next_addr = Signal.like(self.head_base)       # out word of the next row handed off
        out_mult = Signal.like(self.out_mult)
        out_shift = Signal.like(self.out_shift)
        m.d.comb += [output.multiplier.eq(out_mult), output.shift.eq(out_shift)]
        with m.If(self.start):
            m.d.sync += [head_base.eq(self.head_base), next_addr.eq(self.head_base),
                         rows_in.eq(self.tokens), rows_some.eq(self.tokens != 0),
                         rows_left.eq(self.tokens),
                         next_first.eq(1), out_mult.eq(self.out_mult),
                         out_shift.eq(self.out_shift)]

        # -- the row spacing the output stage needs: K cycles between last entries --------
        chunks = p.head_dim // p.out_lanes
        gap = Signal(range(chunks))        # cycles until a row's last entry may move
        # gap == 0, rows_in != 0 and x_k == S - 1 are registers set with their counters:
        # `entries.ready` leaves flip-flops through two LUT levels (the compares on the
        # way, gap through ready into the softmax unit's output queue was a ViTCoD build's
        # worst path: 9.8 ns, 7 levels).
        gap_clear = Signal(init=1)

        # -- R: the accepted entry, its v row being read ----------------------------------
        r_valid, r_first, r_last = Signal(), Signal(), Signal()
        r_addr = Signal.like(self.v.addr)
        r_p = Signal(p.prob_width)
        # -- X: the entry whose v word is read, slice x_k this cycle ---------------------
        x_valid, x_first, x_last = Signal(), Signal(), Signal()
        x_addr = Signal.like(self.v.addr)
        x_p = Signal(p.prob_width)
        x_k = Signal(range(slices))                  # no bits at all when S = 1
        x_final = Signal(init=slices == 1)           # x_k == S - 1

        x_free = ~x_valid | x_final                  # X takes a new entry next cycle
        r_move = Signal()
        m.d.comb += r_move.eq(r_valid & x_free & (~r_last | gap_clear))
        entry = self.entries.payload
        accept = self.entries.valid & self.entries.ready
        m.d.comb += self.entries.ready.eq(rows_some & (~r_valid | r_move))
        # v's address: X's row while X has slices left (so it is read again), else R's;
        # with row_beats b, the word (of b a row) that holds the next cycle's slice.
        x_next = x_valid & ~x_final
        v_row = Mux(x_next, x_addr, r_addr)
        per_word = slices // p.beats             # slices a v word holds
        if p.beats > 1:
            next_k = Mux(x_next, x_k + 1, 0)
            word_of = Array(k // per_word for k in range(slices))
            v_word = Signal(exact_log2(p.beats))
            m.d.comb += [v_word.eq(word_of[next_k]), self.v.addr.eq(Cat(v_word, v_row))]
        else:
            m.d.comb += self.v.addr.eq(v_row)

        with m.If(accept):
            m.d.sync += [r_valid.eq(1), r_addr.eq(head_base + entry.col), r_p.eq(entry.p),
                         r_first.eq(next_first), r_last.eq(entry.last),
                         next_first.eq(entry.last)]
            with m.If(entry.last):
                m.d.sync += [rows_in.eq(rows_in - 1), rows_some.eq(rows_in != 1)]
        with m.Elif(r_move):
            m.d.sync += r_valid.eq(0)

        with m.If(x_valid & ~x_final):
            m.d.sync += [x_k.eq(x_k + 1), x_final.eq(x_k == slices - 2)]
        with m.Elif(r_move):
            m.d.sync += [x_valid.eq(1), x_addr.eq(r_addr), x_p.eq(r_p), x_first.eq(r_first),
                         x_last.eq(r_last)]
            m.d.sync += [x_k.eq(0), x_final.eq(slices == 1)]
        with m.Elif(x_valid):
            m.d.sync += x_valid.eq(0)

        with m.If(r_move & r_last):
            m.d.sync += [gap.eq(chunks - 1), gap_clear.eq(chunks == 1)]
        with m.Elif(~gap_clear):
            m.d.sync += [gap.eq(gap - 1), gap_clear.eq(gap == 1)]

        # -- Y: X's slice, V_READ_LATENCY - 1 cycles later, when its v word arrives --------
        y_k = delayed(m, x_k, V_READ_LATENCY - 1, "y_k")
        # -- Z: that slice in a register on this side of the bank's operand multiplexer
        # (the block's net and the multiplexer's are then paths of their own), with p and
        # the tags, V_OPERAND_REGISTER cycles after Y ------------------------------------
        wait = V_READ_LATENCY - 1 + V_OPERAND_REGISTER
        z_valid, z_first, z_final, z_p = (
            delayed(m, value, wait, name) for value, name in
            ((x_valid, "z_valid"), (x_first, "z_first"), (x_last & x_final, "z_final"),
             (x_p, "z_p")))

        # -- operands: slice y_k of the v row, registered, and p -------------------------
        word = self.v.data
        if per_word == slices:
            part = word.word_select(y_k, units * w) if slices > 1 else word
        elif per_word > 1:
            within = Signal(range(per_word))
            m.d.comb += within.eq(Array(k % per_word for k in range(slices))[y_k])
            part = word.word_select(within, units * w)
        else:
            part = word
        operand = delayed(m, part[:units * w], V_OPERAND_REGISTER, "z_slice")
        for k in range(units):
            m.d.comb += [self.mul.a[k].eq(operand[k * w:(k + 1) * w].as_signed()),
                         self.mul.b[k].eq(z_p)]

        # The products' tags, MacBank.latency cycles behind the operands. The last stage's
        # `valid` and `first` also in a copy for every GROUP units: each drives its units'
        # accumulators (one register for all of them was a build's worst path, an 8.2 ns
        # net into every accumulator's adder).
        valid, first, final = z_valid, z_first, z_final
        for stage in range(MacBank.latency):
            if stage == MacBank.latency - 1:
                copies = -(-units // GROUP)
                valid_copies = register_copies(m, "prod_valid", valid, copies)
                first_copies = register_copies(m, "prod_first", first, copies)
                # The row's handoff (`valid & final` of this stage) into the output
                # stage's working register, in copies too (one net into its 64 lanes
                # was a build's worst path, 8.5 ns).
                handoff = register_copies(m, "handoff", valid & final,
                                          len(output.load))
            tags = (Signal(name=f"prod_valid_{stage}"), Signal(name=f"prod_first_{stage}"),
                    Signal(name=f"prod_final_{stage}"))
            m.d.sync += [tags[0].eq(valid), tags[1].eq(first), tags[2].eq(final)]
            valid, first, final = tags

        # -- accumulators: S groups of M rotating with the slices (head = this slice) -----
        acc = [Signal(data.ArrayLayout(unsigned(acc_width), units), name=f"acc_{s}")
               for s in range(slices)]
        new = Signal(data.ArrayLayout(unsigned(acc_width), units))
        for k in range(units):
            base = Mux(first_copies[k // GROUP], 0, acc[0][k])
            m.d.comb += new[k].eq(base + self.mul.p[k])     # wraps at out_acc_width
        rotated = acc[1:] + [new]
        for k in range(units):
            with m.If(valid_copies[k // GROUP]):
                m.d.sync += [a[k].eq(b[k]) for a, b in zip(acc, rotated)]
        # A finished row goes to the output stage as its final product arrives; the
        # schedule above guarantees that the stage takes it (it is always ready).
        m.d.comb += [
            output.row.sums.as_value().eq(Cat(*(g.as_value() for g in rotated))),
            output.row.addr.eq(next_addr),
            output.load.eq(Cat(handoff)),
        ]
        with m.If(valid & final):
            m.d.sync += [next_addr.eq(next_addr + 1), rows_left.eq(rows_left - 1)]

        m.d.comb += self.busy.eq((rows_left != 0) | output.busy)
        return m
