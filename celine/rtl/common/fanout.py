"""Copies of a register for a signal with a large fanout."""

from amaranth.hdl import Elaboratable, Module, Signal

__all__ = ["RegisterCopy", "register_copies"]


class RegisterCopy(Elaboratable):
    """One register in a module of its own: `q` takes `d` every cycle (reset to `init`).

    Celine synthesizes one module at a time (`synth_ecp5 -noflatten`), and yosys merges
    identical registers only within a module, so copies made of this survive to place and
    route, where each can sit beside the logic it drives instead of one register driving
    a thousand LUT inputs across the device.
    """

    def __init__(self, *, init=0):
        self.d = Signal(init=init)
        self.q = Signal(init=init)

    def elaborate(self, platform):
        m = Module()
        m.d.sync += self.q.eq(self.d)
        return m


def register_copies(m, name, next_value, count, *, init=0):
    """`count` registers that each hold `next_value` of the cycle before (so each equals a
    register assigned `next_value`), as submodules `<name>_copy<k>` of `m`."""
    copies = []
    for k in range(count):
        copy = RegisterCopy(init=init)
        m.submodules[f"{name}_copy{k}"] = copy
        m.d.comb += copy.d.eq(next_value)
        copies.append(copy.q)
    return copies
