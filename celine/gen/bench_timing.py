"""`celine bench --only timing`: every design's Fmax in the shell, over seeds, with its
critical paths (the timing issue's figures).

For the UART echo and every registered engine at its default parameters, inside the
shell on the ULX3S-85F: synthesis and place and route with router2 for each of SEEDS,
nextpnr constrained to TARGET_MHZ (the PLL keeps the board's default clock, so the
bitstreams stay usable), place and route stopped after PNR_TIME_LIMIT seconds. Per design:
each seed's Fmax and whether it met the constraint, the median, the critical paths of the
median seed (celine.gen.bitstream.critical_paths) and the resources. A design whose build
fails on a seed records the tool's error line for that seed. Builds are kept under
build/bench/timing/<design>/seed<n> and an up-to-date one is not redone. Writes
<out>/timing.json; `quick` builds one seed.
"""

import json
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


def _build(accel, seed, root):
    from .bitstream import ToolError, bench_build
    try:
        return bench_build(BOARD, accel, seed=seed, constraint_mhz=TARGET_MHZ,
                           time_limit=PNR_TIME_LIMIT, out=root / accel / f"seed{seed}", log=log)
    except ToolError as error:
        line = next((text for text in reversed(str(error).splitlines()) if "ERROR" in text),
                    str(error).splitlines()[0])
        log(f"{accel}, seed {seed}: failed: {line}")
        return {"seed": seed, "error": line}


def measure(accel, seeds, root):
    builds = [_build(accel, seed, root) for seed in seeds]
    done = [b for b in builds if "error" not in b]
    entry = {"board": BOARD, "accel": accel,
             "params": done[0]["params"] if done else None,
             "constraint_mhz": TARGET_MHZ,
             "seeds": [{"seed": b["seed"], "fmax_mhz": b.get("fmax_mhz"),
                        "timing_met": b.get("timing_met", False),
                        **({"error": b["error"]} if "error" in b else {})} for b in builds],
             "fmax_median_mhz": None, "critical_path": []}
    if done:
        entry["fmax_median_mhz"] = round(statistics.median(b["fmax_mhz"] for b in builds
                                                           if "error" not in b), 2)
        middle = sorted(done, key=lambda b: b["fmax_mhz"])[len(done) // 2]
        entry["critical_path"] = middle["critical_paths"]
        for key, cell in _RESOURCES.items():
            entry[key] = middle["utilization"].get(cell, {}).get("used")
        entry["pnr_seconds"] = [b["step_seconds"].get("pnr") for b in done]
    log(f"{accel}: Fmax {[s['fmax_mhz'] for s in entry['seeds']]} MHz "
        f"(median {entry['fmax_median_mhz']}, target {TARGET_MHZ})")
    return entry


def run(out, *, quick=False, fpga=True, only=None):
    """The timing benchmark; with `fpga` False there is nothing to measure. `only`: a list
    of design names (default: designs())."""
    if not fpga:
        log("timing: nothing to do without synthesis (--no-synth)")
        return None
    seeds = SEEDS[:1] if quick else SEEDS
    root = Path("build/bench/timing")
    result = {"target_mhz": TARGET_MHZ, "pnr_time_limit_s": PNR_TIME_LIMIT,
              "designs": [measure(accel, seeds, root) for accel in (only or designs())]}
    out.mkdir(parents=True, exist_ok=True)
    path = out / "timing.json"
    write_if_changed(path, json.dumps(result, indent=2) + "\n")
    log(f"wrote {path}")
    return result
