"""The check of a head's CSR list, run in its phase 1 so that the softmax unit (phase 2)
walks only a well-formed list (docs/vitcod.md, "Errors": INDEX)."""

from amaranth.hdl import Module, Mux, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ...engines.vitcod.spec import buffers, csr_fields
from ..shell.contract import read_port_signature
from .dpu import check_params, delayed

__all__ = ["CsrCheck"]


def csr_layout(params):
    """A CSR word as a struct (row, col), low bits first (spec.csr_fields)."""
    return data.StructLayout(dict(csr_fields(params)))


class CsrCheck(wiring.Component):
    """Reads entries list_base .. list_base + nnz - 1 of the CSR list, one a cycle, and
    flags one with row >= N, col < g, col >= N, or not strictly after the previous entry
    in (row, col) order; with g = 0 also a row without an entry (the first entry's row is
    not 0, a row is skipped, the last entry's row is not N-1, or nnz = 0).

    start (In): sample `tokens` N, `globals` g, `nnz` and `list_base`; clear `error`.
    busy (Out): from the cycle after start while reading; low again (with `error` final)
        nnz + 3 cycles after the start cycle (`run_cycles`; 1 if nnz = 0).
    csr: read port of the CSR list. error (Out): sticky until start.
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
            "busy": Out(1),
            "error": Out(1),
            "csr": Out(read_port_signature(bufs["csr"])),
        })

    @staticmethod
    def run_cycles(nnz):
        """Cycles from the start cycle to the first cycle with busy low."""
        return nnz + 3 if nnz else 1

    def elaborate(self, platform):
        m = Module()
        p = self.params
        tokens = Signal.like(self.tokens)
        globals_ = Signal.like(self.globals)
        left = Signal.like(self.nnz)
        addr = Signal.like(self.csr.addr)
        reading = Signal()
        m.d.comb += self.csr.addr.eq(addr)
        with m.If(self.start):
            m.d.sync += [tokens.eq(self.tokens), globals_.eq(self.globals),
                         left.eq(self.nnz), addr.eq(self.list_base),
                         reading.eq(self.nnz != 0), self.busy.eq(self.nnz != 0)]
        with m.Elif(reading):
            m.d.sync += [addr.eq(addr + 1), left.eq(left - 1)]
            with m.If(left == 1):
                m.d.sync += reading.eq(0)

        # The word into a register (a block RAM's output is slow), then the checks.
        word = Signal.like(self.csr.data)
        m.d.sync += word.eq(self.csr.data)
        valid = delayed(m, reading, 2, "valid")
        final = delayed(m, reading & (left == 1), 2, "final")
        entry = data.View(csr_layout(p), word)
        prev_row = Signal.like(entry.row)
        prev_col = Signal.like(entry.col)
        have_prev = Signal()
        out_of_order = have_prev & ((entry.row < prev_row) |
                                    ((entry.row == prev_row) & (entry.col <= prev_col)))
        # With no global column every row needs a CSR entry (else it has no score and the
        # softmax unit would wait for it): rows start at 0, never skip one, end at N-1.
        next_row = Signal.like(tokens)            # prev_row + 1, registered
        last_row = Signal.like(tokens)            # N - 1, registered
        no_dense = Signal()
        gap = no_dense & (Mux(have_prev, entry.row > next_row, entry.row != 0) |
                          (final & (entry.row != last_row)))
        bad = ((entry.row >= tokens) | (entry.col < globals_) | (entry.col >= tokens) |
               out_of_order | gap)
        with m.If(self.start):
            m.d.sync += [have_prev.eq(0), no_dense.eq(self.globals == 0),
                         last_row.eq(self.tokens - 1),
                         # no entry at all and no global column: every row is empty
                         self.error.eq((self.globals == 0) & (self.nnz == 0))]
        with m.Elif(valid):
            m.d.sync += [prev_row.eq(entry.row), prev_col.eq(entry.col), have_prev.eq(1),
                         next_row.eq(entry.row + 1)]
            with m.If(bad):
                m.d.sync += self.error.eq(1)
            with m.If(final):
                m.d.sync += self.busy.eq(0)
        return m
