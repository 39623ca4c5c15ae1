from amaranth.hdl import Module, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ...engines.vitcod.spec import MAC_BANK_LATENCY
from ...spec.checks import check_int
from ..common.multiplier import MULT18_WIDTH, RegisteredMultiplier

__all__ = ["MacBank", "OPERAND_WIDTH", "PRODUCT_WIDTH"]

OPERAND_WIDTH = MULT18_WIDTH       # a MULT18X18D's signed operands
PRODUCT_WIDTH = 2 * OPERAND_WIDTH


def bank_signature(units):
    """The operand side of `units` multipliers, as a user of the bank sees it: operands
    out, products in (`MacBank.latency` cycles later)."""
    return wiring.Signature({
        "a": Out(data.ArrayLayout(signed(OPERAND_WIDTH), units)),
        "b": Out(data.ArrayLayout(signed(OPERAND_WIDTH), units)),
        "p": In(data.ArrayLayout(signed(PRODUCT_WIDTH), units)),
    })


class MacBank(wiring.Component):
    """`units` signed 18 x 18 multipliers with registered operands and products.

    p[k] = a[k] * b[k] of the operands presented `latency` = MAC_BANK_LATENCY = 3 cycles
    earlier: one register stage before the multiply and one after, on ECP5 the input and
    output registers of a MULT18X18D (common.multiplier.RegisteredMultiplier), so the
    multiply is a register-to-register path of its own; then a register in the fabric,
    so that the block's output net, which crosses to wherever the product's user sits,
    is a path of its own too (only the bits a user reads are kept: yosys drops the
    rest). The bank never stalls; its users
    (the SDDMM engines in a head's first phase, the SpMM in its second, the
    auto-encoder's mixers) schedule around the fixed latency.
    """

    latency = MAC_BANK_LATENCY

    def __init__(self, units):
        check_int("units", units, minimum=1, maximum=512)
        self.units = units
        super().__init__({"bus": In(bank_signature(units))})

    def elaborate(self, platform):
        m = Module()
        for k in range(self.units):
            m.submodules[f"mult{k}"] = mult = RegisteredMultiplier(OPERAND_WIDTH, OPERAND_WIDTH)
            m.d.comb += [mult.a.eq(self.bus.a[k]), mult.b.eq(self.bus.b[k])]
            m.d.sync += self.bus.p[k].eq(mult.p)
        return m
