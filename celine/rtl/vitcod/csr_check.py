"""The check of a head's global columns and CSR list, run in its phase 1 so that the softmax unit (phase 2)
walks only a well-formed list (docs/vitcod.md, "Errors": INDEX)."""

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ...engines.vitcod.spec import CSR_CHECK_TAIL, CSR_READ_LATENCY, buffers, csr_fields
from ..common.delay import delayed
from ..common.pick import picked_bit
from ..shell.contract import read_port_signature
from .dpu import check_params

__all__ = ["CsrCheck"]


def csr_layout(params):
    """A CSR word as a struct (row, col), low bits first (spec.csr_fields)."""
    return data.StructLayout(dict(csr_fields(params)))


class CsrCheck(wiring.Component):
    """Checks a head's global columns and its CSR list.

    First it reads gcols words gcols_base .. gcols_base + g - 1, one a cycle, flags one
    that is >= N or not strictly above the previous one, and marks each in an "is global"
    vector of 2^token_bits bits. Then it reads CSR entries list_base .. list_base + nnz - 1,
    one a cycle, and flags one with row >= N, col >= N, col a global column, or not
    strictly after the previous entry in (row, col) order; with g = 0 also a row without an
    entry (the first entry's row is not 0, a row is skipped, the last entry's row is not
    N-1, or nnz = 0).

    start (In): sample `tokens` N, `globals` g, `nnz`, `list_base` and `gcols_base`;
        clear `error`.
    busy (Out): from the cycle after start while reading; low again (with `error` final)
        g + nnz + CSR_CHECK_TAIL cycles after the start cycle (`run_cycles`; 1 if g + nnz = 0).
    gcols, csr: read ports of the gcols buffer and of the CSR list. error (Out): sticky
        until start.
    """

    def __init__(self, params):
        self.params = p = check_params(params)
        bufs = {b.name: b for b in buffers(p)}
        super().__init__({
            "start": In(1),
            "tokens": In(p.token_bits + 1),
            "globals": In(p.token_bits + 1),
            "nnz": In(p.position_bits + 1),
            "list_base": In(range(bufs["csr"].depth)),
            "gcols_base": In(range(bufs["gcols"].depth + 1)),
            "busy": Out(1),
            "error": Out(1),
            "gcols": Out(read_port_signature(bufs["gcols"])),
            "csr": Out(read_port_signature(bufs["csr"])),
        })

    @staticmethod
    def run_cycles(nnz, globals_=0):
        """Cycles from the start cycle to the first cycle with busy low."""
        return globals_ + nnz + CSR_CHECK_TAIL if globals_ + nnz else 1

    def elaborate(self, platform):
        m = Module()
        p = self.params
        tokens = Signal.like(self.tokens)
        # -- the reads: g gcols words, then nnz CSR words, one a cycle ---------------------
        g_left = Signal.like(self.globals)
        g_addr = Signal.like(self.gcols.addr)
        g_reading = Signal()
        left = Signal.like(self.nnz)
        addr = Signal.like(self.csr.addr)
        reading = Signal()
        nnz_pending = Signal()                    # the CSR reads follow the gcols reads
        m.d.comb += [self.csr.addr.eq(addr), self.gcols.addr.eq(g_addr)]
        with m.If(self.start):
            m.d.sync += [tokens.eq(self.tokens), g_left.eq(self.globals),
                         g_addr.eq(self.gcols_base), g_reading.eq(self.globals != 0),
                         left.eq(self.nnz), addr.eq(self.list_base),
                         reading.eq((self.globals == 0) & (self.nnz != 0)),
                         nnz_pending.eq((self.globals != 0) & (self.nnz != 0)),
                         self.busy.eq((self.globals != 0) | (self.nnz != 0))]
        with m.Else():
            with m.If(g_reading):
                m.d.sync += [g_addr.eq(g_addr + 1), g_left.eq(g_left - 1)]
                with m.If(g_left == 1):
                    m.d.sync += [g_reading.eq(0), reading.eq(nnz_pending),
                                 nnz_pending.eq(0)]
            with m.If(reading):
                m.d.sync += [addr.eq(addr + 1), left.eq(left - 1)]
                with m.If(left == 1):
                    m.d.sync += reading.eq(0)

        # -- the global columns: registered, then checked and marked ---------------------
        g_word = Signal.like(self.gcols.data)
        m.d.sync += g_word.eq(self.gcols.data)
        g_valid = delayed(m, g_reading, 2, "g_valid")
        # (busy falls CSR_CHECK_TAIL cycles after the last read, as with CSR entries)
        g_final = delayed(m, g_reading & (g_left == 1) & ~nnz_pending, CSR_CHECK_TAIL - 1,
                          "g_final")
        g_prev = Signal.like(g_word)
        g_have_prev = Signal()
        is_global = Signal(1 << p.token_bits)
        with m.If(self.start):
            m.d.sync += [g_have_prev.eq(0), is_global.eq(0)]
        with m.Else():
            with m.If(g_valid):
                m.d.sync += [g_prev.eq(g_word), g_have_prev.eq(1),
                             is_global.bit_select(g_word, 1).eq(1)]
                with m.If((g_word >= tokens) | (g_have_prev & (g_word <= g_prev))):
                    m.d.sync += self.error.eq(1)
            with m.If(g_final):
                m.d.sync += self.busy.eq(0)

        # -- the CSR entries: the word into a register here, after the block RAM's own
        # output register (CSR_READ_LATENCY 2: the blocks sit across the die, and their
        # output register straight into the checks was a build's worst path, a 2.4 ns net
        # then 7 levels, 9.4 ns), then the checks, each into a register of its own
        # (`failed`), then their OR into `error` (in one cycle, the word through the
        # compares, the global-column lookup and the OR into `error` was a ViTCoD build's
        # worst path, 9.6 ns, 8 levels) --------------------------------------------------
        word = Signal.like(self.csr.data)
        m.d.sync += word.eq(self.csr.data)
        valid = delayed(m, reading, CSR_READ_LATENCY + 1, "valid")
        final = delayed(m, reading & (left == 1), CSR_READ_LATENCY + 1, "final")
        checked = delayed(m, valid, 2, "checked")
        checked_final = delayed(m, final, 2, "checked_final")
        entry = data.View(csr_layout(p), word)
        prev_row = Signal.like(entry.row)
        prev_col = Signal.like(entry.col)
        have_prev = Signal()
        # (row, col) order is the order of the number row:col, so one compare of the two
        # fields side by side (a carry chain) takes the place of a row compare, a row
        # equality and a column compare combined in LUTs (that was a ViTCoD build's worst
        # path: the word into `failed`, 9.2 ns, 7 levels).
        out_of_order = have_prev & (Cat(entry.col, entry.row) <= Cat(prev_col, prev_row))
        # With no global column every row needs a CSR entry (else it has no score and the
        # softmax unit would wait for it): rows start at 0, never skip one, end at N-1.
        next_row = Signal.like(tokens)            # prev_row + 1, registered
        last_row = Signal.like(tokens)            # N - 1, registered
        no_dense = Signal()
        gap = no_dense & (Mux(have_prev, entry.row > next_row, entry.row != 0) |
                          (final & (entry.row != last_row)))
        # The checks go into registers (`first`), with the global-column lookup's first
        # step (common.pick): the group of `is_global` its column's high bits pick;
        # a stage later its low bits pick the bit, and the checks go into `failed` (the
        # word through the whole 2^token_bits-to-1 pick into `failed` was a ViTCoD build's
        # worst path, 9.7 ns: a 2.8 ns net, then 6 levels). The vector is complete: the
        # last gcols word was marked the cycle before the first CSR check at the latest.
        checks = [entry.row >= tokens, entry.col >= tokens, out_of_order, gap]
        first = Signal(len(checks))
        m.d.sync += first.eq(Cat(*checks))
        is_global_here = picked_bit(m, is_global, entry.col, "is_global")
        failed = Signal(len(checks) + 1)
        m.d.sync += failed.eq(Cat(first, is_global_here))
        with m.If(self.start):
            m.d.sync += [have_prev.eq(0), no_dense.eq(self.globals == 0),
                         last_row.eq(self.tokens - 1),
                         # no entry at all and no global column: every row is empty
                         self.error.eq((self.globals == 0) & (self.nnz == 0))]
        with m.Else():
            with m.If(valid):
                m.d.sync += [prev_row.eq(entry.row), prev_col.eq(entry.col),
                             have_prev.eq(1), next_row.eq(entry.row + 1)]
            with m.If(checked & failed.any()):
                m.d.sync += self.error.eq(1)
            with m.If(checked_final):
                m.d.sync += self.busy.eq(0)
        return m
