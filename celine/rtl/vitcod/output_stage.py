"""The SpMM's output stage: finished rows of o -> the common requantizer -> one int8 word a
row into the `out` buffer (docs/vitcod.md, "The hardware")."""

from amaranth.hdl import Cat, Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..common.requant import Requantizer
from ..shell.contract import buffer_port_signature
from ...engines.vitcod.spec import VitcodParams, buffers
from ...spec.numerics import MULT_BITS, SHIFT_BITS

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

    A row offered on `rows` is copied into a working register (so the SpMM can finish the
    next row meanwhile) that shifts `out_lanes` sums a cycle into as many Requantizers
    (y = requantize(o, multiplier, shift), int8 at operand_width 8); the results are
    collected into the row's word, written on `out` (`write` for one cycle) when its last
    lanes leave the requantizers. A row takes K = d / out_lanes cycles.

    `rows` is always ready: the stage never stalls (the write port has no backpressure),
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
            "rows": In(stream.Signature(row_layout(params), always_ready=True)),
            "multiplier": In(unsigned(MULT_BITS)),
            "shift": In(unsigned(SHIFT_BITS)),
            "out": Out(buffer_port_signature(_buffer(params, "out"))),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        lanes, chunks, w = p.out_lanes, self.chunks, p.operand_width
        acc_width = p.out_acc_width

        # The working register: a shift register whose lowest `lanes` sums are requantized.
        work = Signal(data.ArrayLayout(signed(acc_width), p.head_dim))
        work_addr = Signal.like(self.rows.payload.addr)
        left = Signal(range(chunks + 1))           # chunks still to present
        present = Signal()
        m.d.comb += present.eq(left != 0)
        with m.If(self.rows.valid):
            m.d.sync += [work.eq(self.rows.payload.sums), work_addr.eq(self.rows.payload.addr),
                         left.eq(chunks)]
        with m.Elif(present):
            m.d.sync += [work.as_value().eq(work.as_value() >> (lanes * acc_width)),
                         left.eq(left - 1)]

        # The requantizers never stall (the write port has no backpressure): `en` stays high
        # and a delay line of their latency carries valid / write / address alongside.
        results = []
        for k in range(lanes):
            req = Requantizer(in_width=acc_width, multiplier_width=MULT_BITS,
                              shift_width=SHIFT_BITS, out_width=w)
            m.submodules[f"requant_{k}"] = req
            m.d.comb += [req.en.eq(1), req.x.eq(work[k]), req.multiplier.eq(self.multiplier),
                         req.shift.eq(self.shift), req.bypass.eq(0)]
            results.append(req.y[:w])
        chunk = Cat(*results)

        valid, write, addr = present, present & (left == 1), work_addr
        line = []
        for stage in range(Requantizer.latency):
            nxt = (Signal(name=f"valid_{stage}"), Signal(name=f"write_{stage}"),
                   Signal.like(work_addr, name=f"addr_{stage}"))
            m.d.sync += [nxt[0].eq(valid), nxt[1].eq(write), nxt[2].eq(addr)]
            line.append(nxt[0])
            valid, write, addr = nxt

        # Earlier chunks of the row wait in `collect` (the oldest lowest); the last one joins
        # them straight from the requantizers, so the word is written as it completes.
        if chunks > 1:
            collect = Signal((chunks - 1) * lanes * w)
            with m.If(valid):
                m.d.sync += collect.eq(Cat(collect[lanes * w:], chunk))
            word = Cat(collect, chunk)
        else:
            word = chunk
        m.d.comb += [
            self.out.addr.eq(addr),
            self.out.data.eq(word),
            self.out.write.eq(write),
            self.busy.eq(present | Cat(*line).any()),
        ]
        return m
