from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ...engines.vitcod.spec import VitcodParams, csc_fields, csr_fields

__all__ = ["IndexCheck"]


def read_port(depth, width):
    return wiring.Signature({"addr": Out(range(max(2, depth))), "data": In(width)})


def _field(word, fields, name):
    shift = 0
    for field_name, width in fields:
        if field_name == name:
            return word[shift:shift + width]
        shift += width
    raise KeyError(name)


class IndexCheck(wiring.Component):
    """Checks that a head's CSC list points into its CSR list: the CSR entry at each CSC
    entry's position is that entry's (row, col). With the lists' own range and order
    checks (the sparser engine checks the CSC list, CsrCheck the CSR list) this makes the
    CSC-to-CSR positions a bijection, so every sparse score lands where the softmax unit
    reads it (docs/vitcod.md, "Errors").

    `start` samples nnz and list_base; the check reads CSC entry n (port `csc`) and then the
    CSR entry at its position (port `csr`), one entry a cycle, for n = 0 .. nnz-1. `busy`
    holds until the last comparison; `error` (sticky until the next start) is raised by a
    position at or beyond nnz or a mismatch. `busy` is high for nnz + 2 cycles after the
    start cycle (none with nnz = 0).
    """

    def __init__(self, params):
        if not isinstance(params, VitcodParams):
            raise TypeError(f"params must be a VitcodParams, not {params!r}")
        self.params = params
        p = params
        depth = max(1, p.heads * p.sparse_capacity)
        super().__init__({
            "start": In(1),
            "nnz": In(p.position_bits + 1),
            "list_base": In(range(depth + 1)),
            "busy": Out(1),
            "error": Out(1),
            "csc": Out(read_port(depth, sum(w for _, w in csc_fields(p)))),
            "csr": Out(read_port(depth, sum(w for _, w in csr_fields(p)))),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        nnz = Signal.like(self.nnz)
        base = Signal.like(self.list_base)
        n = Signal.like(self.nnz)
        issuing = Signal()
        # Stage 1: the CSC word is in (read issued last cycle); stage 2: the CSR word is in.
        valid_1, valid_2 = Signal(), Signal()
        row_2 = Signal(p.token_bits)
        col_2 = Signal(p.token_bits)
        bad_2 = Signal()

        csc_word = self.csc.data
        pos = _field(csc_word, csc_fields(p), "pos")
        m.d.comb += [self.csc.addr.eq(base + n),
                     self.csr.addr.eq(base + pos)]

        with m.If(self.start):
            m.d.sync += [nnz.eq(self.nnz), base.eq(self.list_base), n.eq(0),
                         issuing.eq(self.nnz != 0), self.error.eq(0),
                         valid_1.eq(0), valid_2.eq(0)]
        with m.Else():
            m.d.sync += valid_1.eq(issuing)
            with m.If(issuing):
                m.d.sync += n.eq(n + 1)
                with m.If(n + 1 == nnz):
                    m.d.sync += issuing.eq(0)
            m.d.sync += [valid_2.eq(valid_1),
                         row_2.eq(_field(csc_word, csc_fields(p), "row")),
                         col_2.eq(_field(csc_word, csc_fields(p), "col")),
                         bad_2.eq(pos >= nnz)]
            csr_word = self.csr.data
            mismatch = (Cat(_field(csr_word, csr_fields(p), "row"),
                            _field(csr_word, csr_fields(p), "col")) != Cat(row_2, col_2))
            with m.If(valid_2 & (bad_2 | mismatch)):
                m.d.sync += self.error.eq(1)
        m.d.comb += self.busy.eq(issuing | valid_1 | valid_2)
        return m
