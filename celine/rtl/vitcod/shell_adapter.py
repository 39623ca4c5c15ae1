"""The ViTCoD engine in the shell: the registers decoded onto the core's runtime values."""

from amaranth.hdl import Module
from amaranth.lib import wiring

from ...engines.vitcod.spec import (AE_OPERANDS, AE_VALUE_BITS, AE_WEIGHTS_PER_REGISTER,
                                    VitcodParams, ae_register, buffers, head_register,
                                    registers)
from ..shell.contract import engine_signature
from .core import VitcodCore, head_fields

__all__ = ["VitcodShellAdapter"]


class VitcodShellAdapter(wiring.Component):
    """VitcodCore with the shell's contract (docs/engines.md): `tokens`, `head_mask` and
    each head's `<name>_<h>` registers (docs/vitcod.md, "Registers") drive the core's
    runtime values, and with the auto-encoder `ae_enable` and the decoders' registers
    (weights unpacked as spec.pack_ae_weights packs them); the buffers' ports pass
    through."""

    def __init__(self, params):
        if not isinstance(params, VitcodParams):
            raise TypeError(f"params must be a VitcodParams, not {params!r}")
        self.params = params
        self.buffers = buffers(params)
        self.register_map = registers(params)
        super().__init__(engine_signature(self.buffers, self.register_map))

    def elaborate(self, platform):
        m = Module()
        p = self.params
        m.submodules.core = core = VitcodCore(p)
        regs = {name: self.registers[self.register_map.index(name)]
                for name in self.register_map.names}
        m.d.comb += [core.start.eq(self.start), self.busy.eq(core.busy),
                     self.errors.eq(core.errors), self.cycles.eq(core.cycles),
                     self.result_words.eq(core.result_words),
                     core.tokens.eq(regs["tokens"][:16]),
                     core.head_mask.eq(regs["head_mask"][:p.heads])]
        # A register holds its field's width (RegisterMap): the bits above are not kept.
        for name, width in head_fields(p).items():
            for h in range(p.heads):
                m.d.comb += getattr(core, name)[h].eq(regs[head_register(name, h)][:width])
        if p.autoencoder:
            m.d.comb += core.ae_enable.eq(regs["ae_enable"][:len(AE_OPERANDS)])
            w = AE_VALUE_BITS
            for x, name in enumerate(AE_OPERANDS):
                for h in range(p.heads):
                    for c in range(p.code_heads):
                        n = h * p.code_heads + c          # row-major, low byte first
                        word = regs[ae_register(name, "weights", n // AE_WEIGHTS_PER_REGISTER)]
                        lsb = w * (n % AE_WEIGHTS_PER_REGISTER)
                        m.d.comb += core.ae_weights[x][h][c].eq(word[lsb:lsb + w])
                    m.d.comb += core.ae_biases[x][h].eq(regs[ae_register(name, "bias", h)])
                m.d.comb += [
                    core.ae_mult[x].eq(regs[ae_register(name, "mult")][:len(core.ae_mult[x])]),
                    core.ae_shift[x].eq(regs[ae_register(name, "shift")][:len(core.ae_shift[x])]),
                ]
        wiring.connect(m, wiring.flipped(self.mem), core.mem)
        return m
