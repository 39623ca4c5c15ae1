"""The SpMM's output stage: finished rows of o -> the common requantizer -> one int8 word a
row into the `out` buffer (docs/vitcod.md, "The hardware")."""

from amaranth.hdl import Module, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..common.requant import Requantizer
from ..shell.contract import buffer_port_signature
from ...engines.vitcod.spec import VitcodParams, buffers
from ...spec.numerics import MULT_BITS, SHIFT_BITS
from .row_requantizer import RowRequantizer, load_copies

__all__ = ["OutputStage", "row_layout", "output_latency"]


def _buffer(params, name):
    return next(b for b in buffers(params) if b.name == name)


def row_layout(params):
    """A finished row: its d sums o_c (out_acc_width bits each) and the `out` word it goes to
    (head_base + i)."""
    return data.StructLayout({
        "addr": range(_buffer(params, "out").depth),
        "sums": data.ArrayLayout(signed(params.out_acc_width), params.head_dim),
    })


def output_latency(params):
    """Cycles from a row offered to the OutputStage to its write: d / out_lanes chunks
    through the requantizers."""
    return params.head_dim // params.out_lanes + Requantizer.latency


class OutputStage(wiring.Component):
    """Requantizes finished rows `out_lanes` values a cycle and writes each as one word.

    A row offered on `row` is copied into a RowRequantizer's working register (so the SpMM
    can finish the next row meanwhile) that shifts `out_lanes` sums a cycle into as many Requantizers
    (y = requantize(o, multiplier, shift), int8 at operand_width 8); the results are
    collected into the row's word, written on `out` (`write` for one cycle) when its last
    lanes leave the requantizers. A row takes K = d / out_lanes cycles.

    A row is offered with `load`: load_copies(d) equal bits, which its user drives from
    register copies (RowRequantizer: each steers a group of the working register's lanes).
    The stage is always ready: it never stalls (the write port has no backpressure),
    so its user schedules the rows at least K cycles apart (the SpMM does: see its
    `gap`), and a row then always arrives when the working register is empty or shows its
    last lanes (one arriving sooner would overwrite the row being requantized). Rows K
    cycles apart follow one another without a gap.

    `multiplier` and `shift` are held for a run. A row offered in cycle c is written in
    cycle c + `latency` (output_latency: K + Requantizer.latency); `busy` is high while a
    row is in the working register or the requantizers, up to its write.
    """

    def __init__(self, params):
        if not isinstance(params, VitcodParams):
            raise TypeError(f"params must be a VitcodParams, not {params!r}")
        self.params = params
        self.chunks = params.head_dim // params.out_lanes
        self.latency = output_latency(params)
        super().__init__({
            "load": In(load_copies(params.head_dim)),
            "row": In(row_layout(params)),
            "multiplier": In(unsigned(MULT_BITS)),
            "shift": In(unsigned(SHIFT_BITS)),
            "out": Out(buffer_port_signature(_buffer(params, "out"))),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        m.submodules.rows = rows = RowRequantizer(
            head_dim=p.head_dim, acc_width=p.out_acc_width, lanes=p.out_lanes,
            out_width=p.operand_width, depth=_buffer(p, "out").depth, beats=p.beats)
        # `rows` is always ready: its user keeps rows K cycles apart (see the docstring).
        m.d.comb += [
            rows.load.eq(self.load),
            rows.sums.eq(self.row.sums),
            rows.addr.eq(self.row.addr),
            rows.multiplier.eq(self.multiplier),
            rows.shift.eq(self.shift),
            self.out.addr.eq(rows.out.addr),
            self.out.data.eq(rows.out.data),
            self.out.write.eq(rows.out.write),
            self.busy.eq(rows.busy),
        ]
        return m
