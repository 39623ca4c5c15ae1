"""ViTCoD's formal proofs (`PROOFS`, the record's `proofs`; docs/formal.md): its softmax
unit (rtl/vitcod/softmax_unit.py): none of its three queues, each filled on credit, ever
overflows.

Nothing upstream of the unit's queues stalls: each is filled on credit, a count of the
words let in and not yet taken out, and a word is let in only while the count is below
what the queue holds:

- the CSR prefetch: a read of the `csr` buffer is issued only while `csr_held` (reads in
  flight, words queued and the walk's head register) is below CSR_QUEUE_DEPTH; the word
  lands in `csr_queue` CSR_READ_LATENCY cycles later, and the walk's head register takes
  it from there (its row's compares, `here` and `here_next`, kept in registers, are
  proven equal to the compares);
- stage 1: an entry is issued only while `occupancy` (entries issued and not yet taken
  by stage 2, an issue counted a cycle late: `issued_late`) is below the entry queue's
  depth less one; it waits in the held register, goes
  through the reads and the ExpUnit into `entry_queue`, and stage 2 takes it into its
  head register;
- stage 2: an entry is taken only while `out_held` (taken and not yet delivered on
  `entries`, a delivery counted a cycle late) is below OUT_QUEUE_DEPTH; six stages later
  it lands in `out_queue`.

Every input of the unit is free (`start` and the head's settings, every read port's
data, `entries.ready`, the reset), but for the caller's contract as far as the credits
need it (Assumes): a head started has 1 <= N <= max_tokens tokens and some entry (g > 0
or nnz > 0), and the CSR words the walk takes (the head of its CSR queue) are of rows
below N. The scores, the column indices, the order of the CSR words are anything.
Asserted every cycle: no queue is ever offered a word it has no room for (its `i.valid`
implies its `i.ready`); each credit count stays within its queue's depth; an entry
offered on `entries` and not taken stays, unchanged.

The invariant: each count is the words on their way (the read in flight; the held entry,
the pipeline's valid bits, the ExpUnit's, the head register; stage 2's six valid bits,
the delivery not yet counted and the output's skid entry) plus its queue's level; each
queue's invariant without its words (celine.formal.credits.fifo_invariant: a ShapedQueue
of depth 3 or more takes a word whenever its level is below its depth); and, while the
walk has issued nothing yet, it is on row 0 with nothing of the list taken and
`on_last_row` as N says. Its flags of what is left of the row (dense columns, CSR
entries) are not named signals, so the invariant cannot say that such a walk has an
entry to come; the induction's second step does (a walk with nothing to come flushes at
once), so the proof closes at depth 2.

Without the contract the count does not hold: a head of one token whose row has no
entry (g = 0 and nnz = 0, or a first CSR word of another row) ends its walk with the
held register empty, and the flush sends an entry nobody counted down the pipeline;
when stage 2 takes it, `occupancy` wraps below 0 and stays one short of the entries in
flight until a reset. (The engine's CsrCheck rejects such a head before the softmax
unit starts: docs/formal.md.)
"""

from amaranth.hdl import Assert, Assume, Module
from amaranth.lib import data, wiring
from amaranth.lib.wiring import Out

from ...formal.credits import fifo_invariant, stalled_beat_held
from ...formal.insides import Insides
from ...formal.prove import Proof
from ...rtl.vitcod import softmax_unit
from ...rtl.vitcod.exp_unit import ExpUnit
from .spec import CSR_READ_LATENCY, VitcodParams, csr_fields

__all__ = ["PARAMS", "PROOFS", "SoftmaxHarness"]

# Four tokens, two global columns, eight kept entries: an entry queue of 41.
PARAMS = VitcodParams(head_dim=8, max_tokens=4, max_global=2, sparse_capacity=8,
                      dense_macs=8, sparse_macs=8, out_lanes=8)


class SoftmaxHarness(wiring.Component):
    """Every port of the unit is a port of the harness (its inputs free)."""

    def __init__(self, params=PARAMS, unit=None):
        self._params = params
        self._unit = (unit or softmax_unit.SoftmaxUnit)(params)
        super().__init__({"unit": Out(self._unit.signature)})

    def elaborate(self, platform):
        m = Module()
        unit = self._unit
        dut = Insides(unit, platform)
        queues = {name: dut.open(name) for name in ("csr_queue", "entry_queue", "out_queue")}
        fifos = {name: queue.open("fifo") for name, queue in queues.items()}
        exp = dut.open("exp")
        out_skid = dut.open("out_skid")
        wiring.connect(m, wiring.flipped(self.unit), unit)

        # The caller's contract, as far as the credits need it: a head has 1 <= N <=
        # max_tokens tokens and some entry (g > 0 or nnz > 0), and the CSR words the
        # walk takes are of rows below N (an Assume on the head of the CSR queue, where
        # the walk reads them). Without it, a head of one token whose row has no entry
        # flushes an empty held register: an entry nobody counted goes down the
        # pipeline, and when stage 2 takes it `occupancy` wraps below 0, one short of
        # the entries in flight until a reset (docs/formal.md).
        with m.If(unit.start & ~unit.busy):
            m.d.comb += [Assume(unit.tokens != 0),
                         Assume(unit.tokens <= self._params.max_tokens),
                         Assume((unit.globals != 0) | (unit.nnz != 0))]
        last_row = dut.signal("last_row")
        head = queues["csr_queue"].component.o
        with m.If(head.valid):
            m.d.comb += Assume(head.payload.row <= last_row)
        # ... and on the walk's head register, which the queue's head loads.
        walk_head = data.View(data.StructLayout(dict(csr_fields(self._params))),
                              dut.signal("head"))
        walk_head_valid = dut.signal("head_valid")
        with m.If(walk_head_valid):
            m.d.comb += Assume(walk_head.row <= last_row)

        # The property: no queue overflows; the counts stay in range; `entries` holds.
        for queue in queues.values():
            i = queue.component.i
            m.d.comb += Assert(~i.valid | i.ready)
        csr_held, occupancy = dut.signal("csr_held"), dut.signal("occupancy")
        issued = dut.signal("issued_late")      # an issue, counted into occupancy next
        out_held = dut.signal("out_held")
        m.d.comb += [Assert(csr_held <= softmax_unit.CSR_QUEUE_DEPTH),
                     Assert(occupancy + issued <= unit.entry_queue_depth),
                     Assert(out_held <= softmax_unit.OUT_QUEUE_DEPTH),
                     # The credit flags that stand for the counts' compares.
                     Assert(dut.signal("entries_full")
                            == (occupancy >= unit.entry_queue_depth - 1)),
                     Assert(dut.signal("out_full")
                            == (out_held == softmax_unit.OUT_QUEUE_DEPTH))]
        stalled_beat_held(m, unit.entries)

        # The invariant: each count is the words on their way plus its queue's level.
        stage_1 = [dut.signal(name)
                   for name in ("held", "valid_0", "valid_1", "valid_1b", "valid_2")]
        stage_1 += [exp.signal(f"valid_{k + 1}") for k in range(ExpUnit.latency)]
        stage_2 = [dut.signal(f"valid_{stage}") for stage in "abcdef"]
        in_flight = sum(dut.signal(f"fetched_d{k + 1}") for k in range(CSR_READ_LATENCY))
        fifo_invariant(m, fifos["csr_queue"], csr_held - in_flight - walk_head_valid)
        # The walk's compares of its head's row, kept in registers.
        row = dut.signal("row")
        row_1, row_2 = ((row + k)[:len(row)] for k in (1, 2))    # as the walk's row wraps
        m.d.comb += [Assert(dut.signal("here") == (walk_head_valid & (walk_head.row == row))),
                     Assert(dut.signal("here_next")
                            == (walk_head_valid & (walk_head.row == row_1))),
                     Assert(dut.signal("row_plus_1") == row_1),
                     Assert(dut.signal("row_plus_2") == row_2)]
        fifo_invariant(m, fifos["entry_queue"],
                       occupancy + issued - sum(stage_1) - dut.signal("head_held"))
        fifo_invariant(m, fifos["out_queue"], out_held - sum(stage_2) - dut.signal("returned")
                       - out_skid.signal("skid_valid"))
        for queue in queues.values():
            m.d.comb += Assert(queue.component.level <= queue.component.depth)

        # ... and the walk before its first entry: on row 0, nothing of the list taken,
        # `on_last_row` as N says. (That a head then has an entry to come, which the
        # walk's flags say, is what the induction's second step supplies: the flags are
        # not named signals.)
        running, held = dut.signal("running"), dut.signal("held")
        with m.If(running & ~held):
            m.d.comb += [Assert(dut.signal("row") == 0), Assert(dut.signal("list_pos") == 0),
                         Assert(dut.signal("on_last_row") == (last_row == 0))]

        m.submodules.dut = dut
        return m


PROOFS = [
    Proof("SoftmaxUnit (4 tokens, 2 global columns, 8 entries)",
          "its CSR, entry and output queues never offered a word without room; each "
          "credit count within its queue's depth", SoftmaxHarness),
]
