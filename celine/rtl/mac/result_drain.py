from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ..common.fanout import register_copies
from ..common.requant import Requantizer
from ...engines.mac.spec import REQUANT_REGISTER


REQUANT_LAYOUT = data.StructLayout({
    "enable": 1,                    # 1: requantize to int8; 0: full accumulator value
    "multiplier": unsigned(REQUANT_REGISTER.field("multiplier").width),   # M
    "shift": unsigned(REQUANT_REGISTER.field("shift").width),             # S
})


def output_layout(params):
    return data.StructLayout({
        "data": data.ArrayLayout(signed(params.result_width), params.weight_lanes),
        "last": 1,
        "precision": unsigned(5),
    })


class RowQueue(wiring.Component):
    """A first-in first-out queue of `depth` + 1 rows that never refuses one.

    `i` has no `ready`: the writer keeps count of the rows it has sent and `o` has not
    yet taken (credits), and never has more than `capacity` = depth + 1 of them. `o`
    comes from registers: a row offered on `i` at edge t is offered on `o` from edge
    t + 1 when the queue is empty, and otherwise after the rows before it. The rows wait
    in distributed RAM (read asynchronously into the output register).
    """

    def __init__(self, layout, *, depth):
        self.depth = depth
        self.capacity = depth + 1
        super().__init__({
            "i": In(stream.Signature(layout, always_ready=True)),
            "o": Out(stream.Signature(layout)),
        })

    def elaborate(self, platform):
        m = Module()
        depth = self.depth
        m.submodules.store = store = Memory(shape=self.i.payload.shape(), depth=depth, init=[])
        write = store.write_port()
        read = store.read_port(domain="comb")

        head = Signal(range(depth))
        tail = Signal(range(depth))
        count = Signal(range(depth + 1))

        def advance(pointer):
            return Mux(pointer == depth - 1, 0, pointer + 1)

        stored = Signal()                         # count != 0, registered
        out_free = ~self.o.valid | self.o.ready
        take = out_free & stored                  # the oldest stored row -> output register
        bypass = out_free & ~stored               # an arriving row -> output register
        put = self.i.valid & ~bypass              # an arriving row -> the store
        m.d.comb += [
            read.addr.eq(head),
            write.addr.eq(tail),
            write.data.eq(self.i.payload),
            write.en.eq(put),
        ]
        # The output register's input is chosen by a register (`stored`), not by `o.ready`:
        # that only enables it.
        with m.If(out_free):
            m.d.sync += [self.o.payload.eq(Mux(stored, read.data, self.i.payload)),
                         self.o.valid.eq(stored | self.i.valid)]
        with m.If(take):
            m.d.sync += head.eq(advance(head))
        with m.If(put):
            m.d.sync += tail.eq(advance(tail))
        m.d.sync += [count.eq(count + put - take), stored.eq(count + put - take != 0)]
        return m


class ResultDrain(wiring.Component):
    """Streams out finished tiles while the array computes the next one.

    The finished tile itself sits in the PEs' shadow registers, which form one shift
    register per PE column (see ProcessingElement); `row` is its head, output row 0 of
    what is left. `load_next` is high the cycle before a load (only while not `busy`;
    the PEs load their shadow registers in the load's cycle); on the load the drain
    starts counting tile_rows(precision) rows, `precision` and `requant` read that
    cycle. Whether the shadow registers shift in a cycle is decided the cycle before,
    from registers, and `shift[r * cols + c]`, high in the cycles the PE in row r,
    column c shifts, is a register of that decision, one for each PE (common.fanout), so
    no path from `o.ready` or the drain's state reaches the shadow registers' enables
    in the same cycle, and no net from a register reaches more than one PE. The one
    decision is a couple of LUTs from the drain's registers; only its copies' inputs
    cross the device. (In a 16 x 8 array the one `shift` net into every PE's slots took
    6.8 ns. Copies of the decision's five input registers, each PE deciding for itself,
    put the counter's compare before the five nets that crossed the device instead:
    9.5 ns with nextpnr's static placer.)

    Each lane passes through a Requantizer (int8 when requant.enable, else the full sum)
    that advances every cycle, then a RowQueue. The drain shifts a row out only with a
    credit: it counts the rows it has shifted out that `o` has not taken, and keeps that
    count within the queue's capacity (the requantizers never stall). The capacity
    covers the loop (the decision, the requantizers, the queue's output register), so
    while `o.ready` stays high a row leaves every cycle; under backpressure the rows wait
    in the shadow registers.

    Latency: the cycle after `load` the first row is at the head and shifts; it is
    offered on `o` REQUANT_LATENCY + 1 cycles later. `busy` is high from load until the
    last row's shift (`busy_next`: what it is the next cycle, for a registered copy in
    the array); `pending` while any row is in the shadow registers, the requantizers or
    the queue.
    """

    def __init__(self, params):
        self.params = params
        super().__init__({
            "load_next": In(1),
            "row": In(data.ArrayLayout(signed(params.result_width), params.weight_lanes)),
            "shift": Out(params.rows * params.cols),
            "precision": In(range(len(params.precisions))),
            "requant": In(REQUANT_LAYOUT),
            "busy": Out(1),
            "busy_next": Out(1),
            "pending": Out(1),
            "o": Out(stream.Signature(output_layout(params))),
        })

    @staticmethod
    def queue_depth():
        """Rows the queue stores beside its output register: enough for the credit loop
        (a decision, the requantizers' stages, the output register, the credit's return)
        at one row a cycle, as a power of two (distributed RAM comes 16 rows deep)."""
        loop = Requantizer.latency + 2
        return 1 << (loop - 1).bit_length()

    def elaborate(self, platform):
        m = Module()
        params = self.params

        remaining = Signal(range(params.act_lanes + 1))    # rows in the shadow registers
        shifting = Signal()                                 # this cycle's decision
        shift = Signal()                                    # the next cycle's
        # The load, a register of the drain's own: the array's register of the same value
        # sits by the PEs, and synthesis would merge the two (common.fanout).
        load = Signal()
        m.d.comb += load.eq(register_copies(m, "load", self.load_next, 1)[0])
        precision = Signal.like(self.precision)

        m.submodules.queue = queue = RowQueue(output_layout(params), depth=self.queue_depth())
        wiring.connect(m, wiring.flipped(self.o), queue.o)
        credits_used = Signal(range(queue.capacity + 1))

        # The next cycle's shift: rows left after this cycle's, and a credit for one.
        beats = 0
        for k, p in enumerate(params.precisions):
            beats = Mux(self.precision == k, params.tile_rows(p), beats)
        # `shift` is a few LUTs from registers (its copies' inputs cross the device):
        # whether `remaining` is 0 or 1 and whether a credit is free are registers of their
        # own, computed with the counters' next values (no subtract or compare before it).
        left = Signal.like(remaining)
        remaining_0 = Signal(init=1)
        remaining_1 = Signal()
        credit_free = Signal(init=1)
        rows_left = Signal()
        m.d.comb += [
            left.eq(Mux(load, beats, remaining - shifting)),
            rows_left.eq(load | ~(remaining_0 | (remaining_1 & shifting))),     # left != 0
            self.busy_next.eq(rows_left),
            shift.eq(rows_left & credit_free),
        ]
        # credit_free follows credits_used < capacity: the count moves by at most one a
        # cycle, so its next value needs only whether one more would still be below
        # (compared from the register, beside the shift decision, not after it).
        popped = self.o.valid & self.o.ready
        one_more_free = Signal()
        m.d.comb += one_more_free.eq(credits_used < queue.capacity - 1)
        # The count's next value, chosen by `shift` and `popped` among the count and its
        # neighbours (added from the register, not after the decision).
        credits_up, credits_down = Signal.like(credits_used), Signal.like(credits_used)
        m.d.comb += [credits_up.eq(credits_used + 1), credits_down.eq(credits_used - 1)]
        m.d.sync += [
            shifting.eq(shift),
            remaining.eq(left),
            remaining_0.eq(left == 0),
            remaining_1.eq(left == 1),
            self.busy.eq(self.busy_next),
            credits_used.eq(Mux(shift, Mux(popped, credits_used, credits_up),
                                Mux(popped, credits_down, credits_used))),
            credit_free.eq(Mux(shift & ~popped, one_more_free,
                               Mux(~shift & popped, 1, credit_free))),
        ]
        # The decision, a register for each PE (each drives that PE's slots).
        copies = register_copies(m, "shift", shift, params.rows * params.cols)
        m.d.comb += self.shift.eq(Cat(*copies))
        with m.If(load):
            m.d.sync += precision.eq(self.precision)
        # The tile's requantizer settings: a copy a lane, beside its requantizer's
        # multiplier blocks (one register's M reached every block of a 16 x 8 array
        # through one 10.5 ns net).
        requants = [data.View(REQUANT_LAYOUT, copy) for copy in
                    register_copies(m, "requant", self.requant.as_value(), params.weight_lanes,
                                    enable=load)]

        # The requantizers' stages advance every cycle; a row's flags ride beside them.
        stages = Requantizer.latency
        valid = Signal(stages)
        last = Signal(stages)
        value = [Signal(5, name=f"precision_stage{k}") for k in range(stages)]
        for n in range(params.weight_lanes):
            # Each lane's requantizer is as wide as the sums that lane can carry.
            req = Requantizer(in_width=params.lane_width(n))
            m.submodules[f"requant_{n}"] = req
            m.d.comb += [
                req.en.eq(1),
                req.x.eq(self.row[n][:params.lane_width(n)]),
                req.multiplier.eq(requants[n].multiplier),
                req.shift.eq(requants[n].shift),
                req.bypass.eq(~requants[n].enable),
                queue.i.payload.data[n].eq(req.y),
            ]
        current_value = 0
        for k, p in enumerate(params.precisions):
            current_value = Mux(precision == k, p, current_value)
        m.d.sync += [
            valid.eq(valid << 1 | shifting),
            last.eq(last << 1 | (remaining == 1)),
            value[0].eq(current_value),
            *(value[k + 1].eq(value[k]) for k in range(stages - 1)),
        ]
        m.d.comb += [
            queue.i.valid.eq(valid[-1]),
            queue.i.payload.last.eq(last[-1]),
            queue.i.payload.precision.eq(value[-1]),
            self.pending.eq(self.busy | valid.any() | (credits_used != 0)),
        ]
        return m
