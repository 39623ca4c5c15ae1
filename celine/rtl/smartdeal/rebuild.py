"""The SD decoder's rebuild: rows of Ce codes with their basis -> int8 weights, by shifts and
adds only (no multiplier: the weights' requantizer has M_w = 1)."""

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ...golden.smartdeal import format as sd_format
from ...spec.checks import check_choice, check_int
from ...spec.numerics import SHIFT_BITS
from ..common.skid import SkidBuffer
from .layouts import BEAT_FLAGS, WEIGHT_BITS, row_beat_layout, weight_beat_layout
from .parser import ROWS_PER_CYCLE

__all__ = ["SdRebuild", "rebuilt_bits"]

BASIS = sd_format.BASIS


def rebuilt_bits(exponent_bits):
    """Bits of an exact rebuilt weight: |w| <= 3 * 128 * 2^(2^E - 1), signed. The same as
    celine.golden.smartdeal.integer.rebuilt_width(E) (a test checks it), computed here from
    the format's constants so that the generator needs no torch."""
    largest = BASIS << (sd_format.BASIS_BITS - 1) << ((1 << exponent_bits) - 1)
    return largest.bit_length() + 1


class SdRebuild(wiring.Component):
    """Beats of R rows of Ce codes and their block's B (`i`, layouts.row_beat_layout) ->
    beats of 3R int8 weights (`o`, layouts.weight_beat_layout), the row valid bits and
    flags passed along.

    For row r and j = 0, 1, 2 (golden: integer.rebuild_int, weights_int8 with M_w = 1):
        w_j  = sum_k s_k * (B[k][j] << f_k)          exact, rebuilt_width(E) bits
        w8_j = clamp(round_half_up(w_j / 2^S), -128, 127)
    with S = `weight_shift` (the header's S_w; held while beats pass; any 0 .. 63: a shift
    of rebuilt_width(E) bits or more gives 0, as the golden requantizer does).

    A pipeline of `latency` = 5 stages (terms; sum; rounding; shift; clamp) that all move
    together when the output skid buffer can take a beat (`i.ready` is that registered
    ready): one beat a cycle, in order, none lost. Shifts and adds only: no `*`.
    `weight_shift` is registered: set it a cycle before the first beat.
    `busy`: a beat is in the pipeline or waits on `o`.
    """

    latency = 5

    def __init__(self, *, exponent_bits=2, rows_per_cycle=1):
        try:
            check_int("exponent_bits", exponent_bits)
            check_choice("exponent_bits", exponent_bits, sd_format.EXPONENT_BITS)
            check_int("rows_per_cycle", rows_per_cycle)
            check_choice("rows_per_cycle", rows_per_cycle, ROWS_PER_CYCLE)
        except Exception:
            self._MustUse__silence = True       # no "created but never used" warning
            raise
        self.exponent_bits, self.rows_per_cycle = exponent_bits, rows_per_cycle
        self.width = rebuilt_bits(exponent_bits)
        super().__init__({
            "i": In(stream.Signature(row_beat_layout(exponent_bits, rows_per_cycle))),
            "weight_shift": In(unsigned(SHIFT_BITS)),
            "o": Out(stream.Signature(weight_beat_layout(rows_per_cycle))),
            "busy": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        E, R, N = self.exponent_bits, self.rows_per_cycle, self.width
        lanes = BASIS * R                               # weights a beat
        m.submodules.skid = skid = SkidBuffer(weight_beat_layout(R))
        en = Signal()
        m.d.comb += [en.eq(skid.i.ready), self.i.ready.eq(en)]

        # The shift, held for the layer: min(S, N) (a larger one gives 0 as N does) and
        # the rounding term 2^(S-1) (0 for S = 0), registered.
        shift = Signal(range(N + 1))
        half = Signal(N)
        m.d.sync += shift.eq(Mux(self.weight_shift > N, N, self.weight_shift))
        m.d.sync += half.eq(Mux(shift == 0, 0, Const(1, N + 1) << shift >> 1))

        beat = self.i.payload
        flags = Cat(*[getattr(beat, name) for name in BEAT_FLAGS])
        valid = [Signal(name=f"valid{s}") for s in range(self.latency)]
        rows_valid = [Signal(R, name=f"rows_valid{s}") for s in range(self.latency)]
        beat_flags = [Signal(len(BEAT_FLAGS), name=f"flags{s}") for s in range(self.latency)]
        with m.If(en):
            m.d.sync += [valid[0].eq(self.i.valid), rows_valid[0].eq(beat.valid),
                         beat_flags[0].eq(flags)]
            for s in range(1, self.latency):
                m.d.sync += [valid[s].eq(valid[s - 1]), rows_valid[s].eq(rows_valid[s - 1]),
                             beat_flags[s].eq(beat_flags[s - 1])]

        # 1. terms: +-(B[k][j] << f_k) as one's complement (x ^ -1 = -x - 1) and the
        # count of negated terms (their +1s), added in the sum.
        terms = [[Signal(signed(N), name=f"term{n}_{k}") for k in range(BASIS)]
                 for n in range(lanes)]
        ones = [Signal(range(BASIS + 1), name=f"ones{n}") for n in range(lanes)]
        for r in range(R):
            row = beat.rows[r]
            for j in range(BASIS):
                n = BASIS * r + j
                negated = []
                for k in range(BASIS):
                    c = row[k]
                    b = beat.basis[BASIS * k + j]
                    shifted = Signal(signed(N), name=f"shifted{n}_{k}")
                    m.d.comb += shifted.eq(b << c.f)
                    negate = c.nonzero & c.sign
                    with m.If(en):
                        m.d.sync += terms[n][k].eq(
                            Mux(c.nonzero, shifted ^ Mux(negate, -1, 0), 0))
                    negated.append(negate)
                with m.If(en):
                    m.d.sync += ones[n].eq(sum(negated))

        # 2. the exact rebuilt weight; 3. plus the rounding term; 4. shifted by S (an
        # arithmetic shift); 5. saturated to int8.
        exact = [Signal(signed(N), name=f"w{n}") for n in range(lanes)]
        rounded = [Signal(signed(N + 1), name=f"rounded{n}") for n in range(lanes)]
        shifted = [Signal(signed(N + 1), name=f"down{n}") for n in range(lanes)]
        lo, hi = -(1 << (WEIGHT_BITS - 1)), (1 << (WEIGHT_BITS - 1)) - 1
        weights = Signal(data.ArrayLayout(signed(WEIGHT_BITS), lanes))
        for n in range(lanes):
            t = terms[n]
            with m.If(en):
                m.d.sync += [
                    exact[n].eq(t[0] + t[1] + t[2] + ones[n]),
                    rounded[n].eq(exact[n] + half),
                    shifted[n].eq(rounded[n] >> shift),
                    weights[n].eq(Mux(shifted[n] < lo, lo,
                                      Mux(shifted[n] > hi, hi, shifted[n]))),
                ]

        last = self.latency - 1
        m.d.comb += [
            skid.i.valid.eq(valid[last]),
            skid.i.payload.weights.eq(weights),
            skid.i.payload.valid.eq(rows_valid[last]),
            *[getattr(skid.i.payload, name).eq(beat_flags[last][b])
              for b, name in enumerate(BEAT_FLAGS)],
        ]
        wiring.connect(m, skid.o, wiring.flipped(self.o))
        m.d.comb += self.busy.eq(Cat(*valid).any() | self.o.valid)
        return m
