"""`celine bench --only timing`: every design's Fmax in the shell, over seeds, with its
critical paths (the timing issue's figures), and each engine's time per host call, split
into time on the link and time in the engine.

designs: for the UART echo and every registered engine at its default parameters, inside
the shell on the ULX3S-85F: synthesis and place and route (build_bitstream's placer and
router "auto": HeAP, or the static placer for a design with more than 78 multiplier
blocks; router1, router2 where router1 runs over its budget; each seed records its
"placer" and "router") for each of SEEDS,
nextpnr constrained to TARGET_MHZ (the PLL keeps the board's default clock, so the
bitstreams stay usable), place and route stopped after PNR_TIME_LIMIT seconds. Per design:
each seed's Fmax and whether it met the constraint, the median, the critical paths of the
median seed (celine.gen.bitstream.critical_paths) and the resources. A design whose build
fails on a seed records the tool's error line for that seed. Builds are kept under
build/bench/timing/<design>/seed<n> and an up-to-date one is not redone; `quick` builds
one seed. Without synthesis (`fpga` False, `--no-synth`) the list is empty.

call_time: per registered engine (at its default parameters) and per sample call of its
record (celine.engines.Accelerator.sample_calls: the default workload, and variants that
cut the link's share), one host call made on the golden model of the device
(Device.open("model"), with the board design's frames: spec.protocol.DEFAULT_MAX_PAYLOAD)
and weighed for the ULX3S-85F: {"accel", "workload", "clock_mhz", "clock_from", "baud",
"cycles", "link_bytes", "link_s", "compute_s", "link_share"}. The clock is the design's
median Fmax measured above ("clock_from": "fmax_median") or, without it, the clock of its
board builds (celine.boards.designs.Design.clock_hz: "board_default"); the baud the rate
the board top picks at that clock (celine.boards.baud.default_baud under the board's
max_baud). link_bytes: the bytes the host sent and read in the call (the transport
counts them; the model finishes a run at once, so a run costs RUN and one STATUS);
link_s = link_bytes * 10 / baud (8N1: ten bit times a byte); compute_s = cycles /
clock, the cycles the engine's cycle model gives for the call's runs; link_share =
link_s / (link_s + compute_s). Line time only: USB latency (a USB-serial chip's
latency timer, the host's scheduling), the host's turnaround between a reply and its
next request, and the STATUS polls a real run waits through (they overlap the compute)
are not counted.

largest (`celine bench --only largest`, run_largest): for each engine and each of
LARGEST_BOARDS (the ULX3S-85F and -25F), the largest configuration of the engine's
`scale` (celine.engines.Accelerator.scale) that builds in the shell on the board and
meets LARGEST_MHZ (seed 1, place and route stopped after LARGEST_PNR_TIME_LIMIT
seconds), found by halving the scale: {"board", "accel", "params",
"fmax_mhz", "useful_macs_per_s" (the cycle model's useful MACs of the default workload
per cycle, times the Fmax), "mult18x18d_share", "lut4_share", "dp16kd_share" (of the
device), the counts, and "tried" (every build of the search)}. Builds are kept under
build/bench/largest/<board>/<engine>/scale<k>.

Writes <out>/timing.json: {"target_mhz", "pnr_time_limit_s", "largest_mhz",
"largest_pnr_time_limit_s", "designs": [...], "largest": [...], "call_time": [...]}.
Each part replaces its own entries in an earlier file and keeps the others, so `--only
timing`, `--only largest` and a run without synthesis each leave the other's figures in
place.
"""

import json
import math
import statistics
import sys
from pathlib import Path

from .. import registry
from ..sim.emit import write_if_changed

TARGET_MHZ = 125
SEEDS = (1, 2, 3)
PNR_TIME_LIMIT = 1800
BOARD = "ulx3s-85f"
_RESOURCES = {"lut4": "TRELLIS_COMB", "ff": "TRELLIS_FF", "mult18x18d": "MULT18X18D",
              "dp16kd": "DP16KD"}


def log(message):
    print(f"[bench timing] {message}", file=sys.stderr, flush=True)


def designs():
    """The designs measured: the shell's echo, then every engine of the registry."""
    return ["echo", *(record.name for record in registry.ENGINES)]


def _build(accel, seed, out, *, board=BOARD, params=None, constraint_mhz=TARGET_MHZ,
           time_limit=None):
    """bench_build's figures, or {"seed", "error": the tool's error line} if it failed;
    place and route stopped after `time_limit` seconds (default PNR_TIME_LIMIT)."""
    from .bitstream import ToolError, bench_build
    try:
        return bench_build(board, accel, params, seed=seed, constraint_mhz=constraint_mhz,
                           time_limit=time_limit or PNR_TIME_LIMIT, out=out, log=log)
    except ToolError as error:
        line = next((text for text in reversed(str(error).splitlines()) if "ERROR" in text),
                    str(error).splitlines()[0])
        log(f"{accel}, seed {seed}: failed: {line}")
        return {"seed": seed, "error": line}


def measure(accel, seeds, root):
    builds = [_build(accel, seed, root / accel / f"seed{seed}") for seed in seeds]
    done = [b for b in builds if "error" not in b]
    entry = {"board": BOARD, "accel": accel,
             "params": done[0]["params"] if done else None,
             "constraint_mhz": TARGET_MHZ,
             "seeds": [{"seed": b["seed"], "fmax_mhz": b.get("fmax_mhz"),
                        "timing_met": b.get("timing_met", False),
                        **({key: b[key] for key in ("placer", "router") if key in b}),
                        **({"error": b["error"]} if "error" in b else {})} for b in builds],
             "fmax_median_mhz": None, "critical_path": []}
    if done:
        entry["fmax_median_mhz"] = round(statistics.median(b["fmax_mhz"] for b in builds
                                                           if "error" not in b), 2)
        middle = sorted(done, key=lambda b: b["fmax_mhz"])[len(done) // 2]
        entry["critical_path"] = middle["critical_paths"]
        entry["slowest_endpoints"] = middle.get("slowest_endpoints", [])
        for key, cell in _RESOURCES.items():
            entry[key] = middle["utilization"].get(cell, {}).get("used")
        entry["pnr_seconds"] = [b["step_seconds"].get("pnr") for b in done]
    log(f"{accel}: Fmax {[s['fmax_mhz'] for s in entry['seeds']]} MHz "
        f"(median {entry['fmax_median_mhz']}, target {TARGET_MHZ})")
    return entry


def _figures(seconds):
    """`seconds` to 6 significant figures (for the JSON)."""
    return float(f"{seconds:.6g}")


def call_time(accel, clock_hz, board, *, clock_from=None):
    """[call time entry] of engine `accel`'s sample calls at `clock_hz` on `board` (a name
    or a celine.boards.platforms.Board), at the engine's default parameters (see the
    module docstring); `clock_from`, if given, says where the clock came from."""
    from ..boards.baud import default_baud
    from ..boards.platforms import get_board
    from ..firmware.device import Device
    from ..spec.protocol import DEFAULT_MAX_PAYLOAD
    record = registry.get(accel)
    board = get_board(board)
    if isinstance(clock_hz, bool) or not isinstance(clock_hz, (int, float)):
        raise TypeError(f"clock_hz must be a number, not {clock_hz!r}")
    if not 0 < clock_hz < math.inf:
        raise ValueError(f"clock_hz must be a positive number of Hz, not {clock_hz!r}")
    clock_hz = round(clock_hz)
    baud = default_baud(clock_hz, board.max_baud)
    params = record.params()
    entries = []
    with Device.open("model", accel=record.name, params=params, clock_hz=clock_hz,
                     baud=baud, max_payload=DEFAULT_MAX_PAYLOAD) as device:
        transport = device.transport
        for workload, call in record.sample_calls.load()(params):
            transport.bytes_written = transport.bytes_read = 0
            cycles = call(device)
            if isinstance(cycles, bool) or not isinstance(cycles, int) or cycles < 0:
                raise TypeError(f"the {workload!r} sample call of {record.name} must return "
                                f"a non-negative integer of cycles, not {cycles!r}")
            link_bytes = transport.bytes_written + transport.bytes_read
            link_s, compute_s = link_bytes * 10 / baud, cycles / clock_hz
            entry = {"accel": record.name, "workload": workload,
                     "clock_mhz": round(clock_hz / 1e6, 3),
                     **({"clock_from": clock_from} if clock_from is not None else {}),
                     "baud": baud, "cycles": cycles, "link_bytes": link_bytes,
                     "link_s": _figures(link_s), "compute_s": _figures(compute_s),
                     "link_share": round(link_s / (link_s + compute_s), 4)
                     if link_s + compute_s else 0.0}
            log(f"{record.name}, {workload}: {link_bytes} bytes on the link "
                f"({link_s * 1e3:.2f} ms at {baud} baud), {cycles} cycles "
                f"({compute_s * 1e3:.3f} ms at {clock_hz / 1e6:g} MHz): "
                f"{entry['link_share']:.1%} link")
            entries.append(entry)
    return entries


def call_times(measured, only=None):
    """The call time entries of every registered engine among `only` (default: all), each
    at its design's median Fmax in `measured` (the designs entries) when there is one,
    else at the board top's default clock."""
    from ..boards.designs import get_design
    fmax = {entry.get("accel"): entry.get("fmax_median_mhz") for entry in measured}
    entries = []
    for record in registry.ENGINES:
        if only is not None and record.name not in only:
            continue
        if fmax.get(record.name) is not None:
            clock_hz, clock_from = fmax[record.name] * 1e6, "fmax_median"
        else:
            clock_hz, clock_from = get_design(record.name).clock_hz, "board_default"
        entries += call_time(record.name, clock_hz, BOARD, clock_from=clock_from)
    return entries


# -- the largest configurations -------------------------------------------------------------

LARGEST_BOARDS = ("ulx3s-85f", "ulx3s-25f")
LARGEST_MHZ = 100        # nextpnr's constraint for the largest configurations
LARGEST_SEED = 1
# Place and route of a configuration that fills the device: up to 2,186 s for 132
# multiplier blocks beside other builds (docs/timing.md, "Every engine's largest").
LARGEST_PNR_TIME_LIMIT = 3600


def _share(utilization, cell):
    value = utilization.get(cell, {})
    used, available = value.get("used"), value.get("available")
    return round(used / available, 4) if used is not None and available else None


def largest_of(record, board, root):
    """The largest configuration of engine `record` (its `scale`, tried by halving: a
    configuration passes when it builds in the shell on `board` and meets LARGEST_MHZ,
    and every smaller one is taken to pass too) with its figures:
    {"board", "accel", "params", "fmax_mhz", "useful_macs_per_s", "mult18x18d_share",
    "lut4_share", "dp16kd_share", "mult18x18d", "lut4", "dp16kd", "tried"}; "params" None
    when not even the smallest passes. "tried": each build's {"scale", "fmax_mhz",
    "timing_met"} or {"scale", "error"} (the tool's line; "does not fit: ..." for a
    design with more multiplier blocks or block RAMs than the device, "no BELs remaining"
    for one nextpnr cannot place)."""
    import dataclasses
    ladder = list(record.scale)
    tried, passed = [], None
    low, high = 0, len(ladder) - 1
    while low <= high:
        k = (low + high) // 2
        params = dataclasses.replace(record.params(), **ladder[k])
        log(f"largest: {record.name} on {board}, {ladder[k]} (scale {k + 1} of {len(ladder)})")
        build = _build(record.name, LARGEST_SEED, root / board / record.name / f"scale{k}",
                       board=board, params=params, constraint_mhz=LARGEST_MHZ,
                       time_limit=LARGEST_PNR_TIME_LIMIT)
        ok = "error" not in build and build["timing_met"]
        tried.append({"scale": json.loads(json.dumps(ladder[k])), **({"error": build["error"]} if "error" in build else
                                             {"fmax_mhz": build["fmax_mhz"],
                                              "timing_met": build["timing_met"],
                                              **({"placer": build["placer"]}
                                                 if "placer" in build else {})})})
        if ok:
            passed, low = (params, build), k + 1
        else:
            high = k - 1
    entry = {"board": board, "accel": record.name, "params": None, "constraint_mhz": LARGEST_MHZ,
             "tried": tried}
    if passed is not None:
        params, build = passed
        estimate = record.cycles.load()(params, **record.workload)
        used = build["utilization"]
        entry.update(
            params=params.to_dict(), fmax_mhz=build["fmax_mhz"],
            useful_macs_per_s=round(estimate.useful_macs / estimate.cycles
                                    * build["fmax_mhz"] * 1e6),
            **{f"{key}_share": _share(used, _RESOURCES[key])
               for key in ("mult18x18d", "lut4", "dp16kd")},
            **{key: used.get(_RESOURCES[key], {}).get("used")
               for key in ("mult18x18d", "lut4", "dp16kd")})
    log(f"largest: {record.name} on {board}: "
        + (f"{entry['params'] and passed[0]} at {entry.get('fmax_mhz')} MHz"
           if passed else "none passes"))
    return entry


def _previous(path, key):
    """The list `key` of an earlier timing.json at `path` ([] if there is none or it does
    not parse)."""
    try:
        value = json.loads(path.read_text()).get(key, [])
    except (OSError, ValueError, AttributeError):
        return []
    return value if isinstance(value, list) else []


def _merged(path, key, new, identity, order):
    """The entries `new` of list `key`, and those of an earlier timing.json at `path` that
    no new entry replaces (same `identity`), sorted by `order`."""
    replaced = {identity(entry) for entry in new}
    kept = [entry for entry in _previous(path, key)
            if isinstance(entry, dict) and identity(entry) not in replaced]
    return sorted(kept + new, key=order)


def _write(out, *, designs_=(), largest=()):
    """Write <out>/timing.json with these entries over the earlier file's (a run of one
    design, one board or none, as with `fpga` False, keeps the figures measured before);
    the call times at the Fmax of the designs entries there are. The result."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "timing.json"
    names = {name: k for k, name in enumerate(designs())}
    boards = {name: k for k, name in enumerate(LARGEST_BOARDS)}
    merged = _merged(path, "designs", list(designs_), lambda e: e.get("accel"),
                     lambda e: names.get(e.get("accel"), len(names)))
    largest = _merged(path, "largest", list(largest),
                      lambda e: (e.get("board"), e.get("accel")),
                      lambda e: (boards.get(e.get("board"), len(boards)),
                                 names.get(e.get("accel"), len(names))))
    result = {"target_mhz": TARGET_MHZ, "pnr_time_limit_s": PNR_TIME_LIMIT,
              "largest_mhz": LARGEST_MHZ, "largest_pnr_time_limit_s": LARGEST_PNR_TIME_LIMIT,
              "designs": merged, "largest": largest, "call_time": call_times(merged)}
    path = out / "timing.json"
    write_if_changed(path, json.dumps(result, indent=2) + "\n")
    log(f"wrote {path}")
    return result


def run(out, *, quick=False, fpga=True, only=None):
    """The timing benchmark: the designs' Fmax (`only`: a list of design names, default
    designs()) and the call times; the largest configurations are `run_largest`'s. Builds
    nothing with `fpga` False."""
    measured = []
    if fpga:
        seeds = SEEDS[:1] if quick else SEEDS
        root = Path("build/bench/timing")
        measured = [measure(accel, seeds, root) for accel in (only or designs())]
    else:
        log("designs: none built without synthesis (--no-synth); earlier entries kept")
    return _write(out, designs_=measured)


def run_largest(out, *, quick=False, fpga=True, boards=None, only=None):
    """`celine bench --only largest`: each engine's largest configuration (largest_of) on
    each of `boards` (default LARGEST_BOARDS; `quick`: the first only), `only` a list of
    engine names (default: every engine), into timing.json's "largest"."""
    if not fpga:
        log("largest: nothing to build without synthesis (--no-synth); earlier entries kept")
        return _write(out)
    boards = boards or (LARGEST_BOARDS[:1] if quick else LARGEST_BOARDS)
    root = Path("build/bench/largest")
    found = [largest_of(record, board, root) for board in boards
             for record in registry.ENGINES if only is None or record.name in only]
    return _write(out, largest=found)
