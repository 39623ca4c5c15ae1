"""The sparser SDDMM engine: a head's scores at the kept entries of its sparse region,
K-stationary (docs/vitcod.md, "The hardware", phase 1)."""

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ...engines.vitcod.spec import CSC_READ_LATENCY, QK_READ_LATENCY, buffers, csc_fields
from ..shell.contract import read_port_signature
from ..common.delay import delayed
from .dpu import (DpuArray, array_latency, check_params, issue_cycle, read_row,
                  row_value_signature, score_port_signature)
from .mac_bank import bank_signature

__all__ = ["SparseSddmm"]


def csc_layout(params):
    """A CSC word as a struct (col, row, pos), low bits first (spec.csc_fields)."""
    return data.StructLayout(dict(csc_fields(params)))


class SparseSddmm(wiring.Component):
    """s = q_row . k_col for each CSC entry (col, row, pos) of a head, on the sparse_macs / 8
    DPUs of a DpuArray, keeping each column's k row in a stationary register.

    start (In): sample `tokens` N, `globals` g, `nnz`, `head_base` (the head's first q/k
        word) and `list_base` (its first CSC word); clear `error`.
    busy (Out): from the cycle after start until the cycle after the last score; never
        raised when nnz = 0.
    csc: read port of the CSC list; entries list_base .. list_base + nnz - 1, sorted by
        (col, row).
    q, k: read ports. An entry reads q row head_base + row; k row head_base + col only when
        its column differs from the previous entry's (`k_fetch` is high in the cycle that k
        read is issued).
    mul: the engine's multipliers of the MacBank.
    score: write port of the sparse score memory, each score at its entry's pos.
    score_row: {row, value, en}: the same score with its row, for the row maximum.
    error (Out): sticky until start: an entry with col >= N, row >= N,
        pos >= nnz, or out of order (col decreasing, or the same col with row not
        increasing). The engine still runs every entry (and finishes on schedule) but
        writes no score (and no score_row) of a flagged entry.

    The schedule, for an entry issued in cycle C (issue_cycle(e, n, t) cycles after the
    first cycle after start, one a cycle at n = t), with L = CSC_READ_LATENCY (2): C reads
    its CSC word; C+L it arrives (through the block's output register), C+L+1 it is in a
    register here and checked against the previous entry; C+L+2 reads its k row if the
    column changed; C+L+3 reads its q row; with Q = QK_READ_LATENCY (3), C+L+2+Q the k
    row, if read, lands in the stationary register; C+L+3+Q the q row and the stationary
    register go into the array's input register (READ_LEAD = L+3+Q; the next entry may
    reload the stationary register at the same edge); C+L+4+Q+k its DPU k latches them
    (the row chain). Its score is written `write_latency` = t + 10 + L + Q + n cycles
    after C (array_latency), and busy falls the cycle after the last one: busy is low
    again issue_cycle(nnz-1, n, t) + t + 12 + L + Q + n cycles after the start cycle (1
    if nnz = 0).
    """

    READ_LEAD = CSC_READ_LATENCY + 3 + QK_READ_LATENCY    # issue cycle (CSC address) ->
                                                          # rows at the DpuArray
    K_OFFSET = CSC_READ_LATENCY + 2     # issue cycle -> the k row's read (its first word's)
    Q_OFFSET = CSC_READ_LATENCY + 3     # ... and the q row's

    @staticmethod
    def read_lead(params):
        """Issue cycle -> whole rows at the DpuArray: READ_LEAD, and row_beats - 1 more
        cycles for rows of several words (read_row)."""
        return SparseSddmm.READ_LEAD + params.beats - 1

    def __init__(self, params):
        p = check_params(params)
        if p.sparse_macs == 0:
            raise ValueError(f"sparse_macs must be at least 8 for a sparser engine, "
                             f"not {p.sparse_macs!r}")
        self.params = p
        self.array = DpuArray(p, p.sparse_dpus, lead=self.read_lead(p))
        self.write_latency = self.array.latency
        self.k_fetch = Signal()
        bufs = {b.name: b for b in buffers(p)}
        super().__init__({
            "start": In(1),
            "tokens": In(p.token_bits + 1),
            "globals": In(p.token_bits + 1),
            "nnz": In(p.position_bits + 1),
            "head_base": In(range(bufs["q"].depth)),
            "list_base": In(range(bufs["csc"].depth)),
            "busy": Out(1),
            "error": Out(1),
            "csc": Out(read_port_signature(bufs["csc"])),
            "q": Out(read_port_signature(bufs["q"])),
            "k": Out(read_port_signature(bufs["k"])),
            "mul": Out(bank_signature(p.sparse_macs)),
            "score": Out(score_port_signature(p, p.sparse_capacity)),
            "score_row": Out(row_value_signature(p)),
        })

    @staticmethod
    def run_cycles(params, nnz):
        """Cycles from the start cycle to the first cycle with busy low."""
        if nnz == 0:
            return 1
        last = issue_cycle(nnz - 1, params.sparse_dpus, params.slices, params.beats)
        return 1 + last + array_latency(params.slices, SparseSddmm.read_lead(params),
                                        params.sparse_dpus) + 1

    def elaborate(self, platform):
        m = Module()
        p = self.params
        m.submodules.array = array = self.array
        wiring.connect(m, wiring.flipped(self.mul), array.mul)

        tokens = Signal.like(self.tokens)
        globals_ = Signal.like(self.globals)
        nnz = Signal.like(self.nnz)
        head_base = Signal.like(self.head_base)

        # -- C: issue, the CSC word's address ----------------------------------------------
        go = Signal()
        left = Signal.like(self.nnz)
        list_addr = Signal.like(self.csc.addr)
        m.d.comb += [self.csc.addr.eq(list_addr), array.start.eq(self.start),
                     array.go.eq(go)]
        with m.If(self.start):
            m.d.sync += [tokens.eq(self.tokens), globals_.eq(self.globals), nnz.eq(self.nnz),
                         head_base.eq(self.head_base), list_addr.eq(self.list_base),
                         left.eq(self.nnz), go.eq(self.nnz != 0),
                         self.busy.eq(self.nnz != 0)]
        with m.Elif(array.issue):
            m.d.sync += [list_addr.eq(list_addr + 1), left.eq(left - 1)]
            with m.If(left == 1):
                m.d.sync += go.eq(0)
        final = array.issue & (left == 1)

        # -- C+L: the CSC word, into a register here (the block sits across the die) ------
        word = Signal.like(self.csc.data)
        m.d.sync += word.eq(self.csc.data)

        # -- C+L+1: the entry, checked against the previous one ----------------------------
        valid1 = delayed(m, array.issue, CSC_READ_LATENCY + 1, "valid")
        final1 = delayed(m, final, CSC_READ_LATENCY + 1, "final")
        entry = data.View(csc_layout(p), word)
        prev_col = Signal.like(entry.col)
        prev_row = Signal.like(entry.row)
        have_prev = Signal()
        out_of_order = have_prev & ((entry.col < prev_col) |
                                    ((entry.col == prev_col) & (entry.row <= prev_row)))
        # (a global column is no sparse column either: CsrCheck flags it in the CSR list,
        # and IndexCheck makes the CSC list the same entries)
        # The checks registered apart and ORed the cycle after (`bad2`), where the error
        # flag takes them: the compares with N through the order check into the flag's
        # enable were a ViTCoD build's worst path (8.15 ns, a 1.8 ns net from `tokens`).
        checks = {"range": (entry.col >= tokens) | (entry.row >= tokens),
                  "pos": entry.pos >= nnz, "order": out_of_order}
        new_col = ~have_prev | (entry.col != prev_col)

        row2 = Signal.like(entry.row)
        pos2 = Signal.like(entry.pos)
        bad_2 = {name: Signal(name=f"bad_{name}2") for name in checks}
        bad2 = Cat(*bad_2.values()).any()
        valid2 = Signal()
        final2 = Signal()
        fetch2 = Signal()
        k_addr = Signal.like(self.k.addr)
        m.d.sync += [valid2.eq(valid1), final2.eq(final1), fetch2.eq(valid1 & new_col)]
        with m.If(self.start):
            m.d.sync += [have_prev.eq(0), self.error.eq(0)]
        with m.Elif(valid2 & bad2):
            m.d.sync += self.error.eq(1)
        with m.If(~self.start & valid1):
            m.d.sync += [prev_col.eq(entry.col), prev_row.eq(entry.row), have_prev.eq(1),
                         row2.eq(entry.row), pos2.eq(entry.pos),
                         *[bad_2[name].eq(check) for name, check in checks.items()]]
            with m.If(new_col):
                m.d.sync += k_addr.eq(head_base + entry.col)

        # -- C+L+2: the k row's read (a new column only), the q row's address --------------
        # (with row_beats b, each read takes b cycles, and everything after it b - 1 more)
        beats = p.beats
        q_addr = Signal.like(self.q.addr)
        k_row = read_row(m, self.k, k_addr, array, self.K_OFFSET, beats, "k")
        m.d.comb += self.k_fetch.eq(fetch2)
        with m.If(valid2):
            m.d.sync += q_addr.eq(head_base + row2)
        fetch3 = delayed(m, fetch2, beats + QK_READ_LATENCY - 1, "fetch")

        # -- C+L+3: the q row's read; the k row into the stationary register ---------------
        stationary = Signal.like(k_row)
        q_row = read_row(m, self.q, q_addr, array, self.Q_OFFSET, beats, "q")
        with m.If(fetch3):
            m.d.sync += stationary.eq(k_row)

        # -- C+L+4: both into the array (C+L+5: its DPU latches them) ----------------------
        m.d.comb += [array.q_row.eq(q_row), array.k_row.eq(stationary)]

        # -- the score, array.latency after C ----------------------------------------------
        meta = delayed(m, Cat(row2, pos2, bad2, final2), array.latency - CSC_READ_LATENCY - 2,
                       "meta")
        row_w = meta[:len(row2)]
        pos_w = meta[len(row2):len(row2) + len(pos2)]
        bad_w = meta[len(row2) + len(pos2)]
        final_w = meta[-1]
        write = array.done & ~bad_w
        m.d.comb += [self.score.addr.eq(pos_w), self.score.data.eq(array.score),
                     self.score.en.eq(write),
                     self.score_row.row.eq(row_w), self.score_row.value.eq(array.score),
                     self.score_row.en.eq(write)]
        with m.If(array.done & final_w):
            m.d.sync += self.busy.eq(0)
        return m
