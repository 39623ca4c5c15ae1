from amaranth.hdl import Module, Signal, Cat, Mux, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..common.multiplier import RegisteredMultiplier
from .fused_multiplier import FusedMultiplier


class ProcessingElement(wiring.Component):
    """One PE of the MAC array: a multiplier stage and output-stationary accumulators.

    Inputs (one pass per cycle, qualified by `valid`): `act` and `weight`, the PE's
    `max_fusion` operand lanes, already reduced to the tile precision; `precision` (index
    into params.precisions); `pass_index` (16-bit operands on bricks take four passes:
    bit 1 selects the high activation byte, bit 0 the high weight byte); `first` (the
    tile's first pass: accumulators restart from the product instead of adding to it).

    Latency: the operands are registered, then the products (two cycles after the inputs);
    the accumulators hold the sum one cycle after that (`latency` = 3). Slot ga * max_fusion + gw of `acc` is the dot product of
    activation lane ga and weight lane gw; slot widths follow params.slot_width and wrap
    around beyond it. The PE never stalls: the array only presents passes it can take.

    Shadow registers hold the previous tile while it drains: `load` copies the
    accumulators into them, `shift` replaces them with `shadow_next`. The array chains
    them into one shift register per PE column, ordered as the output rows leave.
    """

    latency = 3   # cycles from a pass at the inputs to its sum in the accumulators

    def __init__(self, params):
        self.params = params
        fusion = params.max_fusion
        operand = signed(params.operand_width)
        super().__init__({
            "valid": In(1),
            "first": In(1),
            "precision": In(range(len(params.precisions))),
            "pass_index": In(2),
            "act": In(data.ArrayLayout(operand, fusion)),
            "weight": In(data.ArrayLayout(operand, fusion)),
            "acc": Out(data.ArrayLayout(signed(params.result_width), fusion * fusion)),
            "load": In(1),
            "shift": In(1),
            "shadow_next": In(data.ArrayLayout(signed(params.result_width), fusion * fusion)),
            "shadow": Out(data.ArrayLayout(signed(params.result_width), fusion * fusion)),
        })

    def _is(self, precision):
        return self.precision == self.params.encode_precision(precision)

    def _products_bricks(self, m):
        """Brick multiplier: build the 8-bit operand words for the tile precision."""
        params = self.params
        groups = sorted({min(p, 8) for p in params.precisions})
        m.submodules.multiplier = mul = FusedMultiplier(
            brick_width=params.brick_width, group_widths=groups)
        a_word = w_word = 0
        group = 0
        a_signed = w_signed = 1
        for p in params.precisions:
            if p <= 8:
                a_p = Cat(*(self.act[k][:p] for k in range(8 // p)))
                w_p = Cat(*(self.weight[k][:p] for k in range(8 // p)))
            else:
                # 16-bit: one byte of each operand per pass; low bytes are unsigned.
                a_p = Mux(self.pass_index[1], self.act[0][8:16], self.act[0][:8])
                w_p = Mux(self.pass_index[0], self.weight[0][8:16], self.weight[0][:8])
                a_signed = Mux(self._is(p), self.pass_index[1], a_signed)
                w_signed = Mux(self._is(p), self.pass_index[0], w_signed)
            a_word = Mux(self._is(p), a_p, a_word)
            w_word = Mux(self._is(p), w_p, w_word)
            group = Mux(self._is(p), groups.index(min(p, 8)), group)
        # Stage A: the operand words are registered in front of the multiplier.
        with m.If(self.valid):
            m.d.sync += [mul.a.eq(a_word), mul.w.eq(w_word), mul.group.eq(group),
                         mul.a_signed.eq(a_signed), mul.w_signed.eq(w_signed)]
        return [mul.products[k] for k in range(len(mul.products))]

    def elaborate(self, platform):
        m = Module()
        params = self.params
        fusion = params.max_fusion

        # Stage A: registered operands (words for the bricks; a DSP's input registers).
        valid_a, first_a, shift_a = Signal(), Signal(), Signal(range(3))
        m.d.sync += valid_a.eq(self.valid)
        with m.If(self.valid):
            m.d.sync += first_a.eq(self.first)
            if 16 in params.precisions and params.passes(16) > 1:
                # A 16-bit pass's product is shifted by 8 per high byte.
                m.d.sync += shift_a.eq(Mux(self._is(16), self.pass_index[0] + self.pass_index[1], 0))
        # Stage B: registered products.
        valid = Signal()
        first = Signal()
        shift = Signal(range(3))
        m.d.sync += valid.eq(valid_a)
        with m.If(valid_a):
            m.d.sync += [first.eq(first_a), shift.eq(shift_a)]
        if params.impl == "bricks":
            products = self._products_bricks(m)
            product_regs = [Signal(signed(len(p)), name=f"product_{k}")
                            for k, p in enumerate(products)]
            with m.If(valid_a):
                m.d.sync += [reg.eq(p) for reg, p in zip(product_regs, products)]
        else:
            # Stages A and B are the multiplier's operand and product registers (on ECP5 a
            # MULT18X18D's own). They advance every cycle: the product of the operands
            # presented with `valid` is there two cycles later, when `valid` reaches
            # stage C, and stage C adds nothing else.
            m.submodules.multiplier = mul = RegisteredMultiplier(len(self.act[0]),
                                                                len(self.weight[0]))
            m.d.comb += [mul.a.eq(self.act[0]), mul.b.eq(self.weight[0])]
            product_regs = [mul.p]

        # Stage C: accumulate. Slot (ga, gw) is slot_width(ga, gw) bits wide and wraps.
        for ga in range(fusion):
            for gw in range(fusion):
                k = ga * fusion + gw
                acc = Signal(signed(params.slot_width(ga, gw)), name=f"acc_{ga}_{gw}")
                term = product_regs[k]
                if k == 0 and 16 in params.precisions and params.passes(16) > 1:
                    term = Mux(shift == 2, term << 16, Mux(shift == 1, term << 8, term))
                with m.If(valid):
                    m.d.sync += acc.eq(Mux(first, 0, acc) + term)
                m.d.comb += self.acc[k].eq(acc)

                shadow = Signal(signed(params.slot_width(ga, gw)), name=f"shadow_{ga}_{gw}")
                with m.If(self.load):
                    m.d.sync += shadow.eq(acc)
                with m.Elif(self.shift):
                    m.d.sync += shadow.eq(self.shadow_next[k])
                m.d.comb += self.shadow[k].eq(shadow)
        return m
