from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..common.requant import Requantizer
from ..common.skid import SkidBuffer
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


class ResultDrain(wiring.Component):
    """Streams out finished tiles while the array computes the next one.

    The finished tile itself sits in the PEs' shadow registers, which form one shift
    register per PE column (see ProcessingElement); `row` is its head, output row 0 of
    what is left. On `load` (only while not `busy`) the PEs copy their accumulators into
    the shadow registers and the drain starts counting tile_rows(precision) rows; each
    row it takes raises `shift` for one cycle, moving the next row to the head.

    Each lane passes through a Requantizer (int8 when requant.enable, else the full sum),
    then a skid buffer, so `o.ready` has no combinational path into the array. Full
    throughput: one row per cycle while `o.ready` is high. `busy` is high from load until
    the last row has left the shadow registers; `pending` while any row is in them, the
    requantizers or the skid buffer.
    """

    def __init__(self, params):
        self.params = params
        super().__init__({
            "load": In(1),
            "row": In(data.ArrayLayout(signed(params.result_width), params.weight_lanes)),
            "shift": Out(1),
            "precision": In(range(len(params.precisions))),
            "requant": In(REQUANT_LAYOUT),
            "busy": Out(1),
            "pending": Out(1),
            "o": Out(stream.Signature(output_layout(params))),
        })

    def elaborate(self, platform):
        m = Module()
        params = self.params

        remaining = Signal(range(params.act_lanes + 1))
        precision = Signal.like(self.precision)
        requant = Signal(REQUANT_LAYOUT)
        m.d.comb += self.busy.eq(remaining != 0)

        # Output pipeline: the requantizers' stages, advancing together.
        stages = Requantizer.latency
        m.submodules.skid = skid = SkidBuffer(output_layout(params))
        wiring.connect(m, wiring.flipped(self.o), skid.o)
        valid = Signal(stages)
        last = Signal(stages)
        value = [Signal(5, name=f"precision_stage{k}") for k in range(stages)]
        advance = ~valid[-1] | skid.i.ready
        take = advance & self.busy
        m.d.comb += [
            self.shift.eq(take),
            self.pending.eq(self.busy | valid.any() | self.o.valid),
        ]

        for n in range(params.weight_lanes):
            # Each lane's requantizer is as wide as the sums that lane can carry.
            req = Requantizer(in_width=params.lane_width(n))
            m.submodules[f"requant_{n}"] = req
            m.d.comb += [
                req.en.eq(advance),
                req.x.eq(self.row[n][:params.lane_width(n)]),
                req.multiplier.eq(requant.multiplier),
                req.shift.eq(requant.shift),
                req.bypass.eq(~requant.enable),
                skid.i.payload.data[n].eq(req.y),
            ]
        m.d.comb += [
            skid.i.valid.eq(valid[-1]),
            skid.i.payload.last.eq(last[-1]),
            skid.i.payload.precision.eq(value[-1]),
        ]

        current_value = 0
        for k, p in enumerate(params.precisions):
            current_value = Mux(precision == k, p, current_value)
        with m.If(advance):
            m.d.sync += [
                valid.eq(valid << 1 | take),
                last.eq(last << 1 | (remaining == 1)),
                value[0].eq(current_value),
                *(value[k + 1].eq(value[k]) for k in range(stages - 1)),
            ]

        with m.If(self.load):
            beats = 0
            for k, p in enumerate(params.precisions):
                beats = Mux(self.precision == k, params.tile_rows(p), beats)
            m.d.sync += [remaining.eq(beats), precision.eq(self.precision),
                         requant.eq(self.requant)]
        with m.Elif(take):
            m.d.sync += remaining.eq(remaining - 1)
        return m
