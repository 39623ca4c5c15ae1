"""The `celine` command: output files, and one-line errors with exit status 2."""

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from celine import registry
from celine.gen.cli import main

ENGINES = [record.name for record in registry.ENGINES]
BENCH_CHOICES = ", ".join(repr(name) for name in [*ENGINES, "shell", "timing", "largest",
                                                    "reliability", "explore", "model"])


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "celine.gen.cli", *args], capture_output=True,
                          text=True, cwd=cwd)


def test_verilog_writes_verilog_and_resolved_params(tmp_path, capsys):
    assert main(["verilog", "mac", "rows=2", "cols=3", "precisions=4,8", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "celine_mac.v").read_text()
    assert "module celine_mac" in text
    resolved = json.loads((tmp_path / "celine_mac.json").read_text())
    assert resolved["params"]["rows"] == 2 and resolved["params"]["precisions"] == [4, 8]
    assert resolved["params"]["act_lanes"] == 4
    mtime = (tmp_path / "celine_mac.v").stat().st_mtime_ns
    assert main(["verilog", "mac", "rows=2", "cols=3", "precisions=4,8", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "celine_mac.v").stat().st_mtime_ns == mtime     # unchanged, not rewritten
    assert "unchanged" in capsys.readouterr().out


@pytest.mark.parametrize("args,message", [
    (["verilog", "mac", "rows=0"], "celine: error: rows must be between 1 and 64, not 0"),
    (["verilog", "mac", "impl=lut"], "celine: error: impl must be 'bricks' or 'dsp', not 'lut'"),
    (["verilog", "mac", "rows"], "celine: error: parameters must be written key=value, not 'rows'"),
    (["params", "mac", "depth=3"], "celine: error: unknown parameter 'depth' (known: rows, cols, "
     "brick_width, precisions, impl, max_reduction, acc_width, rps_precisions, lfsr_seed)"),
    (["params", "nosuch"], f"celine: error: accelerator must be one of {', '.join(ENGINES)}, "
     f"not 'nosuch'"),
    (["params", "taylor", "--workload", "tokens"],
     "celine: error: workload must be key=value, not 'tokens'"),
    (["params", "taylor", "--workload", "tokens=0"],
     "celine: error: tokens must be between 1 and 256, not 0"),
    (["params", "taylor", "--workload", "colour=red"],
     "celine: error: workload must name the taylor cycle model's arguments: estimate() got an "
     "unexpected keyword argument 'colour'"),
    (["frobnicate"], "celine: error: argument command: invalid choice: 'frobnicate' "
     "(choose from 'list', 'verilog', 'params', 'bench', 'bitstream', 'report', 'program', "
     "'ping', 'run', 'explore', 'db')"),
])
def test_bad_input_is_one_line_and_exit_2(args, message):
    result = run(*args)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [message]


class LongWorkWouldStart(Exception):
    """Raised where `celine bitstream` would start synthesis or `celine bench` a benchmark."""


@pytest.fixture(autouse=True)
def no_long_work(monkeypatch):
    """In this process, `celine bitstream` runs every check of build_bitstream up to its
    first progress line (the board top is built: clock, baud and design checked) and
    stops there; `celine bench` stops before its first benchmark. So a check that goes
    missing fails its test instead of starting a build."""
    import celine.gen.bitstream as bitstream
    import celine.gen.cli as cli
    build = bitstream.build_bitstream

    def stop(message):
        raise LongWorkWouldStart(message)

    monkeypatch.setattr(bitstream, "build_bitstream",
                        lambda *args, **options: build(*args, **options, progress=stop))

    class Bench:
        def load(self):
            return stop

    names = list(cli.benchmarks())
    monkeypatch.setattr(cli, "benchmarks", lambda: {name: Bench() for name in names})


def test_bitstream_checks_stop_before_synthesis(tmp_path, capsys):
    with pytest.raises(LongWorkWouldStart, match=r"^ulx3s-85f/echo: .*, 3000000 baud$"):
        main(["bitstream", "--accel", "echo", "--out", str(tmp_path)])


def fails(args, capsys):
    """(exit status, stderr lines) of main(args) run in this process; no exception escapes
    except through the test failing."""
    try:
        status = main(args)
    except SystemExit as error:      # argparse's own usage errors
        status = error.code
    return status, capsys.readouterr().err.splitlines()


def one_error(args, capsys):
    """The one `celine: error: ...` line of a run that must exit 2, without the prefix."""
    status, lines = fails(args, capsys)
    assert status == 2 and len(lines) == 1 and lines[0].startswith("celine: error: "), lines
    return lines[0].removeprefix("celine: error: ")


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "a_file"
    path.write_text("not a directory\n")
    return path


@pytest.mark.parametrize("command", [["verilog", "mac"], ["bitstream"], ["bench"]])
def test_out_naming_a_file(command, a_file, capsys):
    message = one_error([*command, "--out", str(a_file)], capsys)
    assert message == f"out must be a directory, not {str(a_file)!r} (an existing file)"
    assert a_file.read_text() == "not a directory\n"


@pytest.mark.parametrize("command", [["verilog", "mac"], ["bitstream"]])
def test_out_that_cannot_be_created(command, a_file, capsys):
    out = a_file / "sub"
    message = one_error([*command, "--out", str(out)], capsys)
    assert message == (f"out must be a directory that can be created and written to, "
                       f"not {str(out)!r} (Not a directory)")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
@pytest.mark.parametrize("command", [["verilog", "mac"], ["bitstream"]])
def test_out_in_a_read_only_directory(command, tmp_path, capsys):
    read_only = tmp_path / "read_only"
    read_only.mkdir(mode=0o555)
    for out in (read_only, read_only / "sub"):
        message = one_error([*command, "--out", str(out)], capsys)
        assert message == (f"out must be a directory that can be created and written to, "
                           f"not {str(out)!r} (Permission denied)")


@pytest.mark.parametrize("mhz", ["inf", "-inf", "nan", "0", "-5", "1e-300", "401", "1e300"])
def test_bad_clock(mhz, tmp_path, capsys):
    out = tmp_path / "out"
    message = one_error(["bitstream", f"--clock-mhz={mhz}", "--out", str(out)], capsys)
    assert message == f"clock must be between 3.125 and 400 MHz, not {float(mhz):g}"
    assert not out.exists()         # checked before anything is written


@pytest.mark.parametrize("mhz", ["inf", "nan", "0", "-1"])
def test_bad_constraint(mhz, tmp_path, capsys):
    message = one_error(["bitstream", f"--constraint-mhz={mhz}", "--out", str(tmp_path)], capsys)
    assert message == f"constraint must be a positive number of MHz, not {float(mhz):g}"


@pytest.mark.parametrize("top", ["bad name", "", "9lives", "a-b", "a/b", "module", "wire"])
def test_top_must_be_a_verilog_identifier(top, tmp_path, capsys):
    message = one_error(["verilog", "mac", "--top", top, "--out", str(tmp_path)], capsys)
    assert message == (f"top must be a Verilog identifier (a letter or _, then letters, "
                       f"digits, _ or $; not a keyword), not {top!r}")
    assert list(tmp_path.iterdir()) == []


def test_top_name_is_used(tmp_path):
    assert main(["verilog", "mac", "rows=1", "cols=1", "--top", "_my_mac$1",
                 "--out", str(tmp_path)]) == 0
    assert (tmp_path / "_my_mac$1.v").exists()


REPORT = {"board": "ulx3s-85f", "accel": "mac", "params": {"rows": 4}, "seed": 1,
          "flatten": False, "clock_hz": 45_000_000, "baud": 3_000_000,
          "utilization": {"TRELLIS_COMB": {"used": 10, "available": 100}},
          "fmax_mhz": {"clk": 50.1}, "constraint_mhz": 45.0, "timing_met": True,
          "tool_versions": {"yosys": "0.x"}, "step_seconds": {"synth": 1.0},
          "bitstream": "celine_mac.bit"}


def test_report_shows_a_whole_report(tmp_path, capsys):
    (tmp_path / "report.json").write_text(json.dumps(REPORT))
    assert main(["report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "board ulx3s-85f  accel mac  seed 1" in out and "50.10" in out
    assert "slowest endpoints" not in out


def test_report_of_a_missed_clock_says_which_clock_would_do(tmp_path, capsys):
    missed = {**REPORT, "fmax_mhz": {"clk": 43.7}, "timing_met": False}
    (tmp_path / "report.json").write_text(json.dumps(missed))
    assert main(["report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "timing NOT met" in out
    assert ("  it reached 43.70 MHz, below its 45 MHz clock: rebuild with --clock-mhz 43 "
            "or lower") in out
    # The PLL makes the nearest clock it can: at 25 MHz in, 107 MHz asked gives 107.14.
    (tmp_path / "report.json").write_text(json.dumps({**missed, "fmax_mhz": {"clk": 107.08},
                                                      "clock_hz": 120_000_000}))
    assert main(["report", str(tmp_path)]) == 0
    assert "rebuild with --clock-mhz 106 or lower" in capsys.readouterr().out
    # A board this tree does not know: the Fmax, no clock to suggest.
    (tmp_path / "report.json").write_text(json.dumps({**missed, "board": "elsewhere"}))
    assert main(["report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "it reached 43.70 MHz, below its 45 MHz clock\n" in out and "rebuild" not in out
    # A bench build misses a constraint above its clock but keeps the clock: no advice.
    (tmp_path / "report.json").write_text(json.dumps({**missed, "fmax_mhz": {"clk": 46.0},
                                                      "constraint_mhz": 50.0}))
    assert main(["report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "timing NOT met" in out and "rebuild" not in out


def test_a_reader_that_goes_away_gets_no_traceback(tmp_path, monkeypatch):
    """`celine report | head -1`: the pipe closes while the report is written."""
    class ClosedPipe:
        def write(self, text):
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            pass
    (tmp_path / "report.json").write_text(json.dumps(REPORT))
    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    assert main(["report", str(tmp_path)]) == 1


def test_report_shows_the_slowest_endpoints(tmp_path, capsys):
    ends = [{"endpoint": f"design.r{k}", "port": "DI", "arrival_ns": 9.0 - k, "bits": k}
            for k in range(7)]
    (tmp_path / "report.json").write_text(json.dumps({**REPORT, "slowest_endpoints": ends}))
    assert main(["report", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "slowest endpoints (arrival ns, setup not included)" in out
    assert "    9.00  design.r0.DI (0 bits)" in out and "    8.00  design.r1.DI (1 bit)" in out
    assert "design.r4.DI" in out and "design.r5" not in out       # the first five


@pytest.mark.parametrize("change,message", [
    ({"fmax_mhz": None}, "report must be a bitstream report.json, not {path!r} "
                         "(missing: fmax_mhz)"),
    ({"board": None, "seed": None}, "report must be a bitstream report.json, not {path!r} "
                                    "(missing: board, seed)"),
    ({"fmax_mhz": [50.1]}, "fmax_mhz in {path!r} must be a mapping of clock name to MHz, "
                           "not [50.1]"),
    ({"fmax_mhz": {"clk": "fast"}}, "fmax_mhz in {path!r} must be a mapping of clock name "
                                    "to MHz, not {{'clk': 'fast'}}"),
    ({"utilization": {"DP16KD": {"used": 1}}},
     "utilization in {path!r} must be a mapping of cell type to {{used, available}} counts, "
     "not {{'DP16KD': {{'used': 1}}}}"),
    ({"seed": "1"}, "seed in {path!r} must be an integer, not '1'"),
    ({"constraint_mhz": True}, "constraint_mhz in {path!r} must be a number, not True"),
    ({"params": [4]}, "params in {path!r} must be a mapping or null, not [4]"),
    ({"clock_hz": "45"}, "clock_hz in {path!r} must be a number, not '45'"),
    ({"step_seconds": {"synth": None}}, "step_seconds in {path!r} must be a mapping of step "
                                        "name to seconds, not {{'synth': None}}"),
    ({"slowest_endpoints": [{"endpoint": "r", "port": "DI", "arrival_ns": "9"}]},
     "slowest_endpoints in {path!r} must be a list of {{endpoint, port, arrival_ns, bits}}, "
     "not [{{'arrival_ns': '9', 'endpoint': 'r', 'port': 'DI'}}]"),
])
def test_report_partial_or_malformed(change, message, tmp_path, capsys):
    report = {key: value for key, value in {**REPORT, **change}.items()
              if not (key in change and change[key] is None)}       # None: key left out
    path = tmp_path / "report.json"
    path.write_text(json.dumps(report))
    assert one_error(["report", str(path)], capsys) == message.format(path=str(path))


@pytest.mark.parametrize("text,message", [
    ("[1, 2]", "report must be a bitstream report.json, not {path!r} (a JSON list, not an "
               "object)"),
    ('{"board": ', "report must be a JSON file, not {path!r} (Expecting value: line 1 "
                   "column 11 (char 10))"),
])
def test_report_not_an_object(text, message, tmp_path, capsys):
    path = tmp_path / "report.json"
    path.write_text(text)
    assert one_error(["report", str(path)], capsys) == message.format(path=str(path))


@pytest.mark.parametrize("words,message", [
    (["rows=4", "rows=8"], "parameter 'rows' must be given once, not 'rows=4' and 'rows=8'"),
    (["rows=4", "cols=2", "rows=4"], "parameter 'rows' must be given once, not 'rows=4' and "
                                     "'rows=4'"),
])
@pytest.mark.parametrize("command", [["params", "mac"], ["verilog", "mac"]])
def test_repeated_parameter(command, words, message, capsys):
    assert one_error([*command, *words], capsys) == message


def test_repeated_parameter_of_a_bitstream(tmp_path, capsys):
    message = one_error(["bitstream", "--out", str(tmp_path), "rows=4", "rows=8"], capsys)
    assert message == "parameter 'rows' must be given once, not 'rows=4' and 'rows=8'"


@pytest.mark.parametrize("baud", ["600", "12000000", "0"])
def test_one_baud_rule_from_the_command_line(baud, tmp_path, capsys):
    """The board top and the shell used to give different ranges (1..3000000 and
    1200..11250000 at 45 MHz); now one rule, one message (celine.boards.baud)."""
    from celine.boards.designs import get_design
    message = one_error(["bitstream", "--baud", baud, "--out", str(tmp_path)], capsys)
    mhz = get_design(registry.DEFAULT).clock_hz / 1e6       # the default design's clock
    assert message == (f"baud must be between 1200 and 3000000 and reachable from {mhz:g} MHz "
                       f"within 2%, not {baud}")


@pytest.mark.parametrize("args,message", [
    (["bench", "--only", "nope"], f"argument --only: invalid choice: 'nope' (choose from "
                                  f"{BENCH_CHOICES})"),
    (["bitstream", "--board", "nope"], "argument --board: invalid choice: 'nope' (choose "
     "from 'ulx3s-85f', 'ulx3s-25f', 'ecpix5-85f', 'versa-ecp5')"),
    (["bitstream", "--clock-mhz", "fast"], "argument --clock-mhz: invalid float value: 'fast'"),
    (["bitstream", "--accel", "echo", "rows=2"], "accelerator 'echo' takes no parameters, "
                                                 "not 'rows=2'"),
    (["bitstream", "--seed", "-1"], "seed must be a non-negative integer, not -1"),
    (["params", "mac", "rows=abc"], "rows must be an integer, not 'abc'"),
    (["params", "mac", "precisions=4,x"], "precisions must be a non-empty tuple of integers, "
                                          "not (4, 'x')"),
    (["verilog"], "the following arguments are required: accel"),
])
def test_other_bad_input(args, message, tmp_path, capsys):
    if args[0] == "bitstream":
        args = [*args, "--out", str(tmp_path)]
    assert one_error(args, capsys) == message


def test_subcommand_usage_errors_are_one_line():
    result = run("bench", "--only", "nope")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"celine: error: argument --only: invalid choice: "
                                          f"'nope' (choose from {BENCH_CHOICES})"]


def test_generated_files_get_the_usual_mode(tmp_path):
    """mkstemp made generated files 0600; they get 0666 & ~umask like any new file."""
    script = ("import os, sys; os.umask(0o022); from celine.gen.cli import main; "
              "sys.exit(main(sys.argv[1:]))")
    for umask, mode in ((0o022, 0o644), (0o027, 0o640)):
        out = tmp_path / f"umask{umask:o}"
        result = subprocess.run(
            [sys.executable, "-c", script.replace("0o022", oct(umask)), "verilog", "mac",
             "rows=1", "cols=1", "--out", str(out)], capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        for name in ("celine_mac.v", "celine_mac.json"):
            assert stat.S_IMODE((out / name).stat().st_mode) == mode


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize("flatten,flag", [("0", False), ("no", False), ("", False),
                                          ("1", True), ("yes", True), ("true", True)])
def test_make_flatten(flatten, flag):
    """`make bitstream FLATTEN=0` used to pass --flatten (any non-empty value did)."""
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(["make", "-n", "bitstream", f"FLATTEN={flatten}"], cwd=root,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    [line] = [line for line in result.stdout.splitlines() if "celine bitstream" in line]
    assert ("--flatten" in line.split()) == flag


def test_params_takes_a_workload(capsys):
    assert main(["params", "taylor", "max_tokens=512", "--workload", "tokens=394"]) == 0
    model = json.loads(capsys.readouterr().out)["model"]
    assert model["workload"] == {"tokens": 394}
