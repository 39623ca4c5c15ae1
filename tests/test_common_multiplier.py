"""rtl/common/multiplier.py: the registered multiplier in the Amaranth simulator, and what
it becomes for ECP5 (a MULT18X18D with its input and output registers clocked)."""

import random
import re

import pytest

from celine.rtl.common.multiplier import ECP5_TARGET, RegisteredMultiplier, is_ecp5
from celine.sim.amaranth_sim import run_sim
from celine.sim.emit import verilog_text


@pytest.mark.parametrize("a_width,b_width", [(18, 18), (9, 9), (8, 17), (1, 18), (8, 32)])
def test_product_two_cycles_later(a_width, b_width):
    """p is a * b of the operands presented two cycles before, the extremes included."""
    dut = RegisteredMultiplier(a_width, b_width)
    rng = random.Random(a_width * 100 + b_width)
    lo_a, hi_a = -(1 << (a_width - 1)), (1 << (a_width - 1)) - 1
    lo_b, hi_b = -(1 << (b_width - 1)), (1 << (b_width - 1)) - 1
    operands = [(lo_a, lo_b), (lo_a, hi_b), (hi_a, lo_b), (hi_a, hi_b), (0, lo_b)]
    operands += [(rng.randint(lo_a, hi_a), rng.randint(lo_b, hi_b)) for _ in range(200)]

    async def testbench(ctx):
        assert ctx.get(dut.p) == 0                   # reset
        for n, (a, b) in enumerate(operands + [(0, 0)] * 2):
            ctx.set(dut.a, a)
            ctx.set(dut.b, b)
            if n >= 2:
                x, y = operands[n - 2]
                assert ctx.get(dut.p) == x * y, (x, y)
            await ctx.tick()

    run_sim(dut, testbench)


def test_enable_holds_every_stage():
    dut = RegisteredMultiplier(8, 8, with_enable=True)

    async def testbench(ctx):
        ctx.set(dut.a, -128)
        ctx.set(dut.b, -128)
        await ctx.tick()
        ctx.set(dut.en, 0)
        ctx.set(dut.a, 5)
        for _ in range(3):                           # held: neither the operand nor p moves
            await ctx.tick()
            assert ctx.get(dut.p) == 0
        ctx.set(dut.en, 1)
        await ctx.tick()
        assert ctx.get(dut.p) == 16384               # the -128 * -128 held in the registers
        await ctx.tick()
        assert ctx.get(dut.p) == 5 * -128

    run_sim(dut, testbench)


def test_ecp5_target_instantiates_a_registered_mult18x18d():
    text = verilog_text(RegisteredMultiplier(8, 8), name="mult", platform=ECP5_TARGET)
    assert text.count("MULT18X18D") == 1
    for name in ("REG_INPUTA_CLK", "REG_INPUTB_CLK", "REG_OUTPUT_CLK"):
        assert re.search(rf'\.{name}\("CLK0"\)', text), name
    for name in ("REG_PIPELINE_CLK", "REG_INPUTC_CLK"):
        assert re.search(rf'\.{name}\("NONE"\)', text), name
    assert re.search(r'\.GSR\("DISABLED"\)', text)
    # The generic Verilog (simulation) has no primitive, nor does a multiply wider than 18.
    assert "MULT18X18D" not in verilog_text(RegisteredMultiplier(8, 8), name="mult")
    assert "MULT18X18D" not in verilog_text(RegisteredMultiplier(8, 19), name="mult",
                                            platform=ECP5_TARGET)


def test_is_ecp5():
    class Board:
        device = "LFE5U-85F"

    class Other:
        device = "iCE40HX8K"

    assert is_ecp5(ECP5_TARGET) and is_ecp5(Board())
    assert not is_ecp5(None) and not is_ecp5(Other())


@pytest.mark.parametrize("make,error,message", [
    (lambda: RegisteredMultiplier(65, 8), ValueError, r"^a_width must be between 1 and 64, not 65$"),
    (lambda: RegisteredMultiplier(8, 0), ValueError, r"^b_width must be between 1 and 64, not 0$"),
    (lambda: RegisteredMultiplier(8, 8.0), TypeError, r"^b_width must be an integer, not 8.0$"),
])
def test_bad_parameters(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_ecp5_synthesis_keeps_the_registers_in_the_block(monkeypatch):
    """yosys synth_ecp5 maps it onto one MULT18X18D and no flip-flop: the three registers
    are the block's own."""
    from celine.gen.synth import synthesize
    from celine.sim.emit import build_root
    root = build_root()
    root.mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(root)            # the work directory must lie under the cwd
    resources, _ = synthesize(RegisteredMultiplier(8, 8), top="registered_mult",
                              workdir="synth_ooc/registered_mult")
    assert (resources["mult18x18d"], resources["ff"], resources["lut4"]) == (1, 0, 0)
