"""The dot-product units of the ViTCoD SDDMM engines (docs/vitcod.md, "MAC units").

A DPU computes one score s = q . k of d = head_dim w-bit elements on DPU_WIDTH (8)
multipliers of the shared MacBank in t = d / 8 cycles: it latches the whole q and k rows,
shifts them out one slice (elements 8c .. 8c+7) a cycle into the bank, sums each slice's
8 products in a pipelined adder tree (one adder level a stage) and accumulates the t
partial sums.

A DpuArray is an engine's n <= t DPUs behind one read port on q and one on k: a slot
counter, reset by `start` and free-running after it, lets DPU k take a job only in cycles
whose slot (cycles since start, mod t) is k, so at most one job is issued a cycle and, with
n = t, one every cycle. Its owner reads the job's rows at the issue cycle's fixed lead and
gets the scores back in issue order at a fixed latency: a schedule with no stalls, which
the cycle model counts exactly (`issue_cycle`).

The rows reach the DPUs through a chain, not a bus: DPU k latches them from a register
stage of its own, fed by DPU k-1's, so every row bit drives two loads next to each other
instead of n latches spread over the die (a whole row is d*w bits, twice: the bus was the
design's worst routing congestion). The scores come back through a chain the other way
round in time: stage k ORs DPU k's score into what stage k-1 passed on, so every job's
score leaves the last stage after the same latency, n cycles beyond one DPU's.
"""

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.utils import exact_log2
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ...engines.vitcod.cycles import issue_cycle
from ...engines.vitcod.spec import DPU_WIDTH, VitcodParams
from ...spec.checks import check_int
from ...spec.widths import ceil_log2
from ..common.delay import delayed
from .mac_bank import MacBank, bank_signature

__all__ = ["TREE_LEVELS", "Dpu", "DpuArray", "dpu_latency", "array_latency", "issue_cycle",
           "biased", "read_row", "score_port_signature", "row_value_signature",
           "check_params"]

TREE_LEVELS = ceil_log2(DPU_WIDTH)       # adder levels (and register stages) of a slice's sum


def check_params(params):
    """`params` as a VitcodParams (TypeError otherwise)."""
    if not isinstance(params, VitcodParams):
        raise TypeError(f"params must be a VitcodParams, not {params!r}")
    return params


def dpu_latency(slices):
    """Cycles from a DPU's load to its score: the last slice leaves the shift register
    `slices` cycles after the load, its products come back MacBank.latency cycles later,
    the adder tree takes TREE_LEVELS and the accumulator one."""
    return slices + MacBank.latency + TREE_LEVELS + 1


def array_latency(slices, lead, dpus):
    """Cycles from a DpuArray's issue of a job to its score: the rows' `lead`, the row
    chain's first stage, the DPU, and the score chain's `dpus` stages (DPU k's rows take k
    more chain stages to arrive and its score k fewer to leave)."""
    return lead + 1 + dpu_latency(slices) + dpus


def biased(value):
    """A two's-complement value with its sign bit flipped, and back (as unsigned bits):
    signed values are ordered as the unsigned biased forms, whose compare is a bare carry
    chain (a signed compare costs LUT levels after it on ECP5)."""
    return value.as_unsigned() ^ (1 << (len(value) - 1))


def read_row(m, port, row_addr, array, offset, beats, name):
    """Read whole rows through `port` (a buffer read port of row_beats = `beats` words a
    row) for the DpuArray `array`'s engine. A read starts `offset` cycles after an issue
    cycle (when the array's `slot` is ≡ offset mod beats) at the row `row_addr` shows
    then; word j is read in its j-th cycle (the row address held meanwhile). Returns the
    row, whole in the cycle after the read's last word: `beats` - 1 cycles later than a
    one-word row would be (a register a word holds the earlier words)."""
    if beats == 1:
        m.d.comb += port.addr.eq(row_addr)
        return port.data
    # The word, slot - offset mod beats, is a counter of its own, and whether it is 0 a
    # register: `slot` restarts with the array's `start` and wraps at a multiple of beats,
    # so the counter follows it. (The subtraction and compare from `slot` into the buffer
    # address, through the shell's ownership multiplexer, was a ViTCoD build's worst
    # path: 10.1 ns.)
    first_word = (-offset) % beats
    word = Signal(exact_log2(beats), name=f"{name}_word", init=first_word)
    at_first = Signal(name=f"{name}_at_first", init=first_word == 0)
    word_next = Mux(array.start, first_word, word + 1)[:len(word)]
    m.d.sync += [word.eq(word_next), at_first.eq(word_next == 0)]
    held = Signal.like(row_addr, name=f"{name}_row")
    current = Mux(at_first, row_addr, held)
    m.d.comb += port.addr.eq(Cat(word, current))
    m.d.sync += held.eq(current)
    words = [port.data]
    for j in range(beats - 1):
        older = Signal.like(port.data, name=f"{name}_word{j}")
        m.d.sync += older.eq(words[-1])
        words.append(older)
    return Cat(*reversed(words))


def score_port_signature(params, depth):
    """A score memory's write port (all Out): `addr` in range(depth), signed `data`, `en`."""
    return wiring.Signature({"addr": Out(range(depth)),
                             "data": Out(signed(params.score_width)),
                             "en": Out(1)})


def row_value_signature(params):
    """A score (or a row's maximum) for the row maximum tracker (all Out): `row`, `value`,
    `en`."""
    return wiring.Signature({"row": Out(range(params.max_tokens)),
                             "value": Out(signed(params.score_width)),
                             "en": Out(1)})


class Dpu(wiring.Component):
    """One dot-product unit: `score` = q_row . k_row of the rows presented with `load`.

    load (In): latch q_row and k_row (head_dim elements of operand_width bits, element c in
        bits [c*w, (c+1)*w)) in this cycle; allowed again `slices` cycles later, while the
        previous score is still in the adder tree.
    mul: the DPU's DPU_WIDTH multipliers of the MacBank (operands sign-extended to 18 bits).
    score, done (Out): the score, in the one cycle `done` is high, `latency` cycles after
        the load cycle; 0 in every other cycle (so an array ORs its DPUs' scores).

    latency = dpu_latency(slices) = slices + 6.
    """

    def __init__(self, params):
        self.params = check_params(params)
        self.slices = params.slices
        self.latency = dpu_latency(self.slices)
        row_bits = params.head_dim * params.operand_width
        super().__init__({
            "load": In(1),
            "q_row": In(row_bits),
            "k_row": In(row_bits),
            "mul": Out(bank_signature(DPU_WIDTH)),
            "score": Out(signed(params.score_width)),
            "done": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p, t, w = self.params, self.slices, self.params.operand_width

        # The operand shift registers: slice 0 in the low bits, one slice out a cycle.
        q_sr = Signal.like(self.q_row, name="q_sr")
        k_sr = Signal.like(self.k_row, name="k_sr")
        with m.If(self.load):
            m.d.sync += [q_sr.eq(self.q_row), k_sr.eq(self.k_row)]
        with m.Else():
            step = DPU_WIDTH * w
            m.d.sync += [q_sr.eq(q_sr >> step), k_sr.eq(k_sr >> step)]
        for lane in range(DPU_WIDTH):
            m.d.comb += [self.mul.a[lane].eq(q_sr[lane * w:(lane + 1) * w].as_signed()),
                         self.mul.b[lane].eq(k_sr[lane * w:(lane + 1) * w].as_signed())]

        # Which slice the shift register presents: `active` for t cycles after a load.
        index = Signal(range(max(t, 2)))
        active = Signal()
        with m.If(self.load):
            m.d.sync += [index.eq(0), active.eq(1)]
        with m.Elif(active):
            m.d.sync += index.eq(index + 1)
            with m.If(index == t - 1):
                m.d.sync += [index.eq(0), active.eq(0)]
        flags_delay = MacBank.latency + TREE_LEVELS
        valid = delayed(m, active, flags_delay, "valid")
        first = delayed(m, index == 0, flags_delay, "first")
        last = delayed(m, index == t - 1, flags_delay, "last")

        # The slice's sum: products of w-bit operands fit 2w bits; one adder level a stage.
        level = [self.mul.p[lane][:2 * w].as_signed() for lane in range(DPU_WIDTH)]
        depth = 0
        while len(level) > 1:
            depth += 1
            pairs = []
            for k in range(0, len(level), 2):
                pair = level[k:k + 2]
                total = pair[0] + pair[1] if len(pair) == 2 else pair[0]
                reg = Signal(signed(2 * w + depth), name=f"sum{depth}_{k // 2}")
                m.d.sync += reg.eq(total)
                pairs.append(reg)
            level = pairs
        assert depth == TREE_LEVELS
        partial = level[0]

        # The accumulator: the score leaves in the cycle after its last partial sum.
        acc = Signal(signed(p.score_width))
        total = Mux(first, partial, acc + partial)
        with m.If(valid):
            m.d.sync += acc.eq(total)
        m.d.sync += [self.score.eq(Mux(valid & last, total, 0)),
                     self.done.eq(valid & last)]
        return m


class DpuArray(wiring.Component):
    """`dpus` DPUs sharing one q and one k read port, started in turn by a slot counter.

    start (In): reset the slot counter (slot 0 in the next cycle); it then counts cycles
        mod `slices` (`slot`, Out). With row_beats b, DPU k owns slot k·b: an issue is
        at least b cycles after the one before, and slot mod b tells a reader of b-word
        rows which word is due (read_row).
    go (In): a job is waiting. issue (Out, combinational): the job is taken in this cycle
        (go and the slot belongs to a DPU: slot = k·b, k < dpus); its rows must be on q_row and
        k_row exactly `lead` cycles later. They enter the row chain there (stage 0, DPU
        0's; q_row straight from a block RAM's slow output would fan out to every DPU),
        and DPU `slot` latches them from its stage `slot` + 1 cycles later.
    score, done (Out): each job's score, in issue order, `latency` = lead + 1 +
        Dpu.latency + dpus cycles after its issue cycle (array_latency).
    """

    def __init__(self, params, dpus, lead):
        self.params = check_params(params)
        self.slices = params.slices
        self.beats = params.beats           # DPU k owns slot k·beats of the slices
        self.dpus = check_int("dpus", dpus, minimum=1, maximum=self.slices // self.beats)
        self.lead = check_int("lead", lead, minimum=0, maximum=16)
        self.units = [Dpu(params) for _ in range(dpus)]
        self.latency = array_latency(self.slices, lead, dpus)
        row_bits = params.head_dim * params.operand_width
        super().__init__({
            "start": In(1),
            "go": In(1),
            "issue": Out(1),
            "slot": Out(range(max(self.slices, 2))),
            "q_row": In(row_bits),
            "k_row": In(row_bits),
            "mul": Out(bank_signature(dpus * DPU_WIDTH)),
            "score": Out(signed(params.score_width)),
            "done": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        t, n, b = self.slices, self.dpus, self.beats

        slot = self.slot
        with m.If(self.start | (slot == t - 1)):
            m.d.sync += slot.eq(0)
        with m.Else():
            m.d.sync += slot.eq(slot + 1)
        owned = slot < n * b
        if b > 1:
            owned &= slot[:exact_log2(b)] == 0
        m.d.comb += self.issue.eq(self.go & owned)

        # The row chain: stage k holds the rows issued k + 1 cycles before stage 0's, and
        # DPU k latches them from it, `lead` + 1 + k cycles after their issue.
        q_row, k_row = self.q_row, self.k_row
        scores, done = None, None
        for k, unit in enumerate(self.units):
            m.submodules[f"dpu{k}"] = unit
            q_row = delayed(m, q_row, 1, f"q_row{k}")
            k_row = delayed(m, k_row, 1, f"k_row{k}")
            load = delayed(m, self.issue & (slot == k * b), self.lead + 1 + k, f"load{k}")
            m.d.comb += [unit.load.eq(load), unit.q_row.eq(q_row), unit.k_row.eq(k_row)]
            for lane in range(DPU_WIDTH):
                bank = k * DPU_WIDTH + lane
                m.d.comb += [self.mul.a[bank].eq(unit.mul.a[lane]),
                             self.mul.b[bank].eq(unit.mul.b[lane]),
                             unit.mul.p[lane].eq(self.mul.p[bank])]
            # The score chain: at most one DPU finishes a cycle and the others' scores are
            # 0, so stage k ORs DPU k's score into stage k-1's; DPU k finished k cycles
            # later than DPU 0 would have and has n - k stages to go.
            stage_score = Signal.like(self.score, name=f"score{k}")
            stage_done = Signal(name=f"done{k}")
            m.d.sync += [stage_score.eq(unit.score if scores is None else scores | unit.score),
                         stage_done.eq(unit.done if done is None else done | unit.done)]
            scores, done = stage_score, stage_done
        m.d.comb += [self.score.eq(scores), self.done.eq(done)]
        return m
