"""The ViTCoD engine in the shell: the registers decoded onto the core's runtime values."""

from amaranth.hdl import Module
from amaranth.lib import wiring

from ...engines.vitcod.spec import (AE_OPERANDS, AE_PARTS, AE_REGISTER_PREFIX, AE_VALUE_BITS,
                                    AE_WEIGHTS_PER_REGISTER, VitcodParams, ae_register,
                                    ae_shape, buffers, head_register, registers)
from ..shell.contract import engine_signature
from .core import AE_FIELD_PREFIX, VitcodCore, head_fields

__all__ = ["VitcodShellAdapter"]


class VitcodShellAdapter(wiring.Component):
    """VitcodCore with the shell's contract (docs/engines.md): `tokens`, `head_mask` and
    each head's `<name>_<h>` registers (docs/vitcod.md, "Registers") drive the core's
    runtime values, and with the auto-encoder `ae_enable` and the encoders' and decoders'
    registers (weights unpacked as spec.pack_ae_weights packs them); the buffers' ports
    pass through."""

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
            m.d.comb += core.ae_enable.eq(regs["ae_enable"][:len(core.ae_enable)])
            w = AE_VALUE_BITS
            for part in AE_PARTS:
                reg = AE_REGISTER_PREFIX[part]              # "ae_q_enc_weights_0" ...
                port = lambda name: getattr(core, AE_FIELD_PREFIX[part] + name)  # noqa: E731
                rows, cols = ae_shape(p, part)
                for x, name in enumerate(AE_OPERANDS):
                    for r in range(rows):
                        for c in range(cols):
                            n = r * cols + c                # row-major, low byte first
                            word = regs[ae_register(name, reg + "weights",
                                                    n // AE_WEIGHTS_PER_REGISTER)]
                            lsb = w * (n % AE_WEIGHTS_PER_REGISTER)
                            m.d.comb += port("weights")[x][r][c].eq(word[lsb:lsb + w])
                        bias = regs[ae_register(name, reg + "bias", r)]
                        m.d.comb += port("biases")[x][r].eq(bias)
                    for field in ("mult", "shift"):
                        target = port(field)[x]
                        m.d.comb += target.eq(regs[ae_register(name, reg + field)][:len(target)])
        wiring.connect(m, wiring.flipped(self.mem), core.mem)
        return m
