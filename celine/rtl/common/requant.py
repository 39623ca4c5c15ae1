from amaranth.hdl import Cat, Const, Signal, Module, signed, unsigned, Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ...spec.checks import check_int
from ...spec.numerics import REQUANT_LATENCY
from .compare import greater_than, less_than
from .multiplier import RegisteredMultiplier, chunk_operand, mult18_chunks

# The shift's bits at or above this one are applied in the second stage, the rest in the
# third: each stage is then at most three levels of 2:1 multiplexers.
_SPLIT_BIT = 3

# The product x * M takes PRODUCT_STAGES of the REQUANT_LATENCY stages: x cut into chunks
# that each fit a MULT18X18D beside M, the chunk products on RegisteredMultipliers (input
# and output registers: 2 stages), then two levels of adders (pairs, then the two sums),
# so at most four chunks: x up to 3 * 17 + 18 = 69 bits.
PRODUCT_STAGES = RegisteredMultiplier.latency + 2


class Requantizer(wiring.Component):
    """Narrow an accumulator value: y = clamp((x * M + 2^(S-1)) >> S, lo, hi).

    Arithmetic shift with round-half-up (the rounding term is 0 when S = 0) and saturation
    to `out_width` bits, exactly as golden/quant.py `requantize`. With `bypass` high the
    value passes unchanged instead (so `y` is as wide as the wider of `x` and the result).

    Only the result's few bits are ever shifted. With p = x * M, t = max(S - 1, 0) and
    r = [S > 0], floor((p + 2^(S-1)) / 2^S) = (q + r) >> r with q = p >> t (an arithmetic
    shift: floor of a floor). The clamp needs q only within [2 lo - 1, 2 hi + 1], which
    w + 2 bits hold (w = out_width); so the shifter produces q's low w + 2 bits, and q
    fits in them exactly when no bit of p at or above t + w + 1 differs from p's sign (a
    suffix-OR of p's bits against its sign, indexed by t); a q that does not fit saturates
    to p's sign. No adder or comparator is wider than w + 3 bits, where adding a 2^63
    rounding term to the whole product would take a 65-bit one.

    Pipelined in `latency` = 8 register stages advancing on `en`: the multiply
    (PRODUCT_STAGES = 4: x in 17-bit chunks, each times M on a RegisteredMultiplier, a
    MULT18X18D with its own registers on ECP5, then the shifted chunk products summed in
    two levels); shift by t's high bits and the suffix-OR; shift by t's low bits and the
    fit; round; clamp. So `y` shows the result for the `x` presented eight enabled
    cycles earlier, and no stage has more than one adder or a few levels of logic. A
    one-bit M is a multiplexer, not a multiplier block; an M wider than 17 bits is cut
    into 17-bit chunks too, as long as there are at most four chunk products (a 33-bit x
    by a 25-bit M: 2 chunks times 2); beyond that it is one wide multiply (several
    blocks that yosys builds with their registers bypassed: slower). The caller owns the
    valid/ready handshake around it.
    """

    latency = REQUANT_LATENCY

    def __init__(self, *, in_width, multiplier_width=16, shift_width=6, out_width=8):
        check_int("in_width", in_width, minimum=2, maximum=64)
        check_int("multiplier_width", multiplier_width, minimum=1, maximum=32)
        check_int("shift_width", shift_width, minimum=1, maximum=7)
        check_int("out_width", out_width, minimum=2, maximum=64)
        self.in_width = in_width
        self.multiplier_width = multiplier_width
        self.shift_width = shift_width
        self.out_width = out_width
        super().__init__({
            "en": In(1),
            "x": In(signed(in_width)),
            "multiplier": In(unsigned(multiplier_width)),
            "shift": In(unsigned(shift_width)),
            "bypass": In(1),
            "y": Out(signed(max(in_width, out_width))),
        })

    def elaborate(self, platform):
        m = Module()
        w = self.out_width
        product_width = self.in_width + self.multiplier_width + 1
        q_width = w + 2

        def stage(name, value, shape=None):
            reg = Signal(shape if shape is not None else value.shape(), name=name)
            with m.If(self.en):
                m.d.sync += reg.eq(value)
            return reg

        def carry(name, value, stages=PRODUCT_STAGES + 2):
            """`value` delayed: [value, after stage 1, ..., after stage `stages`]."""
            line = [value]
            for k in range(1, stages + 1):
                line.append(stage(f"{name}_{k}", line[-1]))
            return line

        # Stages 1 .. PRODUCT_STAGES: the product; t = max(S - 1, 0) and r = [S > 0] ride
        # along. Line index P + k is beside stage k of the shift/round part below.
        P = PRODUCT_STAGES - 1
        raw, bypass = carry("raw", self.x, P + 4), carry("bypass", self.bypass, P + 4)
        t = carry("t", Mux(self.shift == 0, 0, self.shift - 1)[:self.shift_width], P + 2)
        r = carry("r", self.shift != 0, P + 3)
        t, r, raw, bypass = t[P:], r[P:], raw[P:], bypass[P:]
        product = self._product(m, stage, product_width)
        sign = carry("sign", product[-1], 2)     # sign[k]: beside stage k + 1's registers
        def _bits(value, start, count):
            """value[start : start + count], sign-extended past its top bit."""
            top = len(value) - 1
            return Cat(*(value[min(start + k, top)] for k in range(count)))

        split = min(_SPLIT_BIT, self.shift_width)
        low_span = (1 << split) - 1                   # the largest shift stage 3 applies
        # Stage 2: the high bits of t; and, for each position k, whether any bit of p at
        # or above k differs from the sign (zero past the top: the sign extends).
        high = Signal(q_width + low_span, name="shift_high")
        def level(value, select, step, count):
            """A Signal of `count` bits: `value` >> `step` where `select` is high. (A Signal
            per level: nested expressions would be copied, not shared, by the back end.)"""
            out = Signal(count, name=f"shift_by_{step}")
            m.d.comb += out.eq(Mux(select, _bits(value, step, count), _bits(value, 0, count)))
            return out

        value = product
        for b in reversed(range(split, self.shift_width)):
            value = level(value, t[1][b], 1 << b, q_width + low_span + (1 << b) - 1)
        m.d.comb += high.eq(_bits(value, 0, len(high)))
        high_2 = stage("high", high)
        differs = Cat(*(product[k] ^ product[-1] for k in range(product_width)))
        suffix = Cat(*(differs[k:].any() for k in range(product_width)))
        suffix_2 = stage("suffix", suffix)
        # Stage 3: the low bits of t, and whether q fits in w + 2 bits (no differing bit of
        # p at or above t + w + 1; positions past p's top never differ).
        value = high_2
        for b in reversed(range(split)):
            value = level(value, t[2][b], 1 << b, q_width + (1 << b) - 1)
        q_3 = stage("q", _bits(value, 0, q_width), signed(q_width))
        padded = Cat(suffix_2, Const(0, (1 << self.shift_width) + q_width))
        fits_3 = stage("fits", ~padded.bit_select(t[2] + (q_width - 1), 1))
        # Stage 4: round. Stage 5: clamp (a q that does not fit saturates to the sign).
        lo, hi = -(1 << (w - 1)), (1 << (w - 1)) - 1
        # The clamp's verdicts are taken in stage 4 beside the rounding, from q and r:
        # with r, floor((q + 1) / 2) < lo exactly when q < 2 lo - 1, and > hi when q > 2 hi.
        # So stage 5 is multiplexers only.
        rounded_4 = stage("rounded", Mux(r[3], (q_3 + 1) >> 1, q_3), signed(q_width + 1))
        # The compares with constants as logic (common/compare.py): as `<` and `>` they
        # were carry chains, 15 levels into `to_hi` (8.9 ns, a build's worst path).
        under = Mux(r[3], less_than(q_3, 2 * lo - 1), less_than(q_3, lo))
        over = Mux(r[3], greater_than(q_3, 2 * hi), greater_than(q_3, hi))
        to_lo_4 = stage("to_lo", Mux(fits_3, under, sign[2]))
        to_hi_4 = stage("to_hi", Mux(fits_3, over, ~sign[2]))
        clamped = Mux(to_lo_4, lo, Mux(to_hi_4, hi, rounded_4))
        with m.If(self.en):
            m.d.sync += self.y.eq(Mux(bypass[4], raw[4], clamped))
        return m

    def _product(self, m, stage, width):
        """x * M, PRODUCT_STAGES enabled cycles after x and M (a Signal of `width` bits)."""
        if self.multiplier_width == 1:
            # M is 0 or 1: a multiplexer, delayed to the same stage.
            value = Mux(self.multiplier, self.x, 0)
            for k in range(1, PRODUCT_STAGES + 1):
                value = stage(f"product_{k}", value, signed(width))
            return value
        x_chunks = mult18_chunks(self.in_width, signed_top=True)
        m_chunks = mult18_chunks(self.multiplier_width, signed_top=False)
        if len(x_chunks) * len(m_chunks) > 4:
            # More partial products than two adder levels sum: M whole, one wide multiply
            # when it is wider than a block takes (yosys builds it from several blocks,
            # their registers bypassed: slower).
            if len(m_chunks) > 1:
                x_chunks = [(0, self.in_width)]
            m_chunks = [(0, self.multiplier_width)]
        terms = []
        for i, (x_lo, x_bits) in enumerate(x_chunks):
            # Low chunks are unsigned, the top one keeps x's sign; M is unsigned.
            a = chunk_operand(self.x, x_lo, x_bits, signed_top=True)
            for j, (m_lo, m_bits) in enumerate(m_chunks):
                b = chunk_operand(self.multiplier, m_lo, m_bits, signed_top=False)
                mult = RegisteredMultiplier(len(a), len(b), with_enable=True)
                m.submodules[f"chunk_{i}" if len(m_chunks) == 1 else f"chunk_{i}_{j}"] = mult
                m.d.comb += [mult.en.eq(self.en), mult.a.eq(a), mult.b.eq(b)]
                terms.append((x_lo + m_lo, mult.p))
        # Summed in position order, so that each pair's higher term shifts left.
        terms.sort(key=lambda term: term[0])
        # Two adder levels: each pair of chunk products, then the two sums. A term is
        # (its bit position in x, its value).
        for level in range(2):
            summed = []
            for k in range(0, len(terms), 2):
                base, value = terms[k]
                if k + 1 < len(terms):
                    high_lo, high = terms[k + 1]
                    value = value + (high << (high_lo - base))
                summed.append((base, stage(f"sum_{level}_{k // 2}", value, signed(width))))
            terms = summed
        (_, product), = terms            # the lowest chunk's: bit 0 of x
        return product
