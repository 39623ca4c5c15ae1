from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ...engines.vitcod.spec import (CSC_READ_LATENCY, INDEX_CHECK_LATENCY, VitcodParams,
                                    csc_fields, csr_fields)
from ..common.delay import delayed

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

    LATENCY: stages from an entry's issue to its comparison (each list word registered).

    `start` samples nnz and list_base; the check reads CSC entry n (port `csc`) and then the
    CSR entry at its position (port `csr`), one entry a cycle, for n = 0 .. nnz-1. `busy`
    holds until the last comparison; `error` (sticky until the next start) is raised by a
    position at or beyond nnz or a mismatch. `busy` is high for nnz + LATENCY cycles after
    the start cycle (none with nnz = 0).
    """

    LATENCY = INDEX_CHECK_LATENCY

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
        # Each list word goes into a register as it leaves its block RAM (a CSR word
        # compared straight from the block was a build's worst path, 13.4 ns), so an entry
        # takes LATENCY stages after its issue: 1 .. CSC_READ_LATENCY the CSC word arrives
        # (through the block's output register), then it is registered here (`csc_w`: the
        # blocks sit across the die) and the CSR read issued at its position; the CSR word
        # arrives CSR_READ_LATENCY stages later, is registered here too and compared.
        valid = [Signal(name=f"valid_{k}") for k in range(1, self.LATENCY + 1)]
        csc_w = Signal.like(self.csc.data)        # the CSC word, at stage CSC_READ_LATENCY + 1
        csr_w = Signal.like(self.csr.data)        # the CSR word, at stage LATENCY
        m.d.sync += csr_w.eq(self.csr.data)
        # the CSC word's row, col and verdict, a stage after csc_w, delayed to csr_w's
        row_c, col_c = Signal(p.token_bits), Signal(p.token_bits)
        bad_c = Signal()
        row_w, col_w, bad_w = (delayed(m, value, self.LATENCY - CSC_READ_LATENCY - 2, name)
                               for value, name in
                               ((row_c, "row"), (col_c, "col"), (bad_c, "bad")))

        pos_w = _field(csc_w, csc_fields(p), "pos")
        m.d.comb += [self.csc.addr.eq(base + n),
                     self.csr.addr.eq(base + pos_w)]

        # The last entry's index, a register set at the start: `n + 1 == nnz` (an adder
        # before the compare into `issuing`) was a ViTCoD build's slow path (7.7 ns).
        last_n = Signal.like(self.nnz)
        with m.If(self.start):
            m.d.sync += [nnz.eq(self.nnz), last_n.eq(self.nnz - 1), base.eq(self.list_base),
                         n.eq(0), issuing.eq(self.nnz != 0), self.error.eq(0)]
            m.d.sync += [v.eq(0) for v in valid]
        with m.Else():
            m.d.sync += [a.eq(b) for a, b in zip(valid, [issuing] + valid[:-1])]
            with m.If(issuing):
                m.d.sync += n.eq(n + 1)
                with m.If(n == last_n):
                    m.d.sync += issuing.eq(0)
            m.d.sync += [csc_w.eq(self.csc.data),
                         row_c.eq(_field(csc_w, csc_fields(p), "row")),
                         col_c.eq(_field(csc_w, csc_fields(p), "col")),
                         bad_c.eq(pos_w >= nnz)]
            mismatch = (Cat(_field(csr_w, csr_fields(p), "row"),
                            _field(csr_w, csr_fields(p), "col")) != Cat(row_w, col_w))
            with m.If(valid[-1] & (bad_w | mismatch)):
                m.d.sync += self.error.eq(1)
        m.d.comb += self.busy.eq(issuing | Cat(*valid).any())
        return m
