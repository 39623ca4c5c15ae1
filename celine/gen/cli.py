"""The `celine` command: generate Verilog, show parameters, run benchmarks, build bitstreams.

Bad input (an unknown accelerator, a bad parameter) prints one line to stderr and exits
with status 2; no traceback. A failing tool (yosys, nextpnr, ecppack) ends with the tool's
own last lines on stderr and exit status 1.
"""

import argparse
import json
import sys
from pathlib import Path

from .. import registry
from .params_cli import parse_params


class UsageError(Exception):
    pass


class ToolFailure(Exception):
    """A build step failed; the message ends with the tool's own lines (exit status 1)."""


def resolve(accel_name, words):
    """(accelerator, parameters) from the command line; bad input becomes a UsageError."""
    try:
        accel = registry.get(accel_name)
        return accel, parse_params(accel.params, words)
    except (ValueError, TypeError) as error:
        raise UsageError(str(error)) from None


def derived(accel, params):
    """The resolved parameters: constructor arguments, the class's derived values, and the
    cycle model's figures for the engine's default workload."""
    out = {**params.to_dict(), **params.derived()}
    try:
        estimate = accel.cycles.load()(params, **accel.workload)
    except ValueError:
        return out          # the workload does not fit these parameters
    out["model"] = {"workload": dict(accel.workload), "cycles": estimate.cycles,
                    "utilization": round(estimate.utilization, 4)}
    return out


def cmd_verilog(args):
    from celine.sim.emit import write_if_changed, verilog_text
    accel, params = resolve(args.accel, args.params)
    out = Path(args.out or f"build/verilog/{accel.name}")
    top = args.top or f"celine_{accel.name}"
    print(f"celine: generating {accel.name} ({accel.summary}) ...", file=sys.stderr)
    text = verilog_text(accel.core.load()(params), name=top)
    changed = write_if_changed(out / f"{top}.v", text)
    write_if_changed(out / f"{top}.json", json.dumps(
        {"accel": accel.name, "top": top, "params": derived(accel, params)}, indent=2) + "\n")
    state = "written" if changed else "unchanged"
    print(f"{out / (top + '.v')} ({len(text.splitlines())} lines, {state}); "
          f"parameters in {out / (top + '.json')}")


def cmd_params(args):
    accel, params = resolve(args.accel, args.params)
    print(json.dumps(derived(accel, params), indent=2))


def benchmarks():
    """{name: run function reference}: every engine's benchmark, then the shell's."""
    from ..engines import Ref
    return {**{record.name: record.bench for record in registry.ENGINES},
            "shell": Ref("celine.gen.bench_shell:run")}


def cmd_bench(args):
    for name, bench in benchmarks().items():
        if args.only in (None, name):
            bench.load()(Path(args.out), quick=args.quick, fpga=not args.no_synth)


def cmd_bitstream(args):
    from ..boards.designs import get_design
    from .bitstream import ToolError, build_bitstream
    try:
        design = get_design(args.accel)
        params = None
        if design.params is not None:
            params = parse_params(design.params, args.params)
        elif args.params:
            raise ValueError(f"accelerator {args.accel!r} takes no parameters, "
                             f"not {' '.join(args.params)!r}")
        clock_hz = round(args.clock_mhz * 1e6)
        build_bitstream(args.board, args.accel, params, seed=args.seed, clock_hz=clock_hz,
                        baud=args.baud, constraint_mhz=args.constraint_mhz,
                        router=args.router, flatten=args.flatten, out=args.out)
    except (ValueError, TypeError) as error:
        raise UsageError(str(error)) from None
    except ToolError as error:
        raise ToolFailure(str(error)) from None
    from .report import format_report, load_report, report_path
    print(format_report(load_report(report_path(args.out, board=args.board, accel=args.accel))))


def cmd_report(args):
    from .report import format_report, load_report, report_path
    try:
        print(format_report(load_report(report_path(args.path, board=args.board,
                                                    accel=args.accel))))
    except ValueError as error:
        raise UsageError(str(error)) from None


def cmd_list(args):
    for accel in registry.ENGINES:
        print(f"{accel.name:8} {accel.summary}")


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit status 2)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser():
    parser = Parser(prog="celine", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list the accelerators")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("verilog", help="write an accelerator's Verilog and resolved parameters")
    p.add_argument("accel", help="accelerator name (see `celine list`)")
    p.add_argument("params", nargs="*", metavar="key=value", help="generator parameters")
    p.add_argument("--out", help="output directory (default build/verilog/<accel>)")
    p.add_argument("--top", help="top module name (default celine_<accel>)")
    p.set_defaults(func=cmd_verilog)

    p = sub.add_parser("params", help="show resolved parameters (defaults, derived widths)")
    p.add_argument("accel")
    p.add_argument("params", nargs="*", metavar="key=value")
    p.set_defaults(func=cmd_params)

    p = sub.add_parser("bench", help="measure throughput and resources; write JSON")
    p.add_argument("--out", default="build/bench", help="output directory (default build/bench)")
    p.add_argument("--quick", action="store_true", help="small matmul, for a smoke run")
    p.add_argument("--no-synth", action="store_true",
                   help="skip ECP5 synthesis and place-and-route (RTL simulation only)")
    p.add_argument("--only", choices=list(benchmarks()), help="run one benchmark only")
    p.set_defaults(func=cmd_bench)

    from ..boards.designs import DESIGNS
    from ..boards.platforms import BOARDS, DEFAULT_BOARD
    from ..boards.top import DEFAULT_CLOCK_HZ
    p = sub.add_parser("bitstream", help="build an ECP5 bitstream and its report")
    p.add_argument("params", nargs="*", metavar="key=value", help="generator parameters")
    p.add_argument("--board", default=DEFAULT_BOARD, choices=list(BOARDS),
                   help=f"target board (default {DEFAULT_BOARD})")
    p.add_argument("--accel", default=registry.DEFAULT,
                   help=f"design: {', '.join(DESIGNS)} (default {registry.DEFAULT})")
    p.add_argument("--seed", type=int, default=1, help="nextpnr placement seed (default 1)")
    p.add_argument("--clock-mhz", type=float, default=DEFAULT_CLOCK_HZ / 1e6,
                   help=f"PLL output (default {DEFAULT_CLOCK_HZ / 1e6:g})")
    p.add_argument("--baud", type=int, help="UART rate (default: the highest standard rate "
                   "the board's USB-serial chip and the clock allow)")
    p.add_argument("--constraint-mhz", type=float,
                   help="clock constraint for nextpnr (default: the clock)")
    p.add_argument("--router", choices=["router1", "router2"],
                   help="nextpnr router (router2 is much faster on large designs)")
    p.add_argument("--flatten", action="store_true",
                   help="synthesize flat (default: one module at a time, -noflatten)")
    p.add_argument("--out", help="output directory (default build/<board>/<accel>)")
    p.set_defaults(func=cmd_bitstream)

    p = sub.add_parser("report", help="show a bitstream report as a table")
    p.add_argument("path", nargs="?", help="report.json or its directory "
                   "(default build/<board>/<accel>/report.json)")
    p.add_argument("--board", default=DEFAULT_BOARD, choices=list(BOARDS))
    p.add_argument("--accel", default=registry.DEFAULT)
    p.set_defaults(func=cmd_report)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)     # argparse itself exits 2 with one usage line
    try:
        args.func(args)
    except UsageError as error:
        print(f"celine: error: {error}", file=sys.stderr)
        return 2
    except ToolFailure as error:
        print(f"celine: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("celine: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
