"""`celine bench` for the Taylor-attention pipeline: cycles in RTL simulation, the cycle
model beside them, ECP5 resources and Fmax in the shell, and the approximation errors.

points: one head of DeiT-Tiny shape (N = 197 and 2N = 394 tokens, d = 64) on pipelines of
16 and 64 MAC units (max_tokens 512 so that 2N fits), streamed with no idle cycles and no
backpressure, checked bit-exactly against golden/taylor.py; cycles from `start` to the last
output beat. utilization = 2*N*d^2 / (cycles * mac_units).
fpga: the default configuration (TaylorParams()) inside the shell on ULX3S-85F.
error: golden/taylor.py `error_report` (Taylor vs softmax, integer pipeline vs float Taylor)
on random inputs and on inputs with a few dominant keys, three seeds each.
Writes <out>/taylor.json.
"""

import json
import sys
from pathlib import Path

from ...golden.taylor import dominant_keys_inputs, error_report, random_inputs
from ...rtl.taylor.pipeline import TaylorPipeline
from ...sim.emit import write_if_changed
from ...sim.runner import run_cocotb
from ...sim.taylor_cases import make_run
from .cycles import cycles as model_cycles
from .spec import TaylorParams

TOKENS, HEAD_DIM = 197, 64
MAC_UNITS = (16, 64)
BENCH_MAX_TOKENS = 512
ERROR_SEEDS = (0, 1, 2)


def log(message):
    print(f"[bench taylor] {message}", file=sys.stderr, flush=True)


def measure(params, tokens, seed=1):
    """Cycles of one head at `tokens`, checked bit-exactly (the testbench raises if not)."""
    run = make_run(params, tokens, seed=seed)
    name = f"m{params.mac_units}_n{tokens}"
    case = run_cocotb(TaylorPipeline(params), toplevel=f"bench_taylor_m{params.mac_units}",
                      test_module="celine.sim.tb.taylor_tb", case_id=f"bench_taylor_{name}",
                      testcase="throughput", params=params.to_dict(), seed=seed,
                      data={"runs": [run], "idle_prob": 0.0, "backpressure_prob": 0.0},
                      optimize=True)
    return json.loads((case / "throughput.json").read_text())["cycles"]


def measure_points(token_counts):
    points = []
    for mac_units in MAC_UNITS:
        params = TaylorParams(head_dim=HEAD_DIM, max_tokens=BENCH_MAX_TOKENS,
                              mac_units=mac_units, heads=1)
        for tokens in token_counts:
            log(f"{mac_units} MAC units, N={tokens}, d={HEAD_DIM}: simulating ...")
            cycles = measure(params, tokens)
            useful = params.useful_macs(tokens)
            predicted = model_cycles(params, tokens)
            point = {
                "tokens": tokens, "head_dim": HEAD_DIM, "mac_units": mac_units,
                "cycles": cycles, "useful_macs": useful,
                "utilization": round(useful / (cycles * mac_units), 4),
                "model_cycles": predicted,
                "model_error": round((predicted - cycles) / cycles, 5),
            }
            log(f"  {cycles} cycles, utilization {point['utilization']:.3f}, "
                f"model {predicted} ({point['model_error']:+.2%})")
            points.append(point)
    return points


def scaling(points, mac_units):
    by_tokens = {p["tokens"]: p["cycles"] for p in points if p["mac_units"] == mac_units}
    return {"tokens": TOKENS, "mac_units": mac_units, "cycles_n": by_tokens[TOKENS],
            "cycles_2n": by_tokens[2 * TOKENS],
            "cycles_2n_over_n": round(by_tokens[2 * TOKENS] / by_tokens[TOKENS], 4)}


def measure_errors():
    result = {}
    for kind, inputs in (("random", random_inputs), ("dominant_keys", dominant_keys_inputs)):
        reports = [error_report(*inputs(TOKENS, HEAD_DIM, seed=seed)) for seed in ERROR_SEEDS]
        result[kind] = {
            comparison: {metric: round(sum(r[comparison][metric] for r in reports) / len(reports), 6)
                         for metric in reports[0][comparison]}
            for comparison in reports[0]}
        result[kind]["seeds"] = list(ERROR_SEEDS)
        log(f"error ({kind}): Taylor vs softmax rel. Frobenius "
            f"{result[kind]['taylor_vs_softmax']['rel_frobenius']:.3f}, integer vs Taylor "
            f"{result[kind]['int_vs_taylor']['rel_frobenius']:.4f}")
    result["tokens"], result["head_dim"] = TOKENS, HEAD_DIM
    return result


def measure_fpga(board, seed=1):
    from ...gen.bitstream import bench_build
    return bench_build(board, "taylor", TaylorParams(), seed=seed, log=log,
                       out=Path("build/bench/fpga_taylor"))


def run(out, *, quick=False, fpga=True, board="ulx3s-85f"):
    token_counts = (TOKENS,) if quick else (TOKENS, 2 * TOKENS)
    points = measure_points(token_counts)
    default = TaylorParams()
    result = {
        "points": points,
        "softmax_over_taylor_macs": round(default.softmax_macs(TOKENS) / default.useful_macs(TOKENS), 4),
        "error": measure_errors(),
    }
    if not quick:
        result["scaling"] = scaling(points, MAC_UNITS[0])
        result["scaling_by_mac_units"] = [scaling(points, m) for m in MAC_UNITS]
    if fpga:
        result["fpga"] = measure_fpga(board)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "taylor.json"
    write_if_changed(path, json.dumps(result, indent=2) + "\n")
    log(f"wrote {path}")
    return result


def sample_calls(params):
    """The record's sample calls (celine.engines.Accelerator.sample_calls): the default
    workload, one head of N tokens (seeded random int8 q, k, v; the registers calibrated
    by the host); the device's other heads are skipped, as the host skips heads a call
    does not give."""
    import torch
    from . import ENGINE
    tokens = ENGINE.workload["tokens"]
    others = ((1 << params.heads) - 1) & ~1            # every head but head 0 skipped

    def head(device):
        gen = torch.Generator().manual_seed(1)
        q, k, v = (torch.randint(-128, 128, (tokens, params.head_dim), generator=gen)
                   for _ in range(3))
        device.taylor.attention(q, k, v)
        return model_cycles(params, tokens, head_mask=others)

    return [(f"tokens={tokens}, one head", head)]
