"""The denser SDDMM engine: a head's scores of every query row against its g global key
columns (docs/vitcod.md, "The hardware", phase 1)."""

from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ...engines.vitcod.spec import QK_READ_LATENCY, buffers
from ..shell.contract import read_port_signature
from .dpu import (DpuArray, array_latency, biased, check_params, issue_cycle, read_row,
                  row_value_signature, score_port_signature)
from .mac_bank import bank_signature

__all__ = ["DenseSddmm"]


class DenseSddmm(wiring.Component):
    """s_ij = q_i . k_{c_j} for i in 0 .. N-1 (outer), j in 0 .. g-1 (inner), c_j the
    head's j-th global column (a token index, gcols word gcols_base + j), on the
    dense_macs / 8 DPUs of a DpuArray.

    start (In): sample `tokens` N, `globals` g, `head_base` (the head's first q/k word) and
        `gcols_base` (its first gcols word). Only while idle (busy low).
    busy (Out): from the cycle after start until the last row maximum has left; never
        raised when g = 0 (or N = 0).
    gcols: read port; job (i, j) reads gcols word gcols_base + j in its issue cycle C.
    q, k: read ports (`addr` out, `data` QK_READ_LATENCY cycles later); job (i, j) reads q row
        head_base + i and k row head_base + c_j in cycle C + 3 (c_j into a register at
        C + 1, the k address into one at C + 2).
    mul: the engine's multipliers of the MacBank.
    score: write port of the dense score memory, score s_ij at address i*max_global + j.
    row_max: {row, value, en}, one pulse per row i with max_j s_ij, the cycle after the
        row's last score.

    Cycles (`run_cycles`): the J = N*g jobs are issued from the cycle after start at
    issue_cycle(m, n, t) (one a cycle at n = t DPUs); job m's score is written
    `write_latency` = t + 10 + Q + n cycles after its issue, Q = QK_READ_LATENCY (3)
    (array_latency: the gcols read and the rows' read 3 + Q, the row chain's first stage 1,
    Dpu.latency t + 6, the score chain's n stages); the last row maximum a cycle later, and
    busy falls in the cycle after that. So busy is low again issue_cycle(J-1, n, t) + t +
    13 + Q + n cycles after the start cycle (1 if J = 0).
    """

    READ_LEAD = 3 + QK_READ_LATENCY    # issue cycle (gcols address) -> rows on the q/k
                                       # read ports (read in C + 3)
    READ_OFFSET = 3        # issue cycle -> the rows' read (their first word's)

    @staticmethod
    def read_lead(params):
        """Issue cycle -> whole rows at the DpuArray: READ_LEAD, and row_beats - 1 more
        cycles for rows of several words (read_row)."""
        return DenseSddmm.READ_LEAD + params.beats - 1

    def __init__(self, params):
        p = check_params(params)
        if p.dense_macs == 0:
            raise ValueError(f"dense_macs must be at least 8 for a denser engine, "
                             f"not {p.dense_macs!r}")
        self.params = p
        self.array = DpuArray(p, p.dense_dpus, lead=self.read_lead(p))
        self.write_latency = self.array.latency
        bufs = {b.name: b for b in buffers(p)}
        super().__init__({
            "start": In(1),
            "tokens": In(p.token_bits + 1),
            "globals": In(p.token_bits + 1),
            "head_base": In(range(bufs["q"].depth)),
            "gcols_base": In(range(bufs["gcols"].depth + 1)),
            "busy": Out(1),
            "gcols": Out(read_port_signature(bufs["gcols"])),
            "q": Out(read_port_signature(bufs["q"])),
            "k": Out(read_port_signature(bufs["k"])),
            "mul": Out(bank_signature(p.dense_macs)),
            "score": Out(score_port_signature(p, p.max_tokens * p.max_global)),
            "row_max": Out(row_value_signature(p)),
        })

    @staticmethod
    def run_cycles(params, tokens, globals_):
        """Cycles from the start cycle to the first cycle with busy low."""
        jobs = tokens * globals_
        if jobs == 0:
            return 1
        last = issue_cycle(jobs - 1, params.dense_dpus, params.slices, params.beats)
        write = array_latency(params.slices, DenseSddmm.read_lead(params), params.dense_dpus)
        return 1 + last + write + 2

    def elaborate(self, platform):
        m = Module()
        p = self.params
        m.submodules.array = array = self.array
        wiring.connect(m, wiring.flipped(self.mul), array.mul)

        last_i = Signal.like(self.tokens)             # N - 1 and g - 1
        last_j = Signal.like(self.globals)
        head_base = Signal.like(self.head_base)
        go = Signal()

        # -- issue (C): gcols word gcols_base + j; C + 1: c_j into a register (a block
        # RAM's output is slow); C + 2: the k address head_base + c_j into one; C + 3: q row
        # head_base + i and that k row on the read ports ---------------------------------------
        i = Signal(range(p.max_tokens))
        j = Signal(range(p.max_tokens))
        gcols_base = Signal.like(self.gcols_base)
        g_addr = Signal.like(self.gcols.addr)
        q_addr_1 = Signal.like(self.q.addr)
        q_addr_2 = Signal.like(self.q.addr)
        q_addr_3 = Signal.like(self.q.addr)
        gcol = Signal.like(self.gcols.data)
        k_addr = Signal.like(self.k.addr)
        # The q row's address, head_base + i, from the row counter through an adder into
        # registers without an enable (a q_addr register stepped with i had its enable
        # from the issue's row-end decode: placed by the q buffer's block RAMs, that net
        # across the die was a ViTCoD build's worst path, 9.4 ns with a 4.1 ns net).
        m.d.sync += [q_addr_1.eq(head_base + i), q_addr_2.eq(q_addr_1), q_addr_3.eq(q_addr_2),
                     gcol.eq(self.gcols.data), k_addr.eq(head_base + gcol)]
        beats = p.beats
        q_row = read_row(m, self.q, q_addr_3, array, self.READ_OFFSET, beats, "q")
        k_row = read_row(m, self.k, k_addr, array, self.READ_OFFSET, beats, "k")
        m.d.comb += [self.gcols.addr.eq(g_addr),
                     array.start.eq(self.start), array.go.eq(go),
                     array.q_row.eq(q_row), array.k_row.eq(k_row)]
        with m.If(self.start):
            work = (self.tokens != 0) & (self.globals != 0)
            m.d.sync += [last_i.eq(self.tokens - 1), last_j.eq(self.globals - 1),
                         head_base.eq(self.head_base), gcols_base.eq(self.gcols_base),
                         go.eq(work), self.busy.eq(work),
                         i.eq(0), j.eq(0), g_addr.eq(self.gcols_base)]
        with m.Elif(array.issue):
            with m.If(j == last_j):
                m.d.sync += [j.eq(0), g_addr.eq(gcols_base), i.eq(i + 1)]
                with m.If(i == last_i):
                    m.d.sync += go.eq(0)
            with m.Else():
                m.d.sync += [j.eq(j + 1), g_addr.eq(g_addr + 1)]

        # -- scores, in issue order: address i*max_global + j, and the row maxima ----------
        out_i = Signal(range(p.max_tokens))
        out_j = Signal(range(p.max_tokens))
        out_addr = Signal.like(self.score.addr)
        row_addr = Signal.like(self.score.addr)
        running = Signal(signed(p.score_width))
        finishing = Signal()
        m.d.comb += [self.score.addr.eq(out_addr), self.score.data.eq(array.score),
                     self.score.en.eq(array.done)]
        row_first = out_j == 0
        row_last = out_j == last_j
        row_best = Mux(row_first | (biased(array.score) > biased(running)), array.score,
                       running)
        m.d.sync += self.row_max.en.eq(0)
        # (`finishing` is not cleared by the start: it is high only in the cycle before
        # busy falls, and a start comes while idle. Cleared by it, the start's net into its
        # reset was a ViTCoD build's slow path, 7.8 ns.)
        with m.If(self.start):
            m.d.sync += [out_i.eq(0), out_j.eq(0), out_addr.eq(0), row_addr.eq(0)]
        with m.Elif(array.done):
            m.d.sync += running.eq(row_best)
            with m.If(row_last):
                m.d.sync += [out_j.eq(0), out_i.eq(out_i + 1),
                             out_addr.eq(row_addr + p.max_global),
                             row_addr.eq(row_addr + p.max_global),
                             self.row_max.en.eq(1), self.row_max.row.eq(out_i),
                             self.row_max.value.eq(row_best)]
                with m.If(out_i == last_i):
                    m.d.sync += finishing.eq(1)
            with m.Else():
                m.d.sync += [out_j.eq(out_j + 1), out_addr.eq(out_addr + 1)]
        with m.If(finishing):
            m.d.sync += [finishing.eq(0), self.busy.eq(0)]
        return m
