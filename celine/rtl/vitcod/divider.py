"""The softmax unit's reciprocal of a row sum, r = (2^R + S//2) // S, one sum a cycle
(docs/vitcod.md, "The integer arithmetic")."""

from amaranth.hdl import Cat, Module, ShapeLike, Signal
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ...engines.vitcod.spec import E_BITS, VitcodParams
from ..common.shaped_queue import _rejected

__all__ = ["ReciprocalPipeline"]


class ReciprocalPipeline(wiring.Component):
    """r = (2^R + S//2) // S by restoring division, one quotient bit per pipeline stage,
    one S a cycle, no stall (R = params.recip_shift).

    Inputs (sampled every cycle): ``valid``, ``s`` (2^E_BITS <= S < 2^sum_width: the row
    maximum's own e is 2^E_BITS) and ``tag`` (any shape, carried along). Outputs:
    ``out_valid``, ``r`` (recip_width bits) and ``out_tag``, exactly ``latency`` =
    recip_width cycles later. The first stage works on the inputs directly: drive them
    from registers.

    Because S >= 2^E_BITS, the quotient has only recip_width = R − 15 bits. The dividend
    D = 2^R + S//2 needs no register of its own: its top bits, D >> recip_width =
    2^(R − recip_width) + (S >> (recip_width + 1)), are the first partial remainder (< S),
    and its lower bits D[k] = S[k + 1] come from S, which every stage carries anyway.
    Stage k (k = recip_width − 1 .. 0) shifts in D[k] and subtracts S where it fits.
    """

    def __init__(self, params, tag=0):
        try:
            if not isinstance(params, VitcodParams):
                raise TypeError(f"params must be a VitcodParams, not {params!r}")
            if not isinstance(tag, (data.Layout, ShapeLike)):
                raise TypeError(f"tag must be a data layout or shape, not {tag!r}")
        except Exception:
            _rejected(self)
            raise
        self.params = params
        self._tag = tag
        self.latency = params.recip_width
        super().__init__({
            "valid": In(1),
            "s": In(params.sum_width),
            "tag": In(tag),
            "out_valid": Out(1),
            "r": Out(params.recip_width),
            "out_tag": Out(tag),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.params
        bits = p.recip_width
        top = p.recip_shift - bits              # = E_BITS - 1: D's top bit over the quotient
        assert top == E_BITS - 1

        def dividend_bit(s, k):
            """D[k] for k < R: bit k + 1 of S (0 beyond its width)."""
            return s[k + 1] if k + 1 < len(s) else 0

        valid, s, tag = self.valid, self.s, self.tag
        remainder = Signal(p.sum_width, name="remainder_in")      # < S
        m.d.comb += remainder.eq((1 << top) + (self.s >> (bits + 1)))
        quotient = None                          # the bits so far, most significant last
        for stage, k in enumerate(reversed(range(bits))):
            trial = Signal(p.sum_width + 1, name=f"trial_{k}")
            # One subtraction (a carry chain), its borrow the compare: a compare of its
            # own was mapped to LUTs, the stage's 6 levels into the remainder a build's
            # worst path (8.7 ns).
            difference = Signal(p.sum_width + 2, name=f"difference_{k}")
            m.d.comb += [trial.eq(Cat(dividend_bit(s, k), remainder)),
                         difference.eq(trial - s)]
            fits = ~difference[-1]
            valid_k = Signal(name=f"valid_{stage + 1}")
            s_k = Signal.like(self.s, name=f"s_{stage + 1}")
            tag_k = Signal(self._tag, name=f"tag_{stage + 1}")
            remainder_k = Signal(p.sum_width, name=f"remainder_{stage + 1}")
            quotient_k = Signal(stage + 1, name=f"quotient_{stage + 1}")
            m.d.sync += [
                valid_k.eq(valid), s_k.eq(s), tag_k.eq(tag),
                quotient_k.eq(fits if quotient is None else Cat(fits, quotient)),
            ]
            with m.If(fits):
                m.d.sync += remainder_k.eq(difference)
            with m.Else():
                m.d.sync += remainder_k.eq(trial)
            valid, s, tag, remainder, quotient = valid_k, s_k, tag_k, remainder_k, quotient_k
        m.d.comb += [self.out_valid.eq(valid), self.r.eq(quotient), self.out_tag.eq(tag)]
        return m
