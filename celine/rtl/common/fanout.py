"""Copies of a register for a signal with a large fanout."""

from amaranth.hdl import Elaboratable, Module, Signal, Value

__all__ = ["RegisterCopy", "register_copies"]


class RegisterCopy(Elaboratable):
    """One register in a module of its own: `q` takes `d` every cycle, or only in cycles
    with `en` when made `with_enable` (reset to `init`; `width` bits).

    Celine synthesizes one module at a time (`synth_ecp5 -noflatten`), and yosys merges
    identical registers only within a module, so copies made of this survive to place and
    route, where each can sit beside the logic it drives instead of one register driving
    a thousand LUT inputs across the device.
    """

    def __init__(self, *, width=1, init=0, with_enable=False):
        self.d = Signal(width, init=init)
        self.q = Signal(width, init=init)
        self.en = Signal(init=1) if with_enable else None

    def elaborate(self, platform):
        m = Module()
        if self.en is None:
            m.d.sync += self.q.eq(self.d)
        else:
            with m.If(self.en):
                m.d.sync += self.q.eq(self.d)
        return m


def register_copies(m, name, next_value, count, *, init=0, enable=None):
    """`count` registers that each hold `next_value` of the cycle before (so each equals a
    register assigned `next_value`), or, with `enable`, of the last cycle with `enable`
    high, as submodules `<name>_copy<k>` of `m`; as wide as `next_value`."""
    width = len(Value.cast(next_value))
    copies = []
    for k in range(count):
        copy = RegisterCopy(width=width, init=init, with_enable=enable is not None)
        m.submodules[f"{name}_copy{k}"] = copy
        m.d.comb += copy.d.eq(next_value)
        if enable is not None:
            m.d.comb += copy.en.eq(enable)
        copies.append(copy.q)
    return copies
