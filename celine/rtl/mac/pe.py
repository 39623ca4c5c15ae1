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

    Latency (`latency` = params.pe_latency): the operands are registered (stage A), then
    multiplied in params.multiplier_stages register stages, and the accumulators hold the
    sum one cycle after that. Bricks: 5, the fused multiplier's three stages (cell
    products, two levels of sums; a shallower one, without 8-bit groups, gets its
    operands delayed to match). dsp: 3, a MULT18X18D's operand and product registers.
    Slot ga * max_fusion + gw of `acc` is the dot product of activation lane ga and weight
    lane gw; slot widths follow params.slot_width and wrap around beyond it. The PE never
    stalls: the array only presents passes it can take.

    Shadow registers hold the previous tile while it drains: `load` copies the
    accumulators into them, `shift` replaces them with `shadow_next`. The array chains
    them into one shift register per PE column, ordered as the output rows leave.
    """

    def __init__(self, params):
        self.params = params
        self.latency = params.pe_latency   # a pass at the inputs -> its sum in the accumulators
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
        """The fused multiplier: the 8-bit operand words for the tile precision, registered
        (stage A); its products come 1 + params.multiplier_stages cycles after the inputs."""
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
        # Stage A: the operand words are registered in front of the multiplier; a
        # multiplier with fewer stages than params.multiplier_stages gets them later.
        operands = {"a": a_word, "w": w_word, "group": group,
                    "a_signed": a_signed, "w_signed": w_signed}
        regs = {name: Signal.like(getattr(mul, name), name=f"{name}_a") for name in operands}
        with m.If(self.valid):
            m.d.sync += [regs[name].eq(value) for name, value in operands.items()]
        for k in range(params.multiplier_stages - mul.latency):
            delayed = {name: Signal.like(reg, name=f"{name}_pad{k}") for name, reg in regs.items()}
            m.d.sync += [delayed[name].eq(reg) for name, reg in regs.items()]
            regs = delayed
        m.d.comb += [getattr(mul, name).eq(reg) for name, reg in regs.items()]
        return [mul.products[k] for k in range(len(mul.products))]

    def _products_dsp(self, m):
        """One MULT18X18D: its operand and product registers are stage A and the
        multiplier's stage. They advance every cycle: the product of the operands
        presented with `valid` is there 1 + params.multiplier_stages cycles later, when
        `valid` reaches the accumulators."""
        m.submodules.multiplier = mul = RegisteredMultiplier(len(self.act[0]), len(self.weight[0]))
        m.d.comb += [mul.a.eq(self.act[0]), mul.b.eq(self.weight[0])]
        product = mul.p
        for k in range(1 + self.params.multiplier_stages - mul.latency):
            delayed = Signal.like(product, name=f"product_pad{k}")
            m.d.sync += delayed.eq(product)
            product = delayed
        return [product]

    def elaborate(self, platform):
        m = Module()
        params = self.params
        fusion = params.max_fusion

        products = (self._products_bricks(m) if params.impl == "bricks"
                    else self._products_dsp(m))

        # The pass's controls travel beside the operands and products to the accumulators.
        # The restart (`first`) is kept per ring of slots, those with max(ga, gw) = ring,
        # and a ring the tile's precision leaves unused restarts on every pass (its
        # products are 0, so its sums stay 0 as before): each ring's flag drives only its
        # own accumulators, not all of them.
        controls = {"valid": self.valid}
        for ring in range(fusion):
            unused = Cat(*(self._is(p) for p in params.precisions if params.fusion(p) <= ring))
            controls[f"restart{ring}"] = self.first | unused.any()
        if 16 in params.precisions and params.passes(16) > 1:
            # A 16-bit pass's product is shifted by 8 per high byte.
            controls["shift"] = Mux(self._is(16), self.pass_index[0] + self.pass_index[1], 0)
        for k in range(self.latency - 1):
            stage = {name: Signal(range(3) if name == "shift" else 1, name=f"{name}_{k}")
                     for name in controls}
            m.d.sync += [stage[name].eq(value) for name, value in controls.items()]
            controls = stage
        valid = controls["valid"]

        # Accumulate. Slot (ga, gw) is slot_width(ga, gw) bits wide and wraps.
        for ga in range(fusion):
            for gw in range(fusion):
                k = ga * fusion + gw
                acc = Signal(signed(params.slot_width(ga, gw)), name=f"acc_{ga}_{gw}")
                term = products[k]
                if k == 0 and "shift" in controls:
                    shift = controls["shift"]
                    term = Mux(shift == 2, term << 16, Mux(shift == 1, term << 8, term))
                with m.If(valid):
                    m.d.sync += acc.eq(Mux(controls[f"restart{max(ga, gw)}"], 0, acc) + term)
                m.d.comb += self.acc[k].eq(acc)

                shadow = Signal(signed(params.slot_width(ga, gw)), name=f"shadow_{ga}_{gw}")
                with m.If(self.load):
                    m.d.sync += shadow.eq(acc)
                with m.Elif(self.shift):
                    m.d.sync += shadow.eq(self.shadow_next[k])
                m.d.comb += self.shadow[k].eq(shadow)
        return m
