from amaranth.hdl import Module, Signal, Cat, Mux, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ..common.multiplier import RegisteredMultiplier
from .fused_multiplier import FusedMultiplier
from .operand import reduced


class ProcessingElement(wiring.Component):
    """One PE of the MAC array: a multiplier stage and output-stationary accumulators.

    Inputs (one pass per cycle, qualified by `valid`): `act` and `weight`, the PE's
    `max_fusion` operand lanes as stored (8-bit values, or 16-bit ones at p = 16);
    `precision` (index into params.precisions); `pass_index` (16-bit operands on bricks
    take four passes: bit 1 selects the high activation byte, bit 0 the high weight
    byte); `first` (the tile's first pass: accumulators restart from the product instead
    of adding to it); `last` (the tile's last pass: its sums move to the shadow registers).

    Every input is registered here first (stage I), in each PE: what the array decodes
    (the tile's precision, `valid`) drives one register per PE, and each PE's register
    drives that PE's operand reduction and multiplexers; each accumulator slot
    (AccumulatorSlot, a module of its own) registers its controls once more. Copies in
    separate modules are not merged by synthesis the way copies in one module would be.

    Latency (`latency` = params.pe_latency): stage I; each precision's reduced operands,
    registered (stage R); the operands for the tile precision, registered (stage A);
    params.multiplier_stages register stages of multiplier; the accumulators hold the sum one cycle after that. Bricks: 8, the fused
    multiplier's four stages (cell products, 4-bit sums, the 8-bit level's middle sums and
    totals; a shallower one, without 8-bit groups, gets its operands delayed to match).
    dsp: 6, a MULT18X18D's operand and product registers and a fabric register after
    them. Slot ga * max_fusion + gw of `acc` is the dot product of activation lane ga and weight lane gw; slot widths follow
    params.slot_width and wrap around beyond it. The PE never stalls: the array only
    presents passes it can take.

    Shadow registers hold the previous tile while it drains: the cycle a tile's last sum
    is in the accumulators they copy it (`latency` cycles after the pass with `last` at
    the inputs); `shift` high in a cycle makes them take `shadow_next` at the end of it
    (`shift` is the drain's register for this PE: it decides a cycle ahead). The array
    chains them into one shift register per PE column, ordered as the output rows leave.
    """

    def __init__(self, params):
        self.params = params
        self.latency = params.pe_latency   # a pass at the inputs -> its sum in the accumulators
        fusion = params.max_fusion
        lane = signed(params.operand_width)
        super().__init__({
            "valid": In(1),
            "first": In(1),
            "last": In(1),
            "precision": In(range(len(params.precisions))),
            "pass_index": In(2),
            "act": In(data.ArrayLayout(lane, fusion)),
            "weight": In(data.ArrayLayout(lane, fusion)),
            "acc": Out(data.ArrayLayout(signed(params.result_width), fusion * fusion)),
            "shift": In(1),
            "shadow_next": In(data.ArrayLayout(signed(params.result_width), fusion * fusion)),
            "shadow": Out(data.ArrayLayout(signed(params.result_width), fusion * fusion)),
        })

    def _reduced_stage(self, m, i, candidates):
        """Stage R: each precision's operand candidates (`candidates(p)`, a dict of values
        from the stage-I registers), registered, and the precision beside them. Returns
        `pick(name, default)`, the registered candidate `name` of the tile's precision
        (`default` for a precision without one), and `is_p(p)`, whether the tile's
        precision is p. The reduction (a rounding add and a saturating compare per lane) and the
        precision multiplexer after it were one carry-chained path of 12 levels; now the
        reduction fills this stage and the multiplexer the next."""
        params = self.params
        precision = Signal.like(i["precision"], name="r_precision", reset_less=True)
        m.d.sync += precision.eq(i["precision"])
        regs = {}
        for p in params.precisions:
            regs[p] = {}
            for name, value in candidates(p).items():
                reg = Signal.like(value, name=f"{name}_r{p}", reset_less=True)
                m.d.sync += reg.eq(value)
                regs[p][name] = reg
        def is_p(p):
            return precision == params.encode_precision(p)

        def pick(name, default=0):
            value = default
            for p in params.precisions:
                if name in regs[p]:
                    value = Mux(is_p(p), regs[p][name], value)
            return value

        return pick, is_p

    def _products_bricks(self, m, i):
        """The fused multiplier: stage R, then the 8-bit operand words for the tile
        precision, registered (stage A); its products come 2 + params.multiplier_stages
        cycles after stage I."""
        params = self.params
        groups = sorted({min(p, 8) for p in params.precisions})
        m.submodules.multiplier = mul = FusedMultiplier(
            brick_width=params.brick_width, group_widths=groups)

        def candidates(p):
            if p <= 8:
                return {"a": Cat(*(reduced(i["act"][k], p)[:p] for k in range(8 // p))),
                        "w": Cat(*(reduced(i["weight"][k], p)[:p] for k in range(8 // p)))}
            # 16-bit: one byte of each operand per pass; low bytes are unsigned.
            return {"a": Mux(i["pass_index"][1], i["act"][0][8:16], i["act"][0][:8]),
                    "w": Mux(i["pass_index"][0], i["weight"][0][8:16], i["weight"][0][:8]),
                    "a_signed": i["pass_index"][1], "w_signed": i["pass_index"][0]}

        pick, is_p = self._reduced_stage(m, i, candidates)
        group = 0
        for p in params.precisions:
            group = Mux(is_p(p), groups.index(min(p, 8)), group)
        # Stage A: the operand words are registered in front of the multiplier; a
        # multiplier with fewer stages than params.multiplier_stages gets them later. The
        # stage runs freely: `valid` travels beside it to the accumulators.
        operands = {"a": pick("a"), "w": pick("w"), "group": group,
                    "a_signed": pick("a_signed", 1), "w_signed": pick("w_signed", 1)}
        regs = {name: Signal.like(getattr(mul, name), name=f"{name}_a", reset_less=True)
                for name in operands}
        m.d.sync += [regs[name].eq(value) for name, value in operands.items()]
        for k in range(params.multiplier_stages - mul.latency):
            delayed = {name: Signal.like(reg, name=f"{name}_pad{k}", reset_less=True)
                       for name, reg in regs.items()}
            m.d.sync += [delayed[name].eq(reg) for name, reg in regs.items()]
            regs = delayed
        m.d.comb += [getattr(mul, name).eq(reg) for name, reg in regs.items()]
        return [mul.products[k] for k in range(len(mul.products))]

    def _products_dsp(self, m, i):
        """Stage R, then one MULT18X18D: its operand and product registers are stage A and
        the multiplier's first stage, a register in the fabric (placed between the block and
        the accumulators) its second. They advance every cycle: the product of the operands in
        stage I is there 2 + params.multiplier_stages cycles later, when `valid` reaches
        the accumulators."""
        params = self.params
        pick, _ = self._reduced_stage(m, i, lambda p: {
            "a": reduced(i["act"][0], p), "w": reduced(i["weight"][0], p)})
        width = params.operand_width
        m.submodules.multiplier = mul = RegisteredMultiplier(width, width)
        m.d.comb += [mul.a.eq(pick("a")), mul.b.eq(pick("w"))]
        product = mul.p
        for k in range(1 + params.multiplier_stages - mul.latency):
            delayed = Signal.like(product, name=f"product_pad{k}", reset_less=True)
            m.d.sync += delayed.eq(product)
            product = delayed
        return [product]

    def elaborate(self, platform):
        m = Module()
        params = self.params
        fusion = params.max_fusion

        # Stage I: every input, registered in this PE.
        # Only `valid` is reset: everything else is data qualified by it, and a reset on
        # every operand and accumulator bit of a large array is a wide, slow net.
        i = {}
        for name in ("valid", "first", "last", "precision", "pass_index", "act", "weight"):
            port = getattr(self, name)
            i[name] = Signal(port.shape(), name=f"i_{name}", reset_less=name != "valid")
            m.d.sync += i[name].eq(port)

        def is_precision(p):
            return i["precision"] == params.encode_precision(p)

        products = (self._products_bricks(m, i) if params.impl == "bricks"
                    else self._products_dsp(m, i))

        # The pass's controls travel beside the operands and products to the accumulators.
        # The restart (`first`) is kept per ring of slots, those with max(ga, gw) = ring,
        # and a ring the tile's precision leaves unused restarts on every pass (its
        # products are 0, so its sums stay 0 as before).
        controls = {"valid": i["valid"], "last": i["last"]}
        for ring in range(fusion):
            unused = Cat(*(is_precision(p) for p in params.precisions
                           if params.fusion(p) <= ring))
            controls[f"restart{ring}"] = i["first"] | unused.any()
        if 16 in params.precisions and params.passes(16) > 1:
            # A 16-bit pass's product is shifted by 8 per high byte.
            controls["shift"] = Mux(is_precision(16), i["pass_index"][0] + i["pass_index"][1], 0)
        for k in range(self.latency - 3):
            stage = {name: Signal(range(3) if name == "shift" else 1, name=f"{name}_{k}",
                                  reset_less=name != "valid")
                     for name in controls}
            m.d.sync += [stage[name].eq(value) for name, value in controls.items()]
            controls = stage

        # Accumulate, in one AccumulatorSlot per slot, which registers the controls once
        # more (its own copy). Slot (ga, gw) is slot_width(ga, gw) bits wide and wraps.
        for ga in range(fusion):
            for gw in range(fusion):
                k = ga * fusion + gw
                by_shift = k == 0 and "shift" in controls
                slot = AccumulatorSlot(width=params.slot_width(ga, gw),
                                       product_width=len(products[k]), shifts=by_shift)
                m.submodules[f"slot_{ga}_{gw}"] = slot
                m.d.comb += [
                    slot.valid.eq(controls["valid"]),
                    slot.last.eq(controls["last"]),
                    slot.restart.eq(controls[f"restart{max(ga, gw)}"]),
                    slot.product.eq(products[k]),
                    slot.shift.eq(self.shift),
                    slot.shadow_next.eq(self.shadow_next[k]),
                    self.acc[k].eq(slot.acc),
                    self.shadow[k].eq(slot.shadow),
                ]
                if by_shift:
                    m.d.comb += slot.by.eq(controls["shift"])
        return m


class AccumulatorSlot(wiring.Component):
    """One product slot of a PE: its accumulator and its shadow register.

    The controls are registered here first, so each slot's copy drives only its own
    enables and multiplexers (copies in separate modules are not merged by synthesis):
    `valid`, `restart` (the accumulator restarts from the product), `last` and, with
    `shifts`, `by` (the product is shifted by 8 * by) one cycle before `product`, which
    is added as it comes. The accumulator holds the sum the cycle after `product`; the
    cycle after that, when the pass was a tile's last, the shadow register copies it.
    `shift` moves `shadow_next` into the shadow register at the end of the cycle (it is
    the drain's register for the PE, the slots' only shared control).
    """

    def __init__(self, *, width, product_width, shifts=False):
        self.shifts = shifts
        ports = {
            "valid": In(1),
            "restart": In(1),
            "last": In(1),
            "product": In(signed(product_width)),
            "shift": In(1),
            "shadow_next": In(signed(width)),
            "acc": Out(signed(width)),
            "shadow": Out(signed(width)),
        }
        if shifts:
            ports["by"] = In(range(3))
        super().__init__(ports)

    def elaborate(self, platform):
        m = Module()
        # `valid` and `load` are reset; the rest is data that they qualify (the first
        # pass of a tile restarts the accumulator), so it has no reset net.
        valid = Signal()
        restart, last = Signal(reset_less=True), Signal(reset_less=True)
        m.d.sync += [valid.eq(self.valid), restart.eq(self.restart), last.eq(self.last)]
        term = self.product
        if self.shifts:
            by = Signal(range(3), reset_less=True)
            m.d.sync += by.eq(self.by)
            term = Mux(by == 2, term << 16, Mux(by == 1, term << 8, term))
        acc = Signal.like(self.acc, reset_less=True)
        shadow = Signal.like(self.shadow, reset_less=True)
        m.d.comb += [self.acc.eq(acc), self.shadow.eq(shadow)]
        with m.If(valid):
            m.d.sync += acc.eq(Mux(restart, 0, acc) + term)
        # The tile's last sum is in the accumulator the next cycle: the shadow copies it.
        load = Signal()
        m.d.sync += load.eq(valid & last)
        with m.If(load):
            m.d.sync += shadow.eq(acc)
        with m.Elif(self.shift):
            m.d.sync += shadow.eq(self.shadow_next)
        return m
