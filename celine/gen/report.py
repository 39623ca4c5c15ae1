"""Bitstream build reports (`build/<board>/<accel>/report.json`) as text tables."""

import json
import math
import reprlib
from pathlib import Path

from celine.sim.emit import build_root

__all__ = ["report_path", "load_report", "format_report", "KEY_RESOURCES",
           "REPORT_FIELDS"]

# Always shown, even when unused: LUT4s, flip-flops, multipliers, block RAMs.
KEY_RESOURCES = ("TRELLIS_COMB", "TRELLIS_FF", "MULT18X18D", "DP16KD")
ENDPOINTS_SHOWN = 5     # of a build's slowest endpoints, in `celine report`


def report_path(path=None, *, board=None, accel=None):
    """`path` (a report.json or a directory holding one), else build/<board>/<accel>/."""
    if path is None:
        return build_root() / board / accel / "report.json"
    path = Path(path)
    return path / "report.json" if path.is_dir() else path


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _mapping_of(check):
    return lambda value: isinstance(value, dict) and all(map(check, value.values()))


def _count(value):
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


# What `format_report` reads: {key: (required, rule, check)}; the optional keys are checked
# when present.
REPORT_FIELDS = {
    "board": (True, "a string", lambda value: isinstance(value, str)),
    "accel": (True, "a string", lambda value: isinstance(value, str)),
    "seed": (True, "an integer", lambda value: isinstance(value, int)
             and not isinstance(value, bool)),
    "constraint_mhz": (True, "a number", _number),
    "fmax_mhz": (True, "a mapping of clock name to MHz", _mapping_of(_number)),
    "utilization": (True, "a mapping of cell type to {used, available} counts",
                    _mapping_of(lambda value: isinstance(value, dict)
                                and _count(value.get("used"))
                                and _count(value.get("available")))),
    "params": (False, "a mapping or null", lambda value: value is None
               or isinstance(value, dict)),
    "clock_hz": (False, "a number", _number),
    "step_seconds": (False, "a mapping of step name to seconds", _mapping_of(_number)),
    "tool_versions": (False, "a mapping of tool name to version",
                      lambda value: isinstance(value, dict)),
    "slowest_endpoints": (False, "a list of {endpoint, port, arrival_ns, bits}",
                          lambda value: isinstance(value, list) and all(
                              isinstance(end, dict) and isinstance(end.get("endpoint"), str)
                              and isinstance(end.get("port"), str)
                              and _number(end.get("arrival_ns")) and _count(end.get("bits"))
                              for end in value)),
}


def load_report(path):
    """The report at `path`; ValueError (one line) if it is missing or not a report: not
    JSON, or without a key `format_report` needs, or with a value of the wrong kind."""
    try:
        report = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ValueError(f"report must be an existing file, not {str(path)!r} "
                         f"(run `celine bitstream` first)") from None
    except (json.JSONDecodeError, UnicodeDecodeError, IsADirectoryError) as error:
        raise ValueError(f"report must be a JSON file, not {str(path)!r} ({error})") from None
    except OSError as error:
        raise ValueError(f"report must be a readable file, not {str(path)!r} "
                         f"({error.strerror})") from None
    if not isinstance(report, dict):
        raise ValueError(f"report must be a bitstream report.json, not {str(path)!r} "
                         f"(a JSON {type(report).__name__}, not an object)")
    missing = [key for key, (required, _, _) in REPORT_FIELDS.items()
               if required and key not in report]
    if missing:
        raise ValueError(f"report must be a bitstream report.json, not {str(path)!r} "
                         f"(missing: {', '.join(missing)})")
    for key, (_, rule, check) in REPORT_FIELDS.items():
        if key in report and not check(report[key]):
            raise ValueError(f"{key} in {str(path)!r} must be {rule}, "
                             f"not {reprlib.repr(report[key])}")
    return report


def _table(rows, align):
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) if a == "<" else cell.rjust(w)
                      for cell, w, a in zip(row, widths, align)).rstrip() for row in rows]


def _clock_below(board, mhz):
    """The highest whole --clock-mhz whose PLL output on `board` is at most `mhz` (the PLL
    makes the nearest it can, within 1 %, which may be above the number asked for), or
    None for a board this tree does not know."""
    from ..boards.pll import pll_config
    from ..boards.platforms import get_board
    try:
        input_hz = get_board(board).clock_hz
    except (KeyError, ValueError):
        return None
    for asked in range(math.floor(mhz), 0, -1):
        try:
            if pll_config(input_hz, asked * 1_000_000).output_hz <= mhz * 1e6:
                return asked
        except ValueError:
            continue
    return None


def format_report(report):
    params = report.get("params")
    params_text = (" ".join(f"{key}={value}" for key, value in params.items())
                   if params else "-")
    clock_mhz = report.get("clock_hz", 0) / 1e6
    lines = [
        f"board {report['board']}  accel {report['accel']}  seed {report['seed']}",
        f"params {params_text}",
        f"clock {clock_mhz:g} MHz, {report.get('baud')} baud; "
        f"constraint {report['constraint_mhz']:g} MHz, "
        f"timing {'met' if report.get('timing_met') else 'NOT met'}",
    ]
    slowest = min(report["fmax_mhz"].values(), default=None)
    if not report.get("timing_met") and slowest and slowest < clock_mhz:
        # What a user whose build misses its clock does next.
        below = _clock_below(report["board"], slowest)
        lines.append(f"  it reached {slowest:.2f} MHz, below its {clock_mhz:g} MHz clock"
                     + (f": rebuild with --clock-mhz {below} or lower" if below else ""))
    lines.append("")
    rows = [("clock", "fmax MHz")]
    rows += [(clock, f"{mhz:.2f}") for clock, mhz in report["fmax_mhz"].items()]
    lines += _table(rows, "<>") + [""]

    rows = [("resource", "used", "available", "%")]
    for cell, value in report["utilization"].items():
        if value["used"] or cell in KEY_RESOURCES:
            share = 100 * value["used"] / value["available"] if value["available"] else 0
            rows.append((cell, str(value["used"]), str(value["available"]), f"{share:.1f}"))
    lines += _table(rows, "<>>>") + [""]

    for path in report.get("critical_paths", [])[:1]:
        lines.append(f"critical path {path['delay_ns']:.2f} ns (logic {path['logic_ns']:.2f}, "
                     f"routing {path['routing_ns']:.2f}, {path['logic_levels']} logic levels)")
        lines.append(f"  from {path['from']}")
        lines.append(f"  to   {path['to']}")
        lines.append("")
    if report.get("slowest_endpoints"):
        lines.append("slowest endpoints (arrival ns, setup not included)")
        for end in report["slowest_endpoints"][:ENDPOINTS_SHOWN]:
            lines.append(f"  {end['arrival_ns']:6.2f}  {end['endpoint']}.{end['port']}"
                         f" ({end['bits']} bit{'s' if end['bits'] != 1 else ''})")
        lines.append("")

    steps = report.get("step_seconds", {})
    lines.append("steps  " + ", ".join(f"{step} {seconds:.1f} s"
                                       for step, seconds in steps.items()))
    tools = report.get("tool_versions", {})
    lines.append("tools  " + ", ".join(f"{tool} {version}" for tool, version in tools.items()))
    return "\n".join(lines)
