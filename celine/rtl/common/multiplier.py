"""A signed multiplier with registered operands and product, mapped onto an ECP5 MULT18X18D
with its own registers (DESIGN.md §4).

Yosys maps an ECP5 multiply onto a MULT18X18D with every register bypassed and absorbs
none of the registers around it, so nextpnr times the block as combinational (about 3.9 ns
A -> P at speed grade 6). With its input and output registers clocked, the block is a
register-to-register path of its own (about 0.1 ns setup, 0.7 ns clock-to-out). So on an
ECP5 target `RegisteredMultiplier` instantiates the block with those registers on; anywhere
else (the Amaranth simulator, Verilog for cocotb) it is the same two register stages around
a plain `*`. Neither has a reset: a product is only ever used under a `valid` that travels
beside it (and is reset), and a reset net into every multiplier block is a wide, slow net
on a large array (11.2 ns on that net alone in a 144-block build: docs/timing.md).

The target is the `platform` that elaboration gets: an Amaranth LatticeECP5 platform (a
board build) or `ECP5_TARGET` (celine.gen.synth's out-of-context synthesis).
"""

from amaranth.hdl import Cat, ClockSignal, Const, Instance, Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ...spec.checks import check_int

__all__ = ["RegisteredMultiplier", "ECP5_TARGET", "is_ecp5", "MULT18_WIDTH", "mult18_chunks",
           "chunk_operand"]

MULT18_WIDTH = 18                     # a MULT18X18D's signed operands
MAX_WIDTH = 64                        # the widest operand (wider than 18: no single block)
CHUNK_BITS = MULT18_WIDTH - 1         # a low chunk is unsigned: 17 bits and a 0 sign bit


class _Ecp5Target:
    """The `platform` elaboration gets when Verilog is written for ECP5 synthesis out of
    context: it only says "ECP5" (is_ecp5); it has no resources and builds nothing."""

    celine_ecp5 = True

    def __repr__(self):
        return "ECP5_TARGET"


ECP5_TARGET = _Ecp5Target()


def is_ecp5(platform):
    """Whether `platform` (what elaborate() gets) is an ECP5 target: ECP5_TARGET or an
    Amaranth Lattice platform for an LFE5U/LFE5UM device."""
    if getattr(platform, "celine_ecp5", False):
        return True
    device = getattr(platform, "device", None)
    return isinstance(device, str) and device.startswith("LFE5U")


# The MULT18X18D's registers for a registered multiply: inputs A and B and the output,
# all on CLK0 with CE0 and RST0 (checked on this toolchain: DESIGN.md §4); RST0 is tied low.
_MULT18_PARAMETERS = {
    "REG_INPUTA_CLK": "CLK0", "REG_INPUTA_CE": "CE0", "REG_INPUTA_RST": "RST0",
    "REG_INPUTB_CLK": "CLK0", "REG_INPUTB_CE": "CE0", "REG_INPUTB_RST": "RST0",
    "REG_INPUTC_CLK": "NONE", "REG_PIPELINE_CLK": "NONE",
    "REG_OUTPUT_CLK": "CLK0", "REG_OUTPUT_CE": "CE0", "REG_OUTPUT_RST": "RST0",
    "CLK0_DIV": "ENABLED", "CLK1_DIV": "ENABLED", "CLK2_DIV": "ENABLED", "CLK3_DIV": "ENABLED",
    "HIGHSPEED_CLK": "NONE", "GSR": "DISABLED", "CAS_MATCH_REG": "FALSE",
    "SOURCEB_MODE": "B_SHIFT", "MULT_BYPASS": "DISABLED", "RESETMODE": "SYNC",
}


def mult18_chunks(width, *, signed_top):
    """(low bit, bits) of the chunks a `width`-bit operand is cut into for MULT18X18D
    blocks: 17-bit low chunks (unsigned, a 0 sign bit added); the top chunk takes up to 18
    bits when it carries the operand's sign (`signed_top`), else 17."""
    if width <= (MULT18_WIDTH if signed_top else CHUNK_BITS):
        return [(0, width)]
    chunks = [(lo, min(CHUNK_BITS, width - lo)) for lo in range(0, width, CHUNK_BITS)]
    if signed_top and len(chunks) > 1 and chunks[-1][1] == 1:
        # A 1-bit signed top chunk joins the chunk below it (18 bits, signed).
        chunks = chunks[:-2] + [(chunks[-2][0], CHUNK_BITS + 1)]
    return chunks


def chunk_operand(value, lo, bits, *, signed_top):
    """The signed multiplier operand for chunk (lo, bits) of `value` (mult18_chunks): the
    top chunk keeps the sign when `signed_top`; any other chunk is unsigned, a 0 sign bit
    added."""
    chunk = value[lo:lo + bits]
    if signed_top and lo + bits == len(value):
        return chunk.as_signed()
    return Cat(chunk, Const(0, 1)).as_signed()


class RegisteredMultiplier(wiring.Component):
    """p = a * b of the operands presented `latency` = 2 cycles earlier (signed; the
    product a_width + b_width bits).

    `en` (when `with_enable`) holds all three registers, as the block's CE0 does; without
    it they advance every cycle. On ECP5, with both operands at most 18 bits, one
    MULT18X18D; otherwise two register stages around a `*` (see the module's docstring;
    wider operands take several blocks, which yosys builds with their registers bypassed)."""

    latency = 2

    def __init__(self, a_width=MULT18_WIDTH, b_width=MULT18_WIDTH, *, with_enable=False,
                 domain="sync"):
        self.a_width = check_int("a_width", a_width, minimum=1, maximum=MAX_WIDTH)
        self.b_width = check_int("b_width", b_width, minimum=1, maximum=MAX_WIDTH)
        self.with_enable = with_enable
        self.domain = domain
        members = {"a": In(signed(a_width)), "b": In(signed(b_width)),
                   "p": Out(signed(a_width + b_width))}
        if with_enable:
            members["en"] = In(1, init=1)
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        en = self.en if self.with_enable else 1
        if is_ecp5(platform) and max(self.a_width, self.b_width) <= MULT18_WIDTH:
            a = Signal(signed(MULT18_WIDTH))
            b = Signal(signed(MULT18_WIDTH))
            p = Signal(signed(2 * MULT18_WIDTH))
            m.d.comb += [a.eq(self.a), b.eq(self.b), self.p.eq(p)]
            # Only the ports in use are connected: a constant on a cascade input (SRIA,
            # SRIB) is a net that nextpnr cannot route there.
            ports = {"i_CLK0": ClockSignal(self.domain), "i_CE0": en,
                     "i_RST0": 0, "i_SIGNEDA": 1, "i_SIGNEDB": 1}
            for bit in range(MULT18_WIDTH):
                ports[f"i_A{bit}"] = a[bit]
                ports[f"i_B{bit}"] = b[bit]
            for bit in range(2 * MULT18_WIDTH):
                ports[f"o_P{bit}"] = p[bit]
            m.submodules.mult = Instance(
                "MULT18X18D", **{f"p_{name}": value for name, value in _MULT18_PARAMETERS.items()},
                **ports)
            return m
        a = Signal(signed(self.a_width), reset_less=True)
        b = Signal(signed(self.b_width), reset_less=True)
        p = Signal.like(self.p, reset_less=True)
        domain = m.d[self.domain]
        with m.If(en):
            domain += [a.eq(self.a), b.eq(self.b), p.eq(a * b)]
        m.d.comb += self.p.eq(p)
        return m
