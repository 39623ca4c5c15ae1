"""The ViTCoD softmax unit: a head's kept scores in, its probabilities out, row by row
(docs/vitcod.md, "The hardware", phase 2's front half), bit for bit as
celine.golden.vitcod.attention.softmax_int computes them."""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ...engines.vitcod.spec import CSR_READ_LATENCY, X_BITS, VitcodParams, buffers, csr_fields
from ...spec.numerics import MULT_BITS, SHIFT_BITS
from ..common.compare import greater_than
from ..common.delay import delayed
from ..common.multiplier import RegisteredMultiplier
from ..common.shaped_queue import ShapedQueue, _rejected
from ..common.skid import SkidBuffer
from ..shell.block_ram import BlockRAM
from ..shell.contract import read_port_signature
from .divider import ReciprocalPipeline
from .exp_unit import E_WIDTH, ExpUnit
from .mac_bank import OPERAND_WIDTH

__all__ = ["ROW_MAX_READ_LATENCY", "SCORE_READ_LATENCY", "SoftmaxUnit", "entry_layout",
           "row_max_port_signature", "score_port_signature"]

# Cycles from an address on ``dense_scores``, ``sparse_scores`` or ``row_max`` to its
# score: the score memories are block RAMs read through their output registers (core.py)
# and the row maxima come out of a register (RowMax), which stand for stage 1's first
# register (an unregistered block output into it was a ViTCoD build's worst path, 9.3 ns).
SCORE_READ_LATENCY = 2
# Cycles from an address on ``row_max`` to its maximum: one more (RowMax compares its two
# maxima into a register of their own). The walk reads a row's maximum a row ahead, so
# it is there when the row's first entry needs it (see row_max_port_signature).
ROW_MAX_READ_LATENCY = SCORE_READ_LATENCY + 1

# The queues are filled on credit (a count of the words issued and not yet taken out), so
# nothing upstream of them stalls. That needs a ShapedQueue of depth >= 3, which takes a
# beat whenever its level is below its depth (at depth 2 it may not).
# CSR words prefetched (read, queued or in the walk's head register): one a cycle needs
# CSR_READ_LATENCY + 4 (the reads in flight, the queue's two stages, the head register,
# the word being taken); one fewer halves the rate.
CSR_QUEUE_DEPTH = CSR_READ_LATENCY + 4
OUT_QUEUE_DEPTH = 10     # stage 2's six stages, the output queue's two, the late credit
# Cycles of stage 1's pipeline and of the bookkeeping around the divider that the entry
# queue covers besides a whole row, the ExpUnit and the divider (SoftmaxUnit.
# entry_queue_depth): with rows of max_tokens entries, 6 suffice to keep stage 1 at one
# entry a cycle (measured, tests/test_vitcod_softmax.py, throughput); 10 leave a margin.
ENTRY_QUEUE_SLACK = 10


def entry_layout(params):
    """A probability on the `entries` stream: its row, column (the key's token index), p (0 .. 2^F) and whether it is the row's last entry."""
    return data.StructLayout({"row": params.token_bits, "col": params.token_bits,
                              "p": params.prob_width, "last": 1})


def score_port_signature(params, depth):
    """A read port into a score memory of `depth` words: `addr` out, the signed score in
    SCORE_READ_LATENCY cycles later."""
    return wiring.Signature({"addr": Out(range(max(1, depth))),
                             "data": In(signed(params.score_width))})


def row_max_port_signature(params):
    """The read port into the row maxima: `addr` and `load` out, `data` in: `data` is the
    maximum of the row addressed ROW_MAX_READ_LATENCY cycles before if `load` was high
    the cycle before, else it holds. The address walks the rows: each cycle it holds or
    steps to the next row (RowMax reads a cycle ahead, at the address and the next)."""
    return wiring.Signature({"addr": Out(range(params.max_tokens)), "load": Out(1),
                             "data": In(signed(params.score_width))})


class SoftmaxUnit(wiring.Component):
    """The integer softmax of one head's kept scores, one entry a cycle.

    ``start`` (ignored while ``busy``) samples the head: ``tokens`` N (>= 1), ``globals``
    g (dense columns per row), ``nnz`` (CSR entries), ``exp_mult``, ``exp_shift``,
    ``list_base`` (the head's first CSR word) and ``gcols_base`` (its first gcols word).
    ``busy`` stays high until the cycle after the last entry of row N − 1 has been taken
    from ``entries``.

    Read ports (``addr`` out, ``data`` in the cycle after; the two score memories'
    SCORE_READ_LATENCY cycles after, the row maxima's as row_max_port_signature says):
    - ``dense_scores``: score (i, j) of the j-th global column (j < g) at i·max_global + j;
    - ``gcols``: the j-th global column's token index at gcols_base + j;
    - ``sparse_scores``: the score of the CSR entry at list position n at address n;
    - ``csr``: the CSR words (row, col), sorted by (row, col), at list_base + n;
    - ``row_max``: m_i at address i, over both kinds of scores.
    Every row must keep at least one entry (the caller's guarantee).

    - ``csr`` is the shell's read port into the ``csr`` buffer (rtl/shell/contract.py).
    ``entries`` (stream of entry_layout): for rows i = 0 .. N − 1, the dense entries
    (j = 0 .. g − 1, col the j-th global column's token index) and then the row's CSR entries in list order, each with p_ij and
    ``last`` on the row's last entry. Any ready pattern is honoured; ``valid`` and the
    payload come from registers.

    How: stage 1 walks the rows (a small walker that takes a dense column, else the head
    of a prefetched CSR queue while its row is the current one, else moves to the next
    row's first entry in the same cycle, so rows follow each other without a bubble),
    reads the score and the row maximum, computes e (ExpUnit) and the row sum S, which
    goes through the ReciprocalPipeline; r_i lands in a row-indexed memory. e and the
    column wait in the entry queue (block RAM) until r_i is there; stage 2 then reads r_i
    by the entry's row and computes p = min((e·r + 2^(R−F−1)) >> (R−F), 2^F) (e times
    17-bit chunks of r, one MULT18X18D each, registered before and after, then their
    sum, then the rounding) into a small output queue. Every block-RAM output goes
    straight into a register (an ECP5 block RAM's unregistered output takes ~5.8 ns); out
    of context on an ECP5-85F the unit at the default parameters reaches ~127 MHz.
    Nothing in the pipelines stalls: stage 1 issues an entry only while the entry
    queue has room for every entry issued and not yet taken out (a credit count), and
    stage 2 likewise against the output queue. The entry queue holds a whole row plus the
    entries issued while the row's sum goes through the divider, so with ``entries``
    always ready stage 1 never waits: a head takes at most entries + (its longest row) +
    ExpUnit.latency + recip_width + 16 + CSR_READ_LATENCY cycles from start to its last
    entry (the longest row because p of a row needs the row's whole sum first, so stage
    2 runs up to a row behind stage 1; measured at recip_width 22: + 43 with dense
    columns, + 48 with g = 0, whose first entry waits CSR_READ_LATENCY + 2 cycles for the
    CSR prefetch).
    """

    def __init__(self, params):
        try:
            if not isinstance(params, VitcodParams):
                raise TypeError(f"params must be a VitcodParams, not {params!r}")
        except Exception:
            _rejected(self)
            raise
        self.params = p = params
        csr_buffer, = (b for b in buffers(p) if b.name == "csr")
        gcols_buffer, = (b for b in buffers(p) if b.name == "gcols")
        self.csr_depth = csr_buffer.depth
        self.dense_depth = max(1, p.max_tokens * p.max_global)
        self.sparse_depth = max(1, p.sparse_capacity)
        self.entry_queue_depth = (p.max_tokens + ExpUnit.latency + p.recip_width
                                  + ENTRY_QUEUE_SLACK)
        super().__init__({
            "start": In(1),
            "tokens": In(p.token_bits + 1),
            "globals": In(p.token_bits + 1),
            "nnz": In(p.position_bits + 1),
            "exp_mult": In(MULT_BITS),
            "exp_shift": In(SHIFT_BITS),
            "list_base": In(range(self.csr_depth)),
            "gcols_base": In(range(gcols_buffer.depth + 1)),
            "busy": Out(1),
            "gcols": Out(read_port_signature(gcols_buffer)),
            "dense_scores": Out(score_port_signature(p, self.dense_depth)),
            "sparse_scores": Out(score_port_signature(p, self.sparse_depth)),
            "csr": Out(read_port_signature(csr_buffer)),
            "row_max": Out(row_max_port_signature(p)),
            "entries": Out(stream.Signature(entry_layout(p))),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        tb = p.token_bits
        start = self.start & ~self.busy

        # -- the head, sampled by start ----------------------------------------------------
        last_row = Signal(tb)                     # N - 1
        nnz = Signal.like(self.nnz)
        exp_mult = Signal.like(self.exp_mult)
        exp_shift = Signal.like(self.exp_shift)
        gcols_base = Signal.like(self.gcols_base)
        running = Signal()                        # stage 1's walk is on

        # -- the CSR prefetch: words list_base + n into a small queue, counted ------------
        csr_layout = data.StructLayout(dict(csr_fields(p)))
        m.submodules.csr_queue = csr_queue = ShapedQueue(csr_layout, CSR_QUEUE_DEPTH - 1)
        # The entries left to fetch, counted down, and whether any are (`fetch_more`, a
        # register: the count's compare with nnz into the fetch and on into the address's
        # enables was 8.2 ns in a build).
        fetch_left = Signal.like(self.nnz)
        fetch_more = Signal()
        fetch_addr = Signal(range(self.csr_depth + 1))
        csr_held = Signal(range(CSR_QUEUE_DEPTH + 1))   # in flight, queued or the head
        fetch = Signal()
        pop = Signal()
        # The reads in flight: the word of fetched_d<CSR_READ_LATENCY> is on the port.
        fetched = delayed(m, fetch, CSR_READ_LATENCY, "fetched")
        m.d.comb += [
            fetch.eq(running & fetch_more & (csr_held != CSR_QUEUE_DEPTH)),
            self.csr.addr.eq(fetch_addr),
            csr_queue.i.valid.eq(fetched),
            csr_queue.i.payload.eq(self.csr.data),
        ]
        m.d.sync += csr_held.eq(csr_held + fetch - pop)
        with m.If(fetch):
            m.d.sync += [fetch_left.eq(fetch_left - 1), fetch_more.eq(fetch_left != 1),
                         fetch_addr.eq(fetch_addr + 1)]
        # The walk's head: the queue's first word in a register of its own, loaded when it
        # is empty or taken, with its row compared ahead (below: `here`, `here_next`), so
        # the walk's decision starts from flip-flops (the queue's head through the row
        # compare, row_done and the decision into the walk's enables was a ViTCoD build's
        # worst path on two seeds, 9.7 ns, 8 levels).
        head = Signal(csr_layout)
        head_valid = Signal()
        load = ~head_valid | pop
        m.d.comb += csr_queue.o.ready.eq(load)
        with m.If(load):
            m.d.sync += [head_valid.eq(csr_queue.o.valid), head.eq(csr_queue.o.payload)]
        with m.If(~running):
            m.d.comb += pop.eq(head_valid)        # words a malformed list left: dropped

        # -- stage 1's walker -------------------------------------------------------------
        row = Signal(tb)
        col = Signal(tb + 1)                      # the next dense column j
        dense_addr = Signal(range(self.dense_depth + 1))     # row * max_global + col
        next_base = Signal(range(self.dense_depth + p.max_global + 1))  # (row+1)*max_global
        list_pos = Signal.like(self.nnz)          # CSR entries taken
        occupancy = Signal(range(self.entry_queue_depth + 1))   # issued, not yet in stage 2
        # The held entry: it moves on when the next one is issued (or the walk ends), when
        # it is known whether it is its row's last.
        held = Signal()
        held_row = Signal(tb)
        held_col = Signal(tb)
        held_sparse = Signal()
        held_addr = Signal(range(max(self.dense_depth, self.sparse_depth)))
        held_gaddr = Signal.like(self.gcols.addr)     # a dense entry's gcols word
        # gcols_base + col, stepped with col (below): a dense entry's gcols word without an
        # adder after the walk's decision (the CSR queue's head through the issue and that
        # adder into held_gaddr was a ViTCoD build's worst path: 9.5 ns, 11 levels).
        dense_gaddr = Signal.like(self.gcols.addr)

        # Flags kept in registers, for a short decision path: col != g, list_pos != nnz,
        # row == N - 1, g != 0, g > 1.
        dense_left, sparse_left, on_last_row = Signal(), Signal(), Signal()
        has_dense, several_dense = Signal(), Signal()
        # g - 1: the dense run's last column, compared with `col` without an adder (col + 1
        # != g, an adder and a compare into dense_left's choice, was 8.4 ns in a build).
        last_gcol = Signal.like(self.globals)
        # nnz - 1: the list's last position, compared with `list_pos` without an adder
        # (list_pos + 1 != nnz into sparse_left was a ViTCoD build's worst path, 8.3 ns,
        # the adder's carry chain then four LUTs). Read only with nnz >= 1.
        last_pos = Signal.like(self.nnz)
        # here = head_valid & (head.row == row), here_next = head_valid & (head.row ==
        # row + 1, in tb bits): registers kept equal to those compares (formally:
        # engines/vitcod/proofs.py), set when the head loads (its row against row, row + 1
        # and row + 2, picked by whether the row advances) and when the row advances.
        here = Signal()
        here_next = Signal()
        advance_row = Signal()                    # the walk moves to row + 1 this cycle
        row_done = ~dense_left & (~sparse_left | (head_valid & ~here))
        # Whether the entry queue's credits are all out (occupancy >= depth - 1, an issue
        # being counted a cycle late): a register that follows `occupancy`'s steps
        # (below), so `issue` does not wait for a compare.
        full = Signal(name="entries_full")
        credit = ~full
        # The dense run's counters (col, dense_addr, dense_gaddr) step with each dense
        # issue and, outside a row's dense run, wait at the next row's second column (its
        # first goes with the row change, from gcols_base and next_base): so they do not
        # hang on the walk's whole decision (the row compare through row_done into
        # dense_gaddr's enable was a ViTCoD build's worst path, 9.2 ns, 7 levels). A dense
        # run implies the walk is on; start (below) overrides.
        gcols_next = Signal.like(self.gcols.addr)
        m.d.sync += gcols_next.eq(gcols_base + 1)
        with m.If(~dense_left):
            m.d.sync += [col.eq(1), dense_addr.eq(next_base + 1), dense_gaddr.eq(gcols_next)]
        with m.Elif(credit):
            m.d.sync += [col.eq(col + 1), dense_addr.eq(dense_addr + 1),
                         dense_gaddr.eq(dense_gaddr + 1)]
        issue = Signal()                          # a new entry into the held register
        new_row = Signal()                        # ... the first of the next row
        flush = Signal()                          # the walk's end: the held entry moves on
        new = {"row": Signal(tb), "col": Signal(tb), "sparse": Signal(),
               "addr": Signal.like(held_addr)}
        with m.If(running):
            with m.If(dense_left):
                m.d.comb += [issue.eq(credit), new["row"].eq(row), new["col"].eq(col),
                             new["addr"].eq(dense_addr)]
                with m.If(credit):
                    m.d.sync += dense_left.eq(col != last_gcol)
            with m.Elif(sparse_left & here):
                m.d.comb += [issue.eq(credit), pop.eq(credit), new["row"].eq(row),
                             new["col"].eq(head.col), new["sparse"].eq(1),
                             new["addr"].eq(list_pos)]
                with m.If(credit):
                    m.d.sync += [list_pos.eq(list_pos + 1),
                                 sparse_left.eq(list_pos != last_pos)]
            with m.Elif(row_done):
                with m.If(on_last_row):
                    m.d.comb += flush.eq(1)
                    m.d.sync += running.eq(0)
                with m.Elif(has_dense):
                    m.d.comb += [issue.eq(credit), new_row.eq(1), new["row"].eq(row + 1),
                                 new["addr"].eq(next_base)]
                    with m.If(credit):
                        m.d.comb += advance_row.eq(1)
                        m.d.sync += [row.eq(row + 1),
                                     next_base.eq(next_base + p.max_global),
                                     on_last_row.eq(row + 1 == last_row),
                                     dense_left.eq(several_dense)]
                with m.Elif(head_valid):      # g = 0: the head is row + 1's first entry
                    m.d.comb += [issue.eq(credit), new_row.eq(1), pop.eq(credit),
                                 new["row"].eq(row + 1), new["col"].eq(head.col),
                                 new["sparse"].eq(1), new["addr"].eq(list_pos)]
                    with m.If(credit):
                        m.d.comb += advance_row.eq(1)
                        m.d.sync += [row.eq(row + 1), list_pos.eq(list_pos + 1),
                                     on_last_row.eq(row + 1 == last_row),
                                     sparse_left.eq(list_pos != last_pos)]

        # The head's row compared ahead: against row + 1 and row + 2 (registers stepped
        # with row) where the row advances, the decision only picking.
        row_plus_1 = Signal(tb, init=1 % (1 << tb))      # (row + 1) mod 2^tb, as row wraps
        row_plus_2 = Signal(tb, init=2 % (1 << tb))
        with m.If(advance_row):
            m.d.sync += [row_plus_1.eq(row_plus_1 + 1), row_plus_2.eq(row_plus_2 + 1)]
        queued_row = csr_queue.o.payload.row
        with m.If(load):
            m.d.sync += [
                here.eq(csr_queue.o.valid & Mux(advance_row, queued_row == row_plus_1,
                                                queued_row == row)),
                here_next.eq(csr_queue.o.valid & Mux(advance_row, queued_row == row_plus_2,
                                                     queued_row == row_plus_1))]
        with m.Elif(advance_row):
            m.d.sync += [here.eq(here_next), here_next.eq(head.row == row_plus_2)]

        move = (issue & held) | flush
        # The row maxima are read a row ahead: `max_row` is the row the next row change
        # will hold (the first issue's, then one more at each), and the port's output
        # register loads it ROW_MAX_READ_LATENCY - 1 cycles after the change, when this
        # row's last entry, which moved with the change, has had the old maximum (its
        # stage 1 is that cycle) and before the new row's first entry reaches stage 1
        # (it moves a cycle later at the earliest).
        max_row = Signal(tb + 1)
        row_change = issue & (new_row | ~held)
        with m.If(row_change):
            m.d.sync += max_row.eq(max_row + 1)
        # Back to row 0 when the walk ends, so that the address only ever holds or steps
        # to the next row while it matters (row_max_port_signature): RowMax reads a cycle
        # ahead, and a head's first row may change the cycle after its start.
        with m.If(flush):
            m.d.sync += max_row.eq(0)
        changed = [Signal(name=f"row_changed_{k}") for k in range(ROW_MAX_READ_LATENCY - 1)]
        m.d.sync += [changed[0].eq(row_change),
                     *[later.eq(earlier) for earlier, later in zip(changed, changed[1:])]]
        m.d.comb += [self.row_max.addr.eq(max_row), self.row_max.load.eq(changed[-1])]
        with m.If(issue):
            m.d.sync += [held.eq(1), held_row.eq(new["row"]), held_col.eq(new["col"]),
                         held_sparse.eq(new["sparse"]), held_addr.eq(new["addr"]),
                         # (a dense entry is the row's next column, or its first)
                         held_gaddr.eq(Mux(dense_left, dense_gaddr, gcols_base))]
        with m.Elif(flush):
            m.d.sync += held.eq(0)

        # -- stage 1's data path: the reads, x, e and the row sum ------------------------
        m.d.comb += [self.dense_scores.addr.eq(held_addr), self.sparse_scores.addr.eq(held_addr),
                     self.gcols.addr.eq(held_gaddr)]
        tag = data.StructLayout({"row": tb, "col": tb, "last": 1})
        valid_0 = Signal()
        tag_0 = Signal(tag)
        sparse_0 = Signal()
        m.d.sync += [valid_0.eq(move), tag_0.row.eq(held_row), tag_0.col.eq(held_col),
                     tag_0.last.eq(new_row | flush), sparse_0.eq(held_sparse)]

        # The memories' outputs go straight into registers (a block RAM's output is slow):
        # the score memories' own output registers and RowMax's (read a row ahead), ours
        # for gcols.
        valid_1 = Signal()
        tag_1 = Signal(tag)
        sparse_1 = Signal()
        dense_1 = self.dense_scores.data
        sparse_score_1 = self.sparse_scores.data
        max_1 = self.row_max.data
        gcol_1 = Signal.like(self.gcols.data)
        m.d.sync += [valid_1.eq(valid_0), tag_1.eq(tag_0), sparse_1.eq(sparse_0),
                     gcol_1.eq(self.gcols.data)]
        # Stage 1b: the entry's score (dense or sparse) and the row's maximum into
        # registers here, before the subtraction: a score memory's block, placed across
        # the die, through the score pick into the subtraction's carry chain was a ViTCoD
        # build's worst path (7.96 ns: a 3.9 ns net from the block, 1.7 ns more to the
        # chain). A dense entry's column: the token index of its global column.
        valid_1b = Signal()
        tag_1b = Signal(tag)
        score_1b = Signal.like(dense_1, name="score_1b")
        max_1b = Signal.like(max_1, name="max_1b")
        m.d.sync += [valid_1b.eq(valid_1), tag_1b.eq(tag_1),
                     tag_1b.col.eq(Mux(sparse_1, tag_1.col, gcol_1)),
                     score_1b.eq(Mux(sparse_1, sparse_score_1, dense_1)), max_1b.eq(max_1)]
        valid_2 = Signal()
        tag_2 = Signal(tag)
        distance_2 = Signal(p.score_width + 1)   # m - s >= 0
        m.d.sync += [valid_2.eq(valid_1b), tag_2.eq(tag_1b),
                     distance_2.eq(max_1b - score_1b)]

        m.submodules.exp = exp = ExpUnit(tag)
        x_max = (1 << X_BITS) - 1
        # The clamp's compare as logic (common.compare.greater_than: the bits above x_max
        # ORed), not a carry chain: as `>` its chain and the nets to the multiplier's input
        # register were a ViTCoD build's worst path (8.4 ns).
        m.d.comb += [exp.valid.eq(valid_2), exp.tag.eq(tag_2),
                     exp.x.eq(Mux(greater_than(distance_2, x_max), x_max, distance_2)),
                     exp.exp_mult.eq(exp_mult), exp.exp_shift.eq(exp_shift)]
        e_tag = exp.out_tag

        queued = data.StructLayout({"e": E_WIDTH, "col": tb, "last": 1})
        m.submodules.entry_queue = entry_queue = ShapedQueue(queued, self.entry_queue_depth)
        m.d.comb += [entry_queue.i.valid.eq(exp.out_valid),
                     entry_queue.i.payload.e.eq(exp.e),
                     entry_queue.i.payload.col.eq(e_tag.col),
                     entry_queue.i.payload.last.eq(e_tag.last)]

        row_part = Signal(p.sum_width)          # the sum of the row's entries so far
        row_sum = Signal(p.sum_width)
        sum_valid = Signal()
        sum_row = Signal(tb)
        m.d.sync += sum_valid.eq(exp.out_valid & e_tag.last)
        with m.If(exp.out_valid):
            with m.If(e_tag.last):
                m.d.sync += [row_part.eq(0), row_sum.eq(row_part + exp.e),
                             sum_row.eq(e_tag.row)]
            with m.Else():
                m.d.sync += row_part.eq(row_part + exp.e)

        # -- the reciprocals, by row ------------------------------------------------------
        m.submodules.recip = recip = ReciprocalPipeline(p, tb)
        m.d.comb += [recip.valid.eq(sum_valid), recip.s.eq(row_sum), recip.tag.eq(sum_row)]
        # r by row, read through the block's output register (its array's 5.9 ns clock-to-
        # out straight into the multipliers' input registers was a ViTCoD build's worst
        # path, 9.1 ns): the read is issued a stage earlier instead (below).
        m.submodules.recips = recips = BlockRAM.for_bits(p.recip_width, p.max_tokens,
                                                         output_register=True)
        recips.write_word(m, recip.out_tag, recip.r, recip.out_valid)

        # -- stage 2: p = min((e * r + 2^(R-F-1)) >> (R-F), 2^F) ---------------------------
        # The queue's head goes straight from the block RAM into a register (loaded
        # whenever it is empty or taken), which stage 2 takes from: the block RAM's
        # output would be too slow for the row count and the checks that depend on it.
        head_held = Signal()
        queue_head = Signal(queued)
        row_2 = Signal(tb + 1)                    # the row of queue_head
        out_held = Signal(range(OUT_QUEUE_DEPTH + 1))   # taken, not yet delivered
        # Whether r of row_2 is in the memory and whether the output queue's credits are
        # all out: registers that follow their counts' steps (below), so `take` is an AND
        # of registers (with the compares, row_2 through `take` into stage 1's count was a
        # ViTCoD build's worst path, 9.2 ns). `ahead`: rows whose r is in the memory,
        # less row_2.
        ahead = Signal(tb + 1)
        known = Signal()
        out_full = Signal()
        take = Signal()
        advance = ~head_held | take
        m.d.comb += [
            take.eq(head_held & known & ~out_full),
            entry_queue.o.ready.eq(advance),
        ]
        with m.If(advance):
            m.d.sync += [head_held.eq(entry_queue.o.valid),
                         queue_head.eq(entry_queue.o.payload)]
        with m.If(take & queue_head.last):
            m.d.sync += row_2.eq(row_2 + 1)

        # The cycle an entry is taken its row (the register row_2) addresses r: a row taken
        # at t was written before t (`known` follows the write), so the read sees it.
        # a: the entry taken, r read; b: r in the block's output register; c: r
        # registered (in the multipliers); d: e times each MULT18X18D-sized chunk of r;
        # e: their sum; f: rounded and shifted. The tag rides along.
        out_tag = data.StructLayout({"row": tb, "col": tb, "last": 1})
        valid, tag_s = Signal(name="valid_a"), Signal(out_tag, name="tag_a")
        m.d.sync += [valid.eq(take), tag_s.row.eq(row_2), tag_s.col.eq(queue_head.col),
                     tag_s.last.eq(queue_head.last)]
        m.d.comb += recips.raddr.eq(row_2)
        for stage in "bcdef":
            valid_k, tag_k = Signal(name=f"valid_{stage}"), Signal(out_tag, name=f"tag_{stage}")
            m.d.sync += [valid_k.eq(valid), tag_k.eq(tag_s)]
            valid, tag_s = valid_k, tag_k
        # Stages c and d are each multiplier's own input and output registers
        # (RegisteredMultiplier: yosys would map `*` with them bypassed, and r's register
        # through the block into piece_d was a ViTCoD build's worst path, 9.8 ns).
        e_a, e_b = (Signal(E_WIDTH, name=f"e_{stage}") for stage in "ab")
        m.d.sync += [e_a.eq(queue_head.e), e_b.eq(e_a)]
        chunk = OPERAND_WIDTH - 1                 # unsigned operands of a signed multiplier
        pieces = []
        for low in range(0, p.recip_width, chunk):
            r_chunk = recips.data[low:min(low + chunk, p.recip_width)]
            mult = RegisteredMultiplier(E_WIDTH + 1, len(r_chunk) + 1)
            m.submodules[f"piece_{low}"] = mult
            m.d.comb += [mult.a.eq(e_b), mult.b.eq(r_chunk)]     # zero-extended: >= 0
            piece = mult.p[:E_WIDTH + len(r_chunk)]
            pieces.append(piece << low)
        product_e = Signal(E_WIDTH + p.recip_width)
        m.d.sync += product_e.eq(sum(pieces))
        drop = p.recip_shift - p.prob_bits
        rounded_f = Signal(len(product_e) - drop + 1)
        m.d.sync += rounded_f.eq((product_e + (1 << (drop - 1))) >> drop)

        one = 1 << p.prob_bits
        m.submodules.out_queue = out_queue = ShapedQueue(entry_layout(p), OUT_QUEUE_DEPTH)
        m.d.comb += [
            out_queue.i.valid.eq(valid),
            out_queue.i.payload.row.eq(tag_s.row),
            out_queue.i.payload.col.eq(tag_s.col),
            out_queue.i.payload.p.eq(Mux(rounded_f > one, one, rounded_f)),
            out_queue.i.payload.last.eq(tag_s.last),
        ]
        # `entries` through a skid entry whose `i.ready` is a register (SkidBuffer with a
        # pass-through output: no latency): the consumer's `ready` into the queue's read
        # logic (its level, pointers and output register's enables) was a ViTCoD build's
        # worst path, 8.65 ns with a 2.7 ns net from the SpMM.
        m.submodules.out_skid = out_skid = SkidBuffer(entry_layout(p), registered_output=False)
        wiring.connect(m, out_queue.o, out_skid.i)
        m.d.comb += [
            self.entries.valid.eq(out_skid.o.valid),
            self.entries.payload.eq(out_skid.o.payload),
            out_skid.o.ready.eq(self.entries.ready),
        ]
        # A delivery returns its credit a cycle late (`returned`, a register): the
        # consumer's `ready` through the count's adder was a ViTCoD build's slow path (8.0
        # ns into out_held). The count stays at or above the entries on their way, so the
        # queue never overflows; the late credit is why OUT_QUEUE_DEPTH is 10.
        delivered = self.entries.valid & self.entries.ready
        returned = Signal()
        m.d.sync += returned.eq(delivered)
        m.d.sync += [
            out_held.eq(out_held + take - returned),
            out_full.eq(Mux(take & ~returned, out_held == OUT_QUEUE_DEPTH - 1,
                            Mux(returned & ~take, 0, out_full))),
        ]
        row_known, row_done = recip.out_valid, take & queue_head.last
        m.d.sync += [
            ahead.eq(ahead + row_known - row_done),
            known.eq(Mux(row_known & ~row_done, 1,
                         Mux(row_done & ~row_known, ahead != 1, known))),
        ]
        # `occupancy` steps by one at most: its next value is chosen among values made from
        # registers, so `issue` (the end of stage 1's decision) selects rather than feeds
        # an adder's carry chain (one build's worst path: the row compare through `issue`
        # into this count, 10.0 ns, 14 levels).
        # An issue is counted a cycle late (`issued`, a register: `issue` into the count
        # and its flag was a ViTCoD build's slow path, 8.2 ns), so the credits run out one
        # early: `full` from depth - 1 counted, the one not yet counted making depth. With
        # an issue every cycle the count lags by one and the queue still fills to depth.
        issued = Signal(name="issued_late")
        m.d.sync += issued.eq(issue)
        depth = self.entry_queue_depth
        up, down = issued & ~take, take & ~issued
        m.d.sync += [
            occupancy.eq(Mux(up, occupancy + 1, Mux(down, occupancy - 1, occupancy))),
            full.eq(Mux(up, full | (occupancy == depth - 2),
                        Mux(down, occupancy == depth, full))),
        ]

        # `busy` falls the cycle after the last entry is delivered (`delivered_last`, a
        # register: the consumer's `ready` into busy's enable was a ViTCoD build's slow
        # path, 7.9 ns).
        delivered_last = Signal()
        m.d.sync += delivered_last.eq(delivered & self.entries.payload.last
                                      & (self.entries.payload.row == last_row))
        with m.If(delivered_last):
            m.d.sync += self.busy.eq(0)

        # -- start (last: it overrides the above) ----------------------------------------
        with m.If(start):
            m.d.sync += [
                self.busy.eq(1), running.eq(1),
                last_row.eq(self.tokens - 1), nnz.eq(self.nnz), last_pos.eq(self.nnz - 1),
                last_gcol.eq(self.globals - 1),
                exp_mult.eq(self.exp_mult), exp_shift.eq(self.exp_shift),
                gcols_base.eq(self.gcols_base),
                fetch_left.eq(self.nnz), fetch_more.eq(self.nnz != 0),
                fetch_addr.eq(self.list_base),
                row.eq(0), col.eq(0), dense_gaddr.eq(self.gcols_base), dense_addr.eq(0),
                next_base.eq(p.max_global),
                dense_left.eq(self.globals != 0), has_dense.eq(self.globals != 0),
                several_dense.eq(self.globals > 1), sparse_left.eq(self.nnz != 0),
                on_last_row.eq(self.tokens == 1),
                list_pos.eq(0), row_part.eq(0), ahead.eq(0), known.eq(0), row_2.eq(0),
                max_row.eq(0), row_plus_1.eq(1 % (1 << tb)), row_plus_2.eq(2 % (1 << tb)),
                # the head's compares against row 0 (a head left from a malformed list
                # is dropped before the next start, but the flags hold regardless)
                here.eq(Mux(load, csr_queue.o.valid & (queued_row == 0),
                            head_valid & (head.row == 0))),
                here_next.eq(Mux(load, csr_queue.o.valid & (queued_row == 1),
                                 head_valid & (head.row == 1))),
            ]
        return m
