"""Boards: build plans for every board, PLL dividers, baud choice, programming errors."""

import contextlib
import stat

import pytest
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator
from amaranth_boards.ulx3s import ULX3S_85F_Platform

from celine.boards.baud import check_baud, default_baud
from celine.boards.designs import DESIGNS, get_design
from celine.boards.echo import UartEcho
from celine.boards.platforms import BOARDS, get_board
from celine.boards.pll import pll_config
from celine.boards.top import BoardTop


@pytest.mark.parametrize("name", list(BOARDS))
def test_each_board_prepares_a_build_plan(name):
    board = BOARDS[name]
    top = BoardTop(name, UartEcho)
    plan = board.platform().build(top, name="celine_echo", do_build=False, debug_verilog=False)
    assert {"celine_echo.il", "celine_echo.ys", "celine_echo.lpf"} <= set(plan.files)
    lpf = plan.files["celine_echo.lpf"]
    assert f'FREQUENCY PORT "{board.clock}_0__' in lpf
    assert 'LOCATE COMP "uart_0__rx__io"' in lpf and 'LOCATE COMP "uart_0__tx__io"' in lpf
    assert "EHXPLLL" in plan.files["celine_echo.il"]
    assert top.clock_hz == 45_000_000


def test_build_plan_does_not_need_openfpgaloader(tmp_path, monkeypatch):
    # Upstream's ULX3S platform asks for the programmer even to build; ours does not.
    assert "openFPGALoader" in ULX3S_85F_Platform().required_tools
    for board in BOARDS.values():
        assert board.platform().required_tools == ["yosys", "nextpnr-ecp5", "ecppack"]
    for tool in ("yosys", "nextpnr-ecp5", "ecppack"):
        (tmp_path / tool).write_text("#!/bin/sh\n")
        (tmp_path / tool).chmod(stat.S_IRWXU)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("AMARANTH_ENV_TRELLIS", raising=False)
    assert BOARDS["ulx3s-85f"].platform().has_required_tools()


def test_amaranths_program_step_goes_through_celine_program(tmp_path, monkeypatch):
    # platform.toolchain_program (Amaranth's `do_program`) runs celine.gen.program: the
    # board's openFPGALoader selection, SRAM, the $OPENFPGALOADER override.
    log = tmp_path / "argv"
    tool = tmp_path / "ofl"
    tool.write_text(f'#!/bin/sh\necho "$@" > {log}\n')
    tool.chmod(stat.S_IRWXU)
    monkeypatch.setenv("OPENFPGALOADER", str(tool))

    class Products:
        @contextlib.contextmanager
        def extract(self, filename):
            path = tmp_path / filename
            path.write_bytes(b"bits")
            yield str(path)

    BOARDS["ulx3s-25f"].platform().toolchain_program(Products(), "top")
    assert log.read_text().split() == ["-b", "ulx3s", "-m", str(tmp_path / "top.bit")]


def test_unknown_board():
    with pytest.raises(ValueError, match=r"^board must be one of ulx3s-85f, ulx3s-25f, "
                       r"ecpix5-85f, versa-ecp5, not 'icebreaker'$"):
        get_board("icebreaker")


# (input MHz, output MHz) -> (CLKI_DIV, CLKFB_DIV, CLKOP_DIV, CLKOP_CPHASE): what Project
# Trellis' ecppll chooses (its own regression pairs, and 25 -> 50 / 62.5 on the ULX3S).
@pytest.mark.parametrize("f_in,f_out,dividers", [
    (25, 50, (1, 2, 12, 5)), (25, 62.5, (2, 5, 10, 4)), (100, 62.5, (8, 5, 10, 4)),
    (100, 50, (2, 1, 12, 5)), (12, 48, (1, 4, 12, 5)), (20, 30, (2, 3, 20, 9)),
    (45, 30, (3, 2, 20, 9)), (100, 400, (1, 4, 1, 0)), (70, 40, (7, 4, 15, 7)),
    (12, 96, (1, 8, 6, 2)), (90, 50, (9, 5, 12, 5)), (43, 86, (1, 2, 7, 3)),
])
def test_pll_dividers_match_ecppll(f_in, f_out, dividers):
    config = pll_config(round(f_in * 1e6), round(f_out * 1e6))
    assert (config.clki_div, config.clkfb_div, config.clkop_div, config.clkop_cphase) == dividers
    assert config.output_hz == f_out * 10**6
    assert 400e6 <= config.vco_hz <= 800e6 and 3.125e6 <= config.pfd_hz <= 400e6


def test_pll_reports_the_achieved_frequency():
    config = pll_config(27_000_000, 65_000_000)         # nearest: 64.8 MHz
    assert (config.clki_div, config.clkfb_div, config.clkop_div) == (5, 12, 9)
    assert config.output_hz == 64_800_000 and config.error == pytest.approx(-0.003, abs=1e-4)
    assert "-> 64.8 MHz (requested 65 MHz" in config.describe()


@pytest.mark.parametrize("f_out,message", [
    (48_000_000, r"^frequency must be reachable from 25 MHz within 1\.0%, not 48 MHz "
                 r"\(nearest: 46\.875 MHz\)$"),
    (500_000_000, r"^frequency must be between 3\.125 MHz and 400 MHz, not 500 MHz$"),
    (1_000_000, r"^frequency must be between 3\.125 MHz and 400 MHz, not 1 MHz$"),
])
def test_pll_unreachable_frequency(f_out, message):
    with pytest.raises(ValueError, match=message):
        pll_config(25_000_000, f_out)


def test_pll_tolerance_is_a_parameter():
    assert pll_config(25_000_000, 48_000_000, tolerance=0.03).output_hz == 46_875_000


@pytest.mark.parametrize("clock_hz,max_baud,baud", [
    (50_000_000, 3_000_000, 3_000_000),      # ULX3S at 50 MHz: 17 cycles/bit, 2.0 % ... 1.96 %
    (25_000_000, 3_000_000, 1_500_000),      # 3 M and 2 M are more than 2 % off at 25 MHz
    (48_000_000, 12_000_000, 12_000_000),    # FT2232H: exactly 4 cycles per bit
    (100_000_000, 12_000_000, 6_000_000),    # 12 M would be 8.33 cycles/bit (4 % off)
    (62_500_000, 3_000_000, 3_000_000),
])
def test_default_baud(clock_hz, max_baud, baud):
    assert default_baud(clock_hz, max_baud) == baud


@pytest.mark.parametrize("baud,message", [
    (12_000_000, r"^baud must be between 1200 and 3000000 and reachable from 25 MHz within 2%, "
                 r"not 12000000$"),
    (600, r"^baud must be between 1200 and 3000000 and reachable from 25 MHz within 2%, "
          r"not 600$"),
    (2_000_000, r"^baud must be between 1200 and 3000000 and reachable from 25 MHz within 2%, "
                r"not 2000000 \(error 4\.2%\)$"),
])
def test_bad_baud(baud, message):
    with pytest.raises(ValueError, match=message):
        check_baud(25_000_000, baud, 3_000_000)


def test_bad_baud_type():
    with pytest.raises(TypeError, match=r"^baud must be an integer, not 115200\.0$"):
        check_baud(25_000_000, 115200.0, 3_000_000)


def test_too_few_cycles_per_bit():
    with pytest.raises(ValueError, match=r"^baud must be between 1200 and 10000000 and reachable "
                       r"from 40 MHz within 2%, not 12000000$"):
        check_baud(40_000_000, 12_000_000, 12_000_000)


@pytest.mark.parametrize("baud", [600, 12_000_000, 13_000_000])
def test_shell_and_board_top_share_the_baud_rule(baud):
    """One rule, one message: the shell (no USB-serial chip limit) and the board top (with
    one) differ only in the highest rate. The shell used to say "between 1200 and
    <clock/4>", the board top "between 1 and <chip>", and uart_divisor a third rule."""
    from celine.rtl.shell.shell import build_shell, uart_divisor
    with pytest.raises(ValueError) as board:
        BoardTop("ulx3s-85f", UartEcho, clock_hz=50_000_000, baud=baud)
    with pytest.raises(ValueError) as shell:
        build_shell(clock_hz=50_000_000, baud=baud)
    with pytest.raises(ValueError) as divisor:
        uart_divisor(50_000_000, baud)
    rule = "baud must be between 1200 and {} and reachable from 50 MHz within 2%, not " + str(baud)
    assert str(board.value).startswith(rule.format(3_000_000))
    assert str(shell.value).startswith(rule.format(12_500_000))
    assert str(shell.value) == str(divisor.value) == str(
        pytest.raises(ValueError, check_baud, 50_000_000, baud).value)


def test_board_top_chooses_clock_and_baud():
    top = BoardTop("ecpix5-85f", UartEcho, clock_hz=48_000_000)
    assert (top.clock_hz, top.baud) == (48_000_000, 12_000_000)
    assert (top.design.clock_hz, top.design.baud) == (48_000_000, 12_000_000)


def test_board_top_rejects_a_design_without_the_uart_ports():
    class Wrong(wiring.Component):
        rx: In(1)
        o: Out(8)

        def __init__(self, clock_hz, baud):
            super().__init__()

    with pytest.raises(TypeError, match=r"^design must have exactly the ports rx: In\(1\), "
                       r"tx: Out\(1\), busy: Out\(1\), not "):
        BoardTop("ulx3s-85f", Wrong)


def test_echo_follows_rx_and_shows_activity():
    echo = UartEcho(clock_hz=200, baud=20)          # busy holds for 200 // 20 = 10 cycles
    sim = Simulator(echo)
    sim.add_clock(1e-6)

    async def bench(ctx):
        assert ctx.get(echo.tx) == 1 and ctx.get(echo.busy) == 0
        ctx.set(echo.rx, 0)
        await ctx.tick()
        assert ctx.get(echo.tx) == 0 and ctx.get(echo.busy) == 1
        ctx.set(echo.rx, 1)
        await ctx.tick()
        assert ctx.get(echo.tx) == 1
        await ctx.tick().repeat(8)
        assert ctx.get(echo.busy) == 1
        await ctx.tick()
        assert ctx.get(echo.busy) == 0

    sim.add_testbench(bench)
    sim.run()


def test_designs_registry():
    from celine import registry
    assert list(DESIGNS) == ["echo", *(record.name for record in registry.ENGINES)]
    with pytest.raises(ValueError, match=r"^accelerator must be one of "
                                         + ", ".join(DESIGNS) + r", not 'x'$"):
        get_design("x")


def test_a_clock_that_is_no_whole_number_of_hz_builds():
    # 33.3 MHz from the 25 MHz oscillator is a fraction of a Hz off; the design gets the
    # nearest whole Hz (the UART divisor and INFO need an integer).
    from celine import registry
    design = DESIGNS[registry.DEFAULT]
    top = BoardTop("ulx3s-85f", lambda hz, baud: design.component(None, hz, baud),
                   clock_hz=33_300_000)
    assert isinstance(top.clock_hz, int) and abs(top.clock_hz - float(top.pll.output_hz)) < 1
    assert top.design.clock_hz == top.clock_hz


def test_mac_shell_prepares_on_the_default_board():
    from celine.engines.mac.spec import MacArrayParams
    design = get_design("mac")
    params = MacArrayParams(rows=1, cols=1, precisions=(8,))
    top = BoardTop("ulx3s-85f", lambda clock_hz, baud: design.component(params, clock_hz, baud))
    plan = BOARDS["ulx3s-85f"].platform().build(top, name="celine_mac", do_build=False,
                                                debug_verilog=False)
    assert "EHXPLLL" in plan.files["celine_mac.il"]


def test_a_clock_constraint_is_given_through_the_oscillator():
    # nextpnr derives the PLL output's constraint from the oscillator's: 60 MHz at the
    # 25 MHz input constrains the 50 MHz PLL output (x2) to 120 MHz.
    platform = BOARDS["ulx3s-85f"].platform()
    platform.oscillator_constraint_hz = 60e6
    plan = platform.build(BoardTop("ulx3s-85f", UartEcho), name="top", do_build=False,
                          debug_verilog=False)
    assert 'FREQUENCY PORT "clk25_0__io" 60000000.0 HZ;' in plan.files["top.lpf"]


@pytest.mark.parametrize("name", list(DESIGNS))
def test_each_design_clock_is_made_exactly_with_an_exact_uart(name):
    """A design's board builds run at its clock (the engine's measured `clock_mhz`, else
    the board top's default): every board's PLL makes it to the Hz, and the UART's
    default rate divides it exactly."""
    from celine.boards.top import DEFAULT_CLOCK_HZ
    design = get_design(name)
    mhz = getattr(design.accelerator, "clock_mhz", None)
    assert design.clock_hz == (DEFAULT_CLOCK_HZ if mhz is None else round(mhz * 1e6))
    for board in BOARDS.values():
        top = BoardTop(board.name, UartEcho, clock_hz=design.clock_hz)
        assert top.clock_hz == design.clock_hz
        assert top.clock_hz % top.baud == 0
