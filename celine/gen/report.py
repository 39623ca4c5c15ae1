"""Bitstream build reports (`build/<board>/<accel>/report.json`) as text tables."""

import json
from pathlib import Path

from celine.sim.emit import build_root

__all__ = ["report_path", "load_report", "format_report", "KEY_RESOURCES"]

# Always shown, even when unused: LUT4s, flip-flops, multipliers, block RAMs.
KEY_RESOURCES = ("TRELLIS_COMB", "TRELLIS_FF", "MULT18X18D", "DP16KD")


def report_path(path=None, *, board=None, accel=None):
    """`path` (a report.json or a directory holding one), else build/<board>/<accel>/."""
    if path is None:
        return build_root() / board / accel / "report.json"
    path = Path(path)
    return path / "report.json" if path.is_dir() else path


def load_report(path):
    """The report at `path`; ValueError (one line) if it is missing or not a report."""
    try:
        report = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ValueError(f"report must be an existing file, not {str(path)!r} "
                         f"(run `celine bitstream` first)") from None
    except (json.JSONDecodeError, UnicodeDecodeError, IsADirectoryError) as error:
        raise ValueError(f"report must be a JSON file, not {str(path)!r} ({error})") from None
    if not isinstance(report, dict) or "utilization" not in report:
        raise ValueError(f"report must be a bitstream report.json, not {str(path)!r}")
    return report


def _table(rows, align):
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) if a == "<" else cell.rjust(w)
                      for cell, w, a in zip(row, widths, align)).rstrip() for row in rows]


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
        "",
    ]
    rows = [("clock", "fmax MHz")]
    rows += [(clock, f"{mhz:.2f}") for clock, mhz in report["fmax_mhz"].items()]
    lines += _table(rows, "<>") + [""]

    rows = [("resource", "used", "available", "%")]
    for cell, value in report["utilization"].items():
        if value["used"] or cell in KEY_RESOURCES:
            share = 100 * value["used"] / value["available"] if value["available"] else 0
            rows.append((cell, str(value["used"]), str(value["available"]), f"{share:.1f}"))
    lines += _table(rows, "<>>>") + [""]

    steps = report.get("step_seconds", {})
    lines.append("steps  " + ", ".join(f"{step} {seconds:.1f} s"
                                       for step, seconds in steps.items()))
    tools = report.get("tool_versions", {})
    lines.append("tools  " + ", ".join(f"{tool} {version}" for tool, version in tools.items()))
    return "\n".join(lines)
