"""The softmax unit's exponential e = 2^16 · 2^(−z/4096), bit for bit as
celine.golden.vitcod.attention.exp_int computes it (docs/vitcod.md, "The integer
arithmetic")."""

from amaranth.hdl import Cat, Const, Module, ShapeLike, Signal
from amaranth.lib import data, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ...engines.vitcod.spec import (E_BITS, EXP_FRAC_BITS, EXP_HI_TABLE, EXP_LATENCY,
                                    EXP_LO_TABLE, EXP_TABLE_BITS, X_BITS)
from ...spec.numerics import MULT_BITS, SHIFT_BITS
from ..common.multiplier import RegisteredMultiplier
from ..common.shaped_queue import _rejected

__all__ = ["ExpUnit", "E_WIDTH", "EXP_ZERO_SHIFT"]

E_WIDTH = E_BITS + 1            # e is 0 .. 2^E_BITS
TABLE_WIDTH = E_BITS + 1        # HI[0] = LO[0] = 2^E_BITS
PRODUCT_WIDTH = 2 * E_BITS + 1  # HI·LO <= 2^(2·E_BITS)
Z_WIDTH = X_BITS + MULT_BITS    # z = (x·exp_mult) >> exp_shift < 2^33
# From this integer part n of z on, (HI·LO + 2^(15+n)) >> (16+n) is 0 (HI·LO <= 2^32 <
# 2^(15+n)): n is clamped to it, so the final shift stays within 15 + 18 = 33.
EXP_ZERO_SHIFT = E_BITS + 2


class ExpUnit(wiring.Component):
    """e = (HI[a]·LO[b] + 2^(15+n)) >> (16+n) of z = (x·exp_mult) >> exp_shift, one x a
    cycle, fully pipelined with no stall.

    Inputs (sampled every cycle): ``valid``, ``x`` (the clamped distance below the row
    maximum, X_BITS unsigned: the caller computes min(m − s, 2^X_BITS − 1)), ``exp_mult``,
    ``exp_shift`` and ``tag`` (any shape, carried along untouched). Outputs: ``out_valid``,
    ``e`` (0 .. 2^E_BITS) and ``out_tag``, exactly ``latency`` = 9 cycles after their
    inputs: the user counts the latency (``out_valid`` is ``valid`` delayed); nothing
    stalls. Every input may change every cycle (exp_mult and exp_shift travel with x).

    Stages (one register each, so that every multiply has a register before and after
    and every shifter is at most an 8-way multiplexer):
    1. the inputs; 2. x·exp_mult (17 × 16); 3. >> by exp_shift's multiple of 8;
    4. >> by its remainder: z; 5. the two 64-entry tables (ROMs in logic) at z's
    fraction halves, and n = min(z >> 12, EXP_ZERO_SHIFT); 6, 7: HI·LO (17 × 17).
    Stages 1-2 and 6-7 are the input and output registers of a RegisteredMultiplier each;
    8. >> by 15 + 4·(n // 4); 9. >> by n % 4, then (t + 1) >> 1: the rounding shift by
    16 + n as floor((floor(P / 2^(15+n)) + 1) / 2), which equals floor((P + 2^(15+n)) /
    2^(16+n)).
    """

    latency = EXP_LATENCY

    def __init__(self, tag=0):
        try:
            if not isinstance(tag, (data.Layout, ShapeLike)):
                raise TypeError(f"tag must be a data layout or shape, not {tag!r}")
        except Exception:
            _rejected(self)
            raise
        self._tag = tag
        super().__init__({
            "valid": In(1),
            "x": In(X_BITS),
            "exp_mult": In(MULT_BITS),
            "exp_shift": In(SHIFT_BITS),
            "tag": In(tag),
            "out_valid": Out(1),
            "e": Out(E_WIDTH),
            "out_tag": Out(tag),
        })

    def elaborate(self, platform):
        m = Module()

        # The valid bit and the tag ride along in a shift register of `latency` stages.
        valid, tag = self.valid, self.tag
        for k in range(self.latency):
            valid_k = Signal(name=f"valid_{k + 1}")
            tag_k = Signal(self._tag, name=f"tag_{k + 1}")
            m.d.sync += [valid_k.eq(valid), tag_k.eq(tag)]
            valid, tag = valid_k, tag_k
        m.d.comb += [self.out_valid.eq(valid), self.out_tag.eq(tag)]

        # 1, 2: the operands and their product: a RegisteredMultiplier's input and output
        # registers (yosys maps `*` with a block's registers bypassed, and x's register
        # through it into the product's was a ViTCoD build's worst path, 9.9 ns).
        m.submodules.scale = scale = RegisteredMultiplier(X_BITS + 1, MULT_BITS + 1)
        shift_1 = Signal(SHIFT_BITS)
        shift_2 = Signal(SHIFT_BITS)
        m.d.comb += [scale.a.eq(self.x), scale.b.eq(self.exp_mult)]     # both >= 0
        m.d.sync += [shift_1.eq(self.exp_shift), shift_2.eq(shift_1)]
        prod_2 = scale.p[:Z_WIDTH]

        # 3, 4: z = prod >> exp_shift in two 8-way steps.
        coarse_3 = Signal(Z_WIDTH)
        fine_3 = Signal(3)
        m.d.sync += [coarse_3.eq(prod_2 >> Cat(Const(0, 3), shift_2[3:])),
                     fine_3.eq(shift_2[:3])]
        z_4 = Signal(Z_WIDTH)
        m.d.sync += z_4.eq(coarse_3 >> fine_3)

        # 5: the tables (ROMs in logic) into registers of their own, and the clamped
        # integer part. (Read straight into the multiplier's input registers, the ROMs'
        # logic and a 4.0 ns net into the block was a ViTCoD build's worst path, 9.8 ns.)
        # 6, 7: HI·LO, the multiplier's input and output registers.
        m.submodules.hi = hi = Memory(shape=TABLE_WIDTH, depth=len(EXP_HI_TABLE),
                                      init=EXP_HI_TABLE)
        m.submodules.lo = lo = Memory(shape=TABLE_WIDTH, depth=len(EXP_LO_TABLE),
                                      init=EXP_LO_TABLE)
        hi_port, lo_port = hi.read_port(domain="comb"), lo.read_port(domain="comb")
        m.d.comb += [hi_port.addr.eq(z_4[EXP_TABLE_BITS:EXP_FRAC_BITS]),
                     lo_port.addr.eq(z_4[:EXP_TABLE_BITS])]
        n_4 = z_4[EXP_FRAC_BITS:]
        n_5 = Signal(range(EXP_ZERO_SHIFT + 1))
        with m.If(n_4 >= EXP_ZERO_SHIFT):
            m.d.sync += n_5.eq(EXP_ZERO_SHIFT)
        with m.Else():
            m.d.sync += n_5.eq(n_4)

        hi_5, lo_5 = Signal(TABLE_WIDTH), Signal(TABLE_WIDTH)
        m.d.sync += [hi_5.eq(hi_port.data), lo_5.eq(lo_port.data)]

        m.submodules.tables = tables = RegisteredMultiplier(TABLE_WIDTH + 1, TABLE_WIDTH + 1)
        m.d.comb += [tables.a.eq(hi_5), tables.b.eq(lo_5)]   # both >= 0
        product_7 = tables.p[:PRODUCT_WIDTH]
        n_6, n_7 = Signal.like(n_5), Signal.like(n_5)
        m.d.sync += [n_6.eq(n_5), n_7.eq(n_6)]

        # 8, 9: the rounding shift by 16 + n.
        coarse_8 = Signal(PRODUCT_WIDTH - (E_BITS - 1))
        fine_8 = Signal(2)
        m.d.sync += [
            coarse_8.eq(product_7[E_BITS - 1:] >> Cat(Const(0, 2), n_7[2:])),
            fine_8.eq(n_7[:2]),
        ]
        truncated = Signal(E_WIDTH + 1)            # floor(P / 2^(15+n)) <= 2^17
        m.d.comb += truncated.eq(coarse_8 >> fine_8)
        m.d.sync += self.e.eq((truncated + 1) >> 1)
        return m
