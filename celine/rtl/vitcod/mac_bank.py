from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ...spec.checks import check_int

__all__ = ["MacBank", "OPERAND_WIDTH", "PRODUCT_WIDTH"]

OPERAND_WIDTH = 18                 # a MULT18X18D's signed operands
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

    p[k] = a[k] * b[k] of the operands presented `latency` = 2 cycles earlier: one register
    stage before the multiply and one after, the input and output registers of an ECP5
    MULT18X18D, so the multiply is a register-to-register path of its own. The bank never
    stalls; its users (the SDDMM engines in a head's first phase, the SpMM in its second)
    schedule around the fixed latency.
    """

    latency = 2

    def __init__(self, units):
        check_int("units", units, minimum=1, maximum=512)
        self.units = units
        super().__init__({"bus": In(bank_signature(units))})

    def elaborate(self, platform):
        m = Module()
        for k in range(self.units):
            a = Signal(signed(OPERAND_WIDTH), name=f"a_{k}")
            b = Signal(signed(OPERAND_WIDTH), name=f"b_{k}")
            m.d.sync += [a.eq(self.bus.a[k]), b.eq(self.bus.b[k]),
                         self.bus.p[k].eq(a * b)]
        return m
