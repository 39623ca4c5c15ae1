"""The `celine` command: generate Verilog, show parameters, run benchmarks, build bitstreams.

Bad input (an unknown accelerator, a bad or repeated parameter, an output directory that
cannot be created or written, a bad clock, top name or report) prints one line to stderr,
`celine: error: <message>`, and exits with status 2; no traceback. It is checked before
any long work (generation, synthesis, benchmarks) starts. A failing tool (yosys, nextpnr, ecppack) ends with the tool's
own last lines on stderr and exit status 1.
"""

import argparse
import json
import math
import os
import re
import sys
import tempfile
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


def check_out(path):
    """`path` as an output directory, created if need be (before any long work starts);
    UsageError if it names a file or cannot be created or written to."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UsageError(f"out must be a directory, not {str(path)!r} (an existing file)")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        raise UsageError(f"out must be a directory that can be created and written to, "
                         f"not {str(path)!r} ({error.strerror})") from None
    return path


# Verilog-2005 keywords (IEEE 1364-2005, annex B): not identifiers.
VERILOG_KEYWORDS = frozenset("""
    always and assign automatic begin buf bufif0 bufif1 case casex casez cell cmos config
    deassign default defparam design disable edge else end endcase endconfig endfunction
    endgenerate endmodule endprimitive endspecify endtable endtask event for force forever
    fork function generate genvar highz0 highz1 if ifnone incdir include initial inout input
    instance integer join large liblist library localparam macromodule medium module nand
    negedge nmos nor noshowcancelled not notif0 notif1 or output parameter pmos posedge
    primitive pull0 pull1 pulldown pullup pulsestyle_ondetect pulsestyle_onevent rcmos real
    realtime reg release repeat rnmos rpmos rtran rtranif0 rtranif1 scalared showcancelled
    signed small specify specparam strong0 strong1 supply0 supply1 table task time tran
    tranif0 tranif1 tri tri0 tri1 triand trior trireg unsigned use uwire vectored wait wand
    weak0 weak1 while wire wor xnor xor""".split())
VERILOG_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")


def check_top(name):
    """`name` if it is a Verilog (simple) identifier, else UsageError."""
    if not VERILOG_IDENTIFIER.fullmatch(name) or name in VERILOG_KEYWORDS:
        raise UsageError(f"top must be a Verilog identifier (a letter or _, then letters, "
                         f"digits, _ or $; not a keyword), not {name!r}")
    return name


def check_clock_mhz(mhz):
    """`mhz` if the ECP5 PLL can output it (inf and nan cannot), else UsageError."""
    from ..boards.pll import OUTPUT_RANGE_HZ
    lowest, highest = (hz / 1e6 for hz in OUTPUT_RANGE_HZ)
    if not lowest <= mhz <= highest:
        raise UsageError(f"clock must be between {lowest:g} and {highest:g} MHz, not {mhz:g}")
    return mhz


def parse_workload(items):
    """--workload key=value items as {key: int, float or str}; UsageError otherwise."""
    out = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise UsageError(f"workload must be key=value, not {item!r}")
        for kind in (int, float):
            try:
                out[key] = kind(text)
                break
            except ValueError:
                continue
        else:
            out[key] = text
    return out


def derived(accel, params, workload=None):
    """The resolved parameters: constructor arguments, the class's derived values, and the
    cycle model's figures for the engine's default workload (updated by `workload`)."""
    out = {**params.to_dict(), **params.derived()}
    load = {**accel.workload, **(workload or {})}
    try:
        estimate = accel.cycles.load()(params, **load)
    except ValueError as error:
        if workload:        # the user's workload: say why it does not fit
            raise UsageError(str(error)) from None
        return out          # the default workload does not fit these parameters
    except TypeError as error:
        raise UsageError(f"workload must name the {accel.name} cycle model's arguments: "
                         f"{error}") from None
    out["model"] = {"workload": load, "cycles": estimate.cycles,
                    "utilization": round(estimate.utilization, 4), **estimate.notes}
    return out


def cmd_verilog(args):
    from celine.sim.emit import write_if_changed, verilog_text
    accel, params = resolve(args.accel, args.params)
    top = check_top(args.top if args.top is not None else f"celine_{accel.name}")
    out = check_out(args.out or f"build/verilog/{accel.name}")
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
    print(json.dumps(derived(accel, params, parse_workload(args.workload)), indent=2))


def benchmarks():
    """{name: run function reference}: every engine's benchmark, then the shell's, the
    timing one (every design's Fmax over seeds: celine/gen/bench_timing.py), the largest
    configuration of each engine on each board (the same file's run_largest), the
    reliability one (fuzz, proofs, noisy line, soak: celine/gen/bench_reliability.py), the
    exploration's (the cost data set, the cache, the estimator: celine/explore/bench.py) and
    the whole models' (celine/models/bench.py)."""
    from ..engines import Ref
    return {**{record.name: record.bench for record in registry.ENGINES},
            "shell": Ref("celine.gen.bench_shell:run"),
            "timing": Ref("celine.gen.bench_timing:run"),
            "largest": Ref("celine.gen.bench_timing:run_largest"),
            "reliability": Ref("celine.gen.bench_reliability:run"),
            "explore": Ref("celine.explore.bench:run"),
            "model": Ref("celine.models.bench:run")}


def cmd_bench(args):
    check_out(args.out)
    for name, bench in benchmarks().items():
        if args.only in (None, name):
            bench.load()(Path(args.out), quick=args.quick, fpga=not args.no_synth)


def model_builds(name):
    """[(engine, params, options)]: the builds model variant `name` runs on (one per
    engine, at the parameters and shell options the engines suggest for it)."""
    from ..golden.digits_vit import digits_dataset
    from ..models.integer import CALIBRATION_IMAGES
    from ..models.variants import get
    quantized = get(name).quantize(digits_dataset().train_images[:CALIBRATION_IMAGES])
    options = quantized.engine_options()
    return [(engine, params, options[engine])
            for engine, params in quantized.engine_params().items()]


def cmd_bitstream(args):
    from ..boards.designs import get_design
    from ..sim.emit import build_root
    from .bitstream import ToolError, build_bitstream
    if args.model is not None:
        return _model_bitstreams(args)
    if args.accel is None:
        args.accel = registry.DEFAULT
    try:
        design = get_design(args.accel)
        params = None
        if design.params is not None:
            params = parse_params(design.params, args.params)
        elif args.params:
            raise ValueError(f"accelerator {args.accel!r} takes no parameters, "
                             f"not {' '.join(args.params)!r}")
        clock_hz = (None if args.clock_mhz is None
                    else round(check_clock_mhz(args.clock_mhz) * 1e6))
        constraint = args.constraint_mhz
        if constraint is not None and not (math.isfinite(constraint) and constraint > 0):
            raise ValueError(f"constraint must be a positive number of MHz, not {constraint:g}")
        out = check_out(args.out or build_root() / args.board / args.accel)
        build_bitstream(args.board, args.accel, params, seed=args.seed, clock_hz=clock_hz,
                        baud=args.baud, constraint_mhz=args.constraint_mhz,
                        router=args.router, placer=args.placer, flatten=args.flatten,
                        out=out, force=args.force)
    except (ValueError, TypeError) as error:
        raise UsageError(str(error)) from None
    except ToolError as error:
        raise ToolFailure(str(error)) from None
    from .report import format_report, load_report, report_path
    print(format_report(load_report(report_path(out))))


def _model_bitstreams(args):
    """`celine bitstream --model NAME`: one bitstream per engine the model runs on, in
    build/<board>/model-<name>/<engine>/."""
    from ..firmware.errors import CelineError
    from ..sim.emit import build_root
    from .bitstream import ToolError, build_bitstream
    from .report import format_report, load_report, report_path
    if args.params or args.accel is not None:
        raise UsageError("--model builds the model's own engines: give no --accel and no "
                         "parameters with it")
    try:
        builds = model_builds(args.model)
        root = check_out(args.out or build_root() / args.board / f"model-{args.model}")
        clock_hz = (None if args.clock_mhz is None
                    else round(check_clock_mhz(args.clock_mhz) * 1e6))
        for engine, params, options in builds:
            out = check_out(root / engine)
            build_bitstream(args.board, engine, params, options=options, seed=args.seed,
                            clock_hz=clock_hz, baud=args.baud,
                            constraint_mhz=args.constraint_mhz, router=args.router,
                            placer=args.placer, flatten=args.flatten, out=out,
                            force=args.force)
            print(format_report(load_report(report_path(out))))
    except (ValueError, TypeError, CelineError) as error:
        raise UsageError(str(error)) from None
    except ToolError as error:
        raise ToolFailure(str(error)) from None


def cmd_report(args):
    from .report import format_report, load_report, report_path
    try:
        print(format_report(load_report(report_path(args.path, board=args.board,
                                                    accel=args.accel))))
    except ValueError as error:
        raise UsageError(str(error)) from None


def cmd_program(args):
    from .program import ProgramError, program
    try:
        argv = program(args.board, args.bitfile, accel=args.accel, flash=args.flash,
                       cable=args.cable)
    except ProgramError as error:
        raise UsageError(str(error)) from None
    target = "flash" if args.flash else "SRAM"
    print(f"celine: {argv[-1]} written to the {args.board} {target}", file=sys.stderr)


def cmd_ping(args):
    from .program import ProgramError, format_info, ping
    try:
        info = ping(args.port, baud=args.baud, timeout=args.timeout)
    except ProgramError as error:
        raise UsageError(str(error)) from None
    print("\n".join(format_info(info, port=args.port)))


def cmd_run(args):
    from ..firmware.errors import CelineError
    from ..models.run import evaluate, format_result
    from ..models.variants import get
    try:
        get(args.model)
        result = evaluate(args.model, args.device, images=args.images, first=args.first,
                          progress=not args.quiet)
    except (ValueError, TypeError, CelineError) as error:
        raise UsageError(str(error)) from None
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print("\n".join(format_result(result)))


def cmd_list(args):
    width = max(len(accel.name) for accel in registry.ENGINES) + 2
    for accel in registry.ENGINES:
        print(f"{accel.name:{width}}{accel.summary}")


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr (exit status 2), `celine: error:`
    for the subcommands too."""

    def error(self, message):
        self.exit(2, f"celine: error: {message}\n")


def build_parser():
    parser = Parser(prog="celine", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list the accelerators")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("verilog", help="write an accelerator's Verilog and resolved parameters")
    p.add_argument("accel", help="accelerator name (see `celine list`)")
    p.add_argument("params", nargs="*", default=[], metavar="key=value",
                   help="generator parameters")
    p.add_argument("--out", help="output directory (default build/verilog/<accel>)")
    p.add_argument("--top", help="top module name (default celine_<accel>)")
    p.set_defaults(func=cmd_verilog)

    p = sub.add_parser("params", help="show resolved parameters (defaults, derived widths)")
    p.add_argument("accel")
    p.add_argument("params", nargs="*", default=[], metavar="key=value")
    p.add_argument("--workload", action="append", metavar="key=value",
                   help="a cycle-model workload setting (repeatable), e.g. tokens=394")
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
    from .bitstream import PLACERS, ROUTERS, STATIC_FROM_MULTIPLIERS
    p = sub.add_parser("bitstream", help="build an ECP5 bitstream and its report")
    p.add_argument("params", nargs="*", default=[], metavar="key=value",
                   help="generator parameters")
    p.add_argument("--board", default=DEFAULT_BOARD, choices=list(BOARDS),
                   help=f"target board (default {DEFAULT_BOARD})")
    p.add_argument("--accel", help=f"design: {', '.join(DESIGNS)} (default "
                                    f"{registry.DEFAULT})")
    p.add_argument("--model", help="build every engine a model variant runs on, at the "
                   "parameters it needs (docs/models.md), into build/<board>/model-<name>/")
    p.add_argument("--seed", type=int, default=1, help="nextpnr placement seed (default 1)")
    clocks = ", ".join(f"{name} {design.clock_hz / 1e6:g}" for name, design in DESIGNS.items()
                       if design.clock_hz != DEFAULT_CLOCK_HZ)
    p.add_argument("--clock-mhz", type=float,
                   help=f"PLL output (default: the design's; {clocks}, the others "
                        f"{DEFAULT_CLOCK_HZ / 1e6:g})" if clocks else
                        f"PLL output (default {DEFAULT_CLOCK_HZ / 1e6:g})")
    p.add_argument("--baud", type=int, help="UART rate (default: the highest standard rate "
                   "the board's USB-serial chip and the clock allow)")
    p.add_argument("--constraint-mhz", type=float,
                   help="clock constraint for nextpnr (default: the clock)")
    p.add_argument("--router", choices=ROUTERS, default="auto",
                   help="nextpnr router (default auto: router1, which gives the higher "
                        "Fmax, then router2, much faster on large designs, where router1 "
                        "is congested)")
    p.add_argument("--placer", choices=PLACERS, default="auto",
                   help="nextpnr placer (default auto: heap, whose timing-driven placement "
                        "gives the higher Fmax, or static for a design with more than "
                        f"{STATIC_FROM_MULTIPLIERS} multiplier blocks, placed and routed "
                        "in minutes where heap takes tens)")
    p.add_argument("--flatten", action="store_true",
                   help="synthesize flat (default: one module at a time, -noflatten)")
    p.add_argument("--out", help="output directory (default build/<board>/<accel>)")
    p.add_argument("--force", action="store_true",
                   help="build even when the report in the output directory has the same "
                        "inputs (generated design, nextpnr options, tool versions)")
    p.set_defaults(func=cmd_bitstream)

    p = sub.add_parser("report", help="show a bitstream report as a table")
    p.add_argument("path", nargs="?", help="report.json or its directory "
                   "(default build/<board>/<accel>/report.json)")
    p.add_argument("--board", default=DEFAULT_BOARD, choices=list(BOARDS))
    p.add_argument("--accel", default=registry.DEFAULT)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("program", help="load a bitstream into a board (openFPGALoader)")
    p.add_argument("bitfile", nargs="?", help="the bitstream (default: `make bitstream`'s, "
                   "build/<board>/<accel>/celine_<accel>.bit)")
    p.add_argument("--board", default=DEFAULT_BOARD, choices=list(BOARDS),
                   help=f"target board (default {DEFAULT_BOARD})")
    p.add_argument("--accel", default=registry.DEFAULT,
                   help=f"the design of the default bitfile (default {registry.DEFAULT})")
    p.add_argument("--flash", action="store_true",
                   help="write the board's SPI flash (kept at power-off) instead of SRAM")
    p.add_argument("--cable", help="openFPGALoader cable (default: the board's)")
    p.set_defaults(func=cmd_program)

    p = sub.add_parser("ping", help="ask a board what it runs (INFO): design, clock, baud")
    p.add_argument("port", help="serial port (e.g. /dev/ttyUSB0), or 'model'")
    p.add_argument("--baud", type=int,
                   help="UART rate (default: probe the standard rates, 3 Mbaud first)")
    p.add_argument("--timeout", type=float, help="seconds to wait for a reply (default 1)")
    p.set_defaults(func=cmd_ping)

    p = sub.add_parser("run", help="run a model's test images on devices; accuracy, bit-exactness, "
                       "time per image")
    p.add_argument("model", help="model variant (docs/models.md; softmax is the baseline)")
    p.add_argument("--device", default="model",
                   help="'model' (the golden devices, fast), 'sim' (the RTL under Verilator, "
                        "slow) or serial ports, comma-separated, one per engine "
                        "(default model)")
    p.add_argument("--images", type=int, default=20, help="test images (default 20)")
    p.add_argument("--first", type=int, default=0, help="the first test image (default 0)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.set_defaults(func=cmd_run)

    from ..explore import cli_db, cli_explore
    cli_explore.add_parser(sub)
    cli_db.add_parser(sub)
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
    except BrokenPipeError:
        # The reader went away (`celine report | head`): stop writing, no traceback. Later
        # writes (Python's own flush at exit) go to /dev/null.
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (AttributeError, OSError, ValueError):      # not a file: nothing to redirect
            pass
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
