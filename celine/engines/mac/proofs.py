"""The MAC array's formal proofs (`PROOFS`, the record's `proofs`; docs/formal.md): its
result drain (rtl/mac/result_drain.py): its credits never let its row queue overflow,
every row of every tile goes into the queue once, in order, with its tile's `last` and
precision, and the queue gives the rows out in order.

The drain shifts a finished tile's rows out of the PEs' shadow registers (`shift`, a
register for each PE of one decision made the cycle before), through the requantizers
(which never stall) into a RowQueue, which has no `ready`: the drain counts the rows it
has decided to shift and `o` has not taken (`credits_used`) and decides a shift only
while that count is below what the queue holds (its store and its output register:
depth + 1 rows).

`DrainHarness` plays the PE array: it models the shadow registers (a load fills them
with `tile_rows(precision)` rows; in a cycle with a shift the head row leaves) and
numbers the rows it shifts out: row n carries in its lane 0 n (modulo 2**WIDTH), whether
it is its tile's last row, and its tile's precision code. The requantizers are bypassed
(`requant` is 0: not enabled), so a row passes unchanged. Free inputs: `load_next`,
`precision` (read in the load's cycle), `o.ready` and the reset. The array's contract
(an Assume): `load_next` only while the drain is not `busy` and not in the cycle after
another `load_next` (rtl/mac/array.py holds a tile's last pass while the previous copy
is pending or the drain is busy, so its loads are further apart). Asserted every cycle:

- every PE's `shift` is the same decision (the per-PE register copies agree);
- the PEs shift only while the shadow registers hold a row; `busy` is high exactly while
  they do, and a load never finds a row in them (none is overwritten);
- credit: the rows in the queue (rows in minus rows out) never pass depth + 1, and
  `credits_used` is the rows decided and not yet taken, at most depth + 1;
- a row entering the queue is the next row shifted out (`queued`: the rows that entered
  before it), with `last` exactly on its tile's last row and its tile's precision;
- held: a row offered on `o` and not taken is offered again, unchanged;
- `pending` is high exactly while a row is in the shadow registers or not yet taken.

The invariant (the drain's insides, celine.formal.insides): the decision's copies equal
`shifting` (the requantizer settings' copies are 0), the row counters agree with
the model, `credit_free` is `credits_used < capacity` (the RowQueue's `capacity`, which
the drain counts against: depth + 1), the rows decided and not taken are the one
shifting, those in the requantizers' stages and those in the queue; each requantizer
stage and the drain's `last` and `precision` stages carry their row's number, flag and
precision; the queue's count and `stored`.

What the queue's words hold is `row_queue_invariant`'s, for the RowQueue's own proof
(celine.formal.credits.CreditQueueHarness: numbered rows in, a writer that keeps its
credit, rows out in order, none lost or duplicated, held until taken, at most depth + 1
held), so the rows leave `o` in the order they entered.
"""

from amaranth.hdl import Assert, Assume, Cat, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In

from ...formal.credits import CreditQueueHarness, count, register, stalled_beat_held
from ...formal.insides import Insides
from ...formal.prove import Proof
from ...formal.streams import WIDTH
from ...rtl.mac.result_drain import REQUANT_LAYOUT, ResultDrain, RowQueue
from .spec import MacArrayParams

__all__ = ["DrainHarness", "PARAMS", "PROOFS", "row_queue_invariant"]

# A 2 x 1 array of 4-bit bricks at precisions 4 and 8: tiles of 4 and of 2 rows, two
# output lanes, two PEs (two copies of each decision register), a queue of 16 + 1 rows.
PARAMS = MacArrayParams(rows=2, cols=1, brick_width=4, precisions=(4, 8), max_reduction=4)


class DrainHarness(wiring.Component):
    """`params`: the array's (MacArrayParams); `drain`: the class under proof (ResultDrain,
    or a variant of it)."""

    def __init__(self, params=PARAMS, drain=ResultDrain):
        self._drain, self._params = drain, params
        super().__init__({"load_next": In(1), "precision": In(range(len(params.precisions))),
                          "o_ready": In(1)})

    def elaborate(self, platform):
        m = Module()
        p = self._params
        drain = self._drain(p)
        dut = Insides(drain, platform)
        queue = dut.open("queue")
        depth = queue.component.depth
        capacity = depth + 1                # what the queue holds: its store and output
        requants = [dut.open(f"requant_{n}") for n in range(p.weight_lanes)]
        copies = [dut.submodule(f"shift_copy{k}").q for k in range(p.rows * p.cols)]
        settings = [data.View(REQUANT_LAYOUT, dut.submodule(f"requant_copy{n}").q)
                    for n in range(p.weight_lanes)]
        o = drain.o

        m.d.comb += [drain.load_next.eq(self.load_next), drain.precision.eq(self.precision),
                     drain.requant.eq(0), o.ready.eq(self.o_ready)]

        # The PE array: a load fills the shadow registers, a shift (the drain's register
        # of its decision the cycle before) takes their head row.
        load = Signal()
        shifting = drain.shift[0]
        m.d.sync += load.eq(self.load_next)
        left = Signal(range(p.act_lanes + 1))          # rows in the shadow registers
        tile = Signal.like(self.precision)             # the tile's precision code
        sizes = [p.tile_rows(precision) for precision in p.precisions]
        with m.If(load):
            m.d.sync += tile.eq(self.precision)
            for code, size in enumerate(sizes):
                with m.If(self.precision == code):
                    m.d.sync += left.eq(size)
        with m.Elif(shifting):
            m.d.sync += left.eq(left - 1)
        shifted = count(m, shifting, WIDTH, "shifted")  # the next row's number
        taken = count(m, o.valid & o.ready, WIDTH, "taken")
        decided = Signal(WIDTH)                        # rows decided: shifted or shifting
        m.d.comb += decided.eq(shifted + shifting)
        queued = count(m, queue.component.i.valid, WIDTH, "queued")
        m.d.comb += drain.row[0].eq(Cat(shifted, left == 1, tile))

        def holds(payload, n):
            """`payload` (a view of output_layout) is row n."""
            lane = payload.data[0]
            code = lane[WIDTH + 1:WIDTH + 1 + len(self.precision)]
            checks = [lane[:WIDTH] == n[:WIDTH], payload.last == lane[WIDTH],
                      lane[WIDTH + 1 + len(self.precision):] == 0]
            return Cat(*checks).all() & _precision_is(payload.precision, code, p)

        # The environment: the array's contract.
        with m.If(self.load_next):
            m.d.comb += Assume(~drain.busy & ~load)

        # The property.
        for k in range(1, p.rows * p.cols):
            m.d.comb += Assert(drain.shift[k] == drain.shift[0])
        with m.If(shifting):
            m.d.comb += Assert(left != 0)
        with m.If(load):
            m.d.comb += Assert(left == 0)
        m.d.comb += Assert(drain.busy == (left != 0))
        in_queue, owed = Signal(WIDTH), Signal(WIDTH)
        m.d.comb += [in_queue.eq(queued - taken), owed.eq(decided - taken),
                     Assert(in_queue <= capacity), Assert(owed <= capacity)]
        with m.If(queue.component.i.valid):
            m.d.comb += Assert(holds(queue.component.i.payload, queued))
        stalled_beat_held(m, o)
        m.d.comb += Assert(drain.pending == ((left != 0) | (owed != 0)))

        # The invariant: the decision's copies ...
        for copy in copies:
            m.d.comb += Assert(copy == dut.signal("shifting"))
        for setting in settings:
            m.d.comb += Assert(setting.as_value() == 0)
        # ... the row counters and the credit count ...
        remaining = dut.signal("remaining")
        credits_used = dut.signal("credits_used")
        valid, last = dut.signal("valid"), dut.signal("last")
        stages = len(valid)
        count_q = queue.signal("count")
        m.d.comb += [
            Assert(dut.signal("load") == load), Assert(dut.signal("shifting") == shifting),
            Assert(remaining == left),
            Assert(dut.signal("remaining_0") == (remaining == 0)),
            Assert(dut.signal("remaining_1") == (remaining == 1)),
            Assert(register(dut, "precision", [drain.precision]) == tile),
            Assert(credits_used == owed),
            Assert(dut.signal("credit_free") == (credits_used < queue.component.capacity)),
            Assert(shifted == (queued + sum(valid))[:WIDTH]),
            Assert(in_queue == count_q + o.valid),
        ]
        # ... the rows in the requantizers' stages (stage k + 1: raw_(k + 1), the last
        # one the y register), numbered from the oldest: row `queued` enters the queue
        # next ...
        number = {}
        ahead = queued          # the number of the oldest row in the stages
        for k in reversed(range(stages)):
            number[k] = ahead
            ahead = ahead + valid[k]
        for k in range(stages):
            with m.If(valid[k]):
                if k + 1 < stages:
                    lane = requants[0].signal(f"raw_{k + 1}")
                    m.d.comb += [Assert(r.signal(f"bypass_{k + 1}")) for r in requants]
                else:
                    lane = requants[0].component.y
                m.d.comb += [Assert(lane[:WIDTH] == number[k][:WIDTH]),
                             Assert(last[k] == lane[WIDTH]),
                             Assert(lane[WIDTH + 1 + len(self.precision):] == 0),
                             Assert(_precision_is(dut.signal(f"precision_stage{k}"),
                                                  lane[WIDTH + 1:WIDTH + 1
                                                       + len(self.precision)], p))]
        # ... and the queue's count (what its words hold is RowQueue's own proof).
        m.d.comb += [Assert(count_q <= depth),
                     Assert(queue.signal("stored") == (count_q != 0))]
        with m.If(count_q != 0):
            m.d.comb += Assert(o.valid)

        m.submodules.dut = dut
        return m


def _precision_is(value, code, params):
    """1 when `value` (a precision, 5 bits) is the one of precision code `code`."""
    terms = [(code == k) & (value == precision)
             for k, precision in enumerate(params.precisions)]
    return Cat(*terms).any()


def row_queue_invariant(m, queue, taken, held):
    """The invariant of a RowQueue (`queue`, an Insides) of numbered rows (row n carries n
    modulo 2**WIDTH) fed on credit, `taken` rows given out and `held` held: the pointers
    in range and `count` rows in the store between them, `stored` its verdict, the
    output register full whenever the store is not empty and holding row `taken`, and
    the store's word j after `head` holding row taken + 1 + j."""
    depth = queue.component.depth
    store = queue.submodule("store")
    words = []
    for address in range(depth):           # (ports added before the queue is elaborated)
        port = store.read_port(domain="comb")
        m.d.comb += port.addr.eq(address)
        words.append(port.data)
    o = queue.component.o
    head, tail = queue.signal("head"), queue.signal("tail")
    count, stored = queue.signal("count"), queue.signal("stored")
    m.d.comb += [Assert(head < depth), Assert(tail < depth), Assert(count <= depth),
                 Assert(stored == (count != 0)), Assert(count + o.valid == held)]
    with m.If(count != 0):
        m.d.comb += Assert(o.valid)
    with m.If(tail > head):
        m.d.comb += Assert(count == tail - head)
    with m.Elif(tail < head):
        m.d.comb += Assert(count == depth + tail - head)
    with m.Else():
        m.d.comb += Assert((count == 0) | (count == depth))
    # The word at `head` holds row taken + 1, and each word held after it the row after
    # its predecessor's.
    first = Signal(WIDTH)
    for address in range(depth):
        with m.If(head == address):
            m.d.comb += first.eq(words[address])
    newest = Signal(WIDTH)
    for address in range(depth):
        with m.If(tail == (address + 1) % depth):
            m.d.comb += newest.eq(words[address])
    with m.If(count != 0):
        m.d.comb += [Assert(first == (taken + 1)[:WIDTH]),
                     Assert(newest == (taken + held - 1)[:WIDTH])]
    for address in range(depth):
        following = (address + 1) % depth
        place = Signal(range(depth), name=f"place_{following}")   # of the word after
        if depth & (depth - 1):
            m.d.comb += place.eq(Mux(head <= following, following - head,
                                     following + depth - head))
        else:                               # modulo a power of two: the low bits
            m.d.comb += place.eq(following - head)
        with m.If((place != 0) & (place < count)):
            m.d.comb += Assert(words[following] == (words[address] + 1)[:WIDTH])


PROOFS = [
    Proof("ResultDrain (2 x 1 bricks of 4 bits, precisions 4 and 8)",
          "queue never over depth + 1 rows, credits exact; every row into it once, in "
          "order, with its tile's last and precision; PEs shift together; busy exact",
          DrainHarness),
    Proof("RowQueue (depth 16, fed on credit)",
          "rows in order, none lost or duplicated, held until taken, at most depth + 1 held",
          lambda: CreditQueueHarness(lambda: RowQueue(WIDTH, depth=16), capacity=17,
                                     invariant=row_queue_invariant)),
]
