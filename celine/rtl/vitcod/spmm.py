"""The SpMM of a head's second phase: o_i = sum_j p_ij v_j over the kept entries, output-
stationary on the whole MAC bank, then requantized into `out` (docs/vitcod.md, "The
hardware")."""

from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .mac_bank import MacBank, bank_signature
from .output_stage import OutputStage, output_latency, row_layout
from ..shell.contract import buffer_port_signature, read_port_signature
from ...engines.vitcod.spec import VitcodParams, buffers
from ...spec.numerics import MULT_BITS, SHIFT_BITS

__all__ = ["Spmm", "entry_layout", "spmm_latency"]

# Cycles from the start pulse to the first entry's first slice on the bank: `ready` rises
# the cycle after start, an accepted entry is registered with its v address, and v's
# synchronous read returns the row a cycle later.
START_TO_ISSUE = 3
# The accumulator that takes a row's final product is copied into the hand-off register
# in the same cycle; the row is offered to the output stage one cycle later.
CAPTURE = 1


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
    """Cycles an uninterrupted run takes beyond its E·d/M entry cycles (Spmm, "latency")."""
    return START_TO_ISSUE + MacBank.latency + CAPTURE + output_latency(params)


class Spmm(wiring.Component):
    """P·V of one head over a stream of kept entries, output-stationary.

    `start` (while not busy) samples `tokens` N, `head_base` (v row j of the head is word
    head_base + j, output row i goes to word head_base + i), `out_mult` and `out_shift`;
    `busy` stays high until all N rows are written to `out`. `entries` carries N rows in
    order, each with at least one entry and `last` on its final one (entry_layout).

    Each entry reads v row head_base + col (`v`: address registered, data one cycle later)
    and spends S = d / M cycles on the M multipliers of the bank (`mul`): slice s presents
    v[sM .. sM+M-1] (sign-extended) and p (zero-extended). The products come back
    MacBank.latency cycles later into S rotating groups of M accumulators (out_acc_width
    bits, two's complement wrap; the row's sum always fits): a row's first entry loads
    them, later ones add. The final product of a row goes with the other groups into a
    hand-off register offered to the OutputStage, so the next row starts at once.

    Backpressure: a row's last entry starts only when the hand-off register will be free
    (it is reserved from then until the output stage takes the row), so no product is
    ever lost; meanwhile the entry waits and `entries.ready` falls. With `entries` always
    valid one entry is taken every S cycles as long as each row lasts at least
    max(S + 3, d / out_lanes) cycles (shorter rows are output-bound).

    With `entries` always valid and no such stall, `busy` falls E·S + `latency` cycles after
    the start pulse, E the entries of the run: latency = START_TO_ISSUE + MacBank.latency +
    CAPTURE + OutputStage latency (d / out_lanes + Requantizer.latency) = d / out_lanes + 10.
    """

    def __init__(self, params):
        if not isinstance(params, VitcodParams):
            raise TypeError(f"params must be a VitcodParams, not {params!r}")
        if params.head_dim % params.mac_units:
            raise ValueError(f"dense_macs + sparse_macs must divide head_dim "
                             f"({params.head_dim}) in the SpMM, not {params.mac_units!r}")
        self.params = params
        self.slices = params.head_dim // params.mac_units
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
            "mul": Out(bank_signature(params.mac_units)),
            "out": Out(buffer_port_signature(bufs["out"])),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        units, slices, w = p.mac_units, self.slices, p.operand_width
        acc_width = p.out_acc_width

        m.submodules.output = output = OutputStage(p)
        wiring.connect(m, wiring.flipped(self.out), output.out)

        # -- the run --------------------------------------------------------------------
        head_base = Signal.like(self.head_base)
        rows_in = Signal(range(p.max_tokens + 1))     # rows whose entries are still to come
        rows_left = Signal(range(p.max_tokens + 1))   # rows not yet handed off
        next_first = Signal()                         # the next entry starts a row
        next_addr = Signal.like(self.head_base)       # out word of the next row handed off
        out_mult = Signal.like(self.out_mult)
        out_shift = Signal.like(self.out_shift)
        m.d.comb += [output.multiplier.eq(out_mult), output.shift.eq(out_shift)]
        with m.If(self.start):
            m.d.sync += [head_base.eq(self.head_base), next_addr.eq(self.head_base),
                         rows_in.eq(self.tokens), rows_left.eq(self.tokens),
                         next_first.eq(1), out_mult.eq(self.out_mult),
                         out_shift.eq(self.out_shift)]

        # -- hand-off register (declared here: its reservation gates the issue) ------------
        done = Signal(row_layout(p))
        done_valid = Signal()
        reserved = Signal()        # a row's last entry has started; its sums go to `done`
        take = Signal()
        m.d.comb += [
            output.rows.payload.eq(done),
            output.rows.valid.eq(done_valid),
            take.eq(done_valid & output.rows.ready),
        ]

        # -- R: the accepted entry, its v row being read ----------------------------------
        r_valid, r_first, r_last = Signal(), Signal(), Signal()
        r_addr = Signal.like(self.v.addr)
        r_p = Signal(p.prob_width)
        # -- X: the entry on the bank, slice x_k this cycle -------------------------------
        x_valid, x_first, x_last = Signal(), Signal(), Signal()
        x_addr = Signal.like(self.v.addr)
        x_p = Signal(p.prob_width)
        x_k = Signal(range(slices))                  # no bits at all when S = 1
        x_final = x_k == slices - 1

        x_free = ~x_valid | x_final                  # X takes a new entry next cycle
        r_move = Signal()
        m.d.comb += r_move.eq(r_valid & x_free & (~r_last | ~reserved | take))
        entry = self.entries.payload
        accept = self.entries.valid & self.entries.ready
        m.d.comb += self.entries.ready.eq((rows_in != 0) & (~r_valid | r_move))
        # v's address: X's row while X has slices left (so it is read again), else R's.
        m.d.comb += self.v.addr.eq(Mux(x_valid & ~x_final, x_addr, r_addr))

        with m.If(accept):
            m.d.sync += [r_valid.eq(1), r_addr.eq(head_base + entry.col), r_p.eq(entry.p),
                         r_first.eq(next_first), r_last.eq(entry.last),
                         next_first.eq(entry.last)]
            with m.If(entry.last):
                m.d.sync += rows_in.eq(rows_in - 1)
        with m.Elif(r_move):
            m.d.sync += r_valid.eq(0)

        with m.If(x_valid & ~x_final):
            m.d.sync += x_k.eq(x_k + 1)
        with m.Elif(r_move):
            m.d.sync += [x_valid.eq(1), x_addr.eq(r_addr), x_p.eq(r_p), x_first.eq(r_first),
                         x_last.eq(r_last)]
            m.d.sync += x_k.eq(0)
        with m.Elif(x_valid):
            m.d.sync += x_valid.eq(0)

        with m.If(r_move & r_last):
            m.d.sync += reserved.eq(1)
        with m.Elif(take):
            m.d.sync += reserved.eq(0)

        # -- operands: slice x_k of the v row, and p -------------------------------------
        row = self.v.data
        part = row.word_select(x_k, units * w) if slices > 1 else row
        for k in range(units):
            m.d.comb += [self.mul.a[k].eq(part[k * w:(k + 1) * w].as_signed()),
                         self.mul.b[k].eq(x_p)]

        # The products' tags, MacBank.latency cycles behind the operands.
        valid, first, final = x_valid, x_first, x_last & x_final
        for stage in range(MacBank.latency):
            tags = (Signal(name=f"prod_valid_{stage}"), Signal(name=f"prod_first_{stage}"),
                    Signal(name=f"prod_final_{stage}"))
            m.d.sync += [tags[0].eq(valid), tags[1].eq(first), tags[2].eq(final)]
            valid, first, final = tags

        # -- accumulators: S groups of M rotating with the slices (head = this slice) -----
        acc = [Signal(data.ArrayLayout(unsigned(acc_width), units), name=f"acc_{s}")
               for s in range(slices)]
        new = Signal(data.ArrayLayout(unsigned(acc_width), units))
        for k in range(units):
            base = Mux(first, 0, acc[0][k])
            m.d.comb += new[k].eq(base + self.mul.p[k])     # wraps at out_acc_width
        rotated = acc[1:] + [new]
        with m.If(valid):
            m.d.sync += [a.eq(b) for a, b in zip(acc, rotated)]
            with m.If(final):
                m.d.sync += [
                    done.sums.as_value().eq(Cat(*(g.as_value() for g in rotated))),
                    done.addr.eq(next_addr),
                    next_addr.eq(next_addr + 1),
                    rows_left.eq(rows_left - 1),
                ]

        with m.If(valid & final):
            m.d.sync += done_valid.eq(1)
        with m.Elif(take):
            m.d.sync += done_valid.eq(0)

        m.d.comb += self.busy.eq((rows_left != 0) | done_valid | output.busy)
        return m
