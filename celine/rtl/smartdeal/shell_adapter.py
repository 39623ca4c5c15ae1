"""The SD linear layer in the shell: its registers onto SdLinear's inputs."""

from amaranth.hdl import Module
from amaranth.lib import wiring

from ...engines.smartdeal.spec import SmartDealParams, buffers, registers
from ..mac.result_drain import REQUANT_LAYOUT
from ..shell.contract import engine_signature
from .bitop import SdBitop
from .linear import SdLinear

__all__ = ["SmartDealShellAdapter", "smartdeal_core"]


def smartdeal_core(params):
    """The engine's own component for params.impl: SdLinear ("rebuild") or SdBitop
    ("bitop"), the same ports (the registry's `core`)."""
    if not isinstance(params, SmartDealParams):
        raise TypeError(f"params must be a SmartDealParams, not {params!r}")
    return (SdLinear if params.impl == "rebuild" else SdBitop)(params)


class SmartDealShellAdapter(wiring.Component):
    """The core of params.impl (SdLinear for "rebuild", SdBitop for "bitop": the same
    ports) with the shell's registers (engines/smartdeal/spec.py: tokens, requant)."""

    def __init__(self, params):
        if not isinstance(params, SmartDealParams):
            raise TypeError(f"params must be a SmartDealParams, not {params!r}")
        self.params = params
        self.buffers = buffers(params)
        self.register_map = registers(params)
        super().__init__(engine_signature(self.buffers, self.register_map))

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = smartdeal_core(self.params)
        ids = self.register_map.index
        regs = self.registers
        m.d.comb += [
            core.start.eq(self.start),
            core.tokens.eq(regs[ids("tokens")][:16]),
            core.requant.eq(regs[ids("requant")][:REQUANT_LAYOUT.size]),
            self.busy.eq(core.busy),
            self.errors.eq(core.errors),
            self.cycles.eq(core.cycles),
            self.result_words.eq(core.result_words),
        ]
        wiring.connect(m, wiring.flipped(self.mem), core.mem)
        return m
