"""Copies of a register for a signal with a large fanout."""

from amaranth.hdl import Elaboratable, Module, Signal, Value

__all__ = ["RegisterCopy", "register_copies", "COPY_MODULES"]

# register_copies names its copies `<name>_copy<k>`; COPY_MODULES selects their modules
# (a Yosys module-name pattern), which the bitstream flow keeps whole (gen/bitstream.py).
_COPY = "_copy"
COPY_MODULES = f"*{_COPY}*"


class RegisterCopy(Elaboratable):
    """One register in a module of its own: `q` takes `d` every cycle, or only in cycles
    with `en` when made `with_enable` (reset to `init`; `width` bits).

    Yosys merges identical registers within a module, and a flattened design is one
    module: copies in plain modules came out of the bitstream flow as one register. So
    the flow keeps each copy's module whole (`keep_hierarchy` on COPY_MODULES), and the
    copies made by `register_copies` survive to place and route, where each can sit
    beside the logic it drives instead of one register driving a thousand LUT inputs
    across the device. (The out-of-context synthesis, `synth_ecp5 -noflatten`, keeps
    every module.)
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
        m.submodules[f"{name}{_COPY}{k}"] = copy
        m.d.comb += copy.d.eq(next_value)
        if enable is not None:
            m.d.comb += copy.en.eq(enable)
        copies.append(copy.q)
    return copies
