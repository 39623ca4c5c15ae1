"""`celine bench` for the ViTCoD engine (`--only vitcod`): cycles of sparse and dense
attention heads in RTL simulation (bit-exact against the golden model), with the split
of the MAC units sized for each workload and one fixed split; the cycle model beside
them; Taylor against dense attention; the auto-encoder's link savings; the integer
softmax's error; ECP5 figures. Writes <out>/vitcod.json.

points: N = 197, d = 64, 64 MAC units: random masks at 0/50/75/90/95% sparsity and every
shipped DeiT-Tiny head (95%); `cycles_dense` is the full mask with all 64 units in the
denser engine; speedup = cycles_dense / cycles; utilization = 2·W·d / (cycles · 64) with
W = g·N + nnz (the polarized mask's work). The host balances the global columns
(plan_head(balance=True)): `global_tokens` are those the denser engine computed,
`polarized_globals` the mask's. "sized" is the split the cycle model finds fastest for
the head (`work_split` the work formula's).
"""

import json
import math
import sys
import time
from pathlib import Path

import torch

from ...sim.emit import write_if_changed
from .cycles import cycles as model_cycles, sized_split as model_sized_split, work_of, \
    work_of_plan
from .spec import VitcodParams

TOKENS, HEAD_DIM, MAC_UNITS = 197, 64, 64
GRANULE = 8
SIZED_OUT_LANES = 32
SPARSITIES = (0.0, 0.5, 0.75, 0.9, 0.95)
# One configuration for every point: 8 + 56 MAC units, the denser engine at most 24 global
# columns wide (the host moves further global columns to the sparser engine, which keeps a
# full mask balanced: 24·197·8 cycles dense against 173·197·8/7 sparse).
FIXED = dict(dense_macs=8, sparse_macs=56, max_global=24)


def log(message):
    print(f"[bench vitcod] {message}", file=sys.stderr, flush=True)


def _params(dense_macs, sparse_macs, globals_, nnz, out_lanes=16):
    return VitcodParams(head_dim=HEAD_DIM, max_tokens=TOKENS, heads=1,
                        dense_macs=dense_macs, sparse_macs=sparse_macs,
                        max_global=globals_ if dense_macs else 0,
                        sparse_capacity=max(nnz, 1) if sparse_macs else 0, out_lanes=out_lanes)


def measure(params, kept, seed):
    """(cycles in RTL simulation, model cycles, the HeadWork) of one head; raises if the
    RTL's output differs from the golden model's."""
    from ...rtl.vitcod.shell_adapter import VitcodShellAdapter
    from ...sim.adapter_bench import run_adapter
    from ...sim.vitcod_cases import make_case
    case = make_case(params, TOKENS, [kept], seed=seed, balance=True)
    (status,), words = run_adapter(VitcodShellAdapter(params), case.contents, case.settings,
                                   limit=2_000_000)
    out = list(case.contents["out"])
    for address, word in case.expected.writes["out"].items():
        out[address] = word
    if status[0] or words["out"] != out:
        raise AssertionError("the RTL's output differs from the golden model")
    plan = case.plans[0]
    work = work_of_plan(plan)
    return status[1], model_cycles(params, [work]), work


def sized_split(polar):
    """The split of the 64 MAC units that runs this head fastest by the cycle model, the
    host balancing the global columns (cycles.sized_split), and the work split (the
    formula: dense share g·N / W, mask.split_macs) beside it."""
    from ...golden.vitcod.mask import split_macs
    fastest = model_sized_split([work_of(polar)], head_dim=HEAD_DIM, max_tokens=TOKENS,
                                total_macs=MAC_UNITS, out_lanes=SIZED_OUT_LANES,
                                granule=GRANULE)
    return fastest, split_macs(polar, MAC_UNITS, GRANULE)


def point(name, sparsity, kept, config, cycles_dense, seed):
    from ...golden.vitcod.mask import polarize
    polar = polarize(kept)
    if config == "sized":
        # sized for the workload: the split, the widths, and 32 output lanes (a row every
        # 2 cycles: the sparse heads have many rows of 2 or 3 entries)
        (dense_macs, sparse_macs), work_split = sized_split(polar)
        params = _params(dense_macs, sparse_macs, max(polar.globals, 1),
                         max(polar.nnz_sparse + polar.globals * TOKENS, 1),
                         out_lanes=SIZED_OUT_LANES)
    else:
        dense_macs, sparse_macs = FIXED["dense_macs"], FIXED["sparse_macs"]
        work_split = None
        params = _params(dense_macs, sparse_macs, FIXED["max_global"], TOKENS * TOKENS)
    start = time.monotonic()
    cycles, predicted, work = measure(params, kept, seed)
    useful = params.useful_macs(work.work)
    result = {
        "mask": name, "sparsity": round(sparsity, 4), "config": config, "tokens": TOKENS,
        "head_dim": HEAD_DIM, "mac_units": MAC_UNITS, "dense_macs": dense_macs,
        "sparse_macs": sparse_macs, "out_lanes": params.out_lanes,
        "global_tokens": work.globals, "nnz": work.nnz, "polarized_globals": polar.globals,
        "work_split": work_split,
        "work": work.work, "cycles": cycles, "model_cycles": predicted,
        "model_error": round((predicted - cycles) / cycles, 5),
        "cycles_dense": cycles_dense, "speedup": round(cycles_dense / cycles, 3),
        "utilization": round(useful / (cycles * MAC_UNITS), 4),
    }
    log(f"{name} ({config} {dense_macs}/{sparse_macs}): g={work.globals} nnz={work.nnz} "
        f"{cycles} cycles (model {predicted}), speedup {result['speedup']:.2f}, "
        f"utilization {result['utilization']:.3f} [{time.monotonic() - start:.0f} s]")
    return result


def dense_baseline(seed=0):
    """The full mask on all 64 MAC units in the denser engine: (cycles, params)."""
    params = _params(MAC_UNITS, 0, TOKENS, 0)
    log(f"dense baseline: N={TOKENS}, d={HEAD_DIM}, {MAC_UNITS} MAC units in the denser engine ...")
    cycles, predicted, _ = measure(params, torch.ones(TOKENS, TOKENS, dtype=torch.bool), seed)
    log(f"  {cycles} cycles (model {predicted}, ideal {2 * TOKENS * TOKENS})")
    return cycles, predicted


def masks(quick):
    from ...golden.vitcod.mask import load_deit_masks, random_mask, sparsity
    out = [(f"random_{int(s * 100)}", s, random_mask(TOKENS, s, seed=int(s * 100)))
           for s in SPARSITIES]
    deit = load_deit_masks()
    layers = range(2) if quick else range(deit.shape[0])
    for layer in layers:
        for head in range(deit.shape[1]):
            kept = deit[layer, head]
            out.append((f"deit_tiny_l{layer}h{head}", sparsity(kept), kept))
    return out


def summarize_deit(points):
    """Per shipped layer and over all of them, per config: total cycles and speedup (the
    heads' cycles summed, as the engine runs them one after another), mean utilization."""
    out = {}
    for config in ("sized", "fixed"):
        deit = [p for p in points if p["config"] == config and p["mask"].startswith("deit")]
        if not deit:
            continue
        layers = sorted({p["mask"].split("h")[0] for p in deit})
        groups = {layer: [p for p in deit if p["mask"].split("h")[0] == layer] for layer in layers}
        groups["all"] = deit
        out[config] = {
            name: {"heads": len(group), "cycles": sum(p["cycles"] for p in group),
                   "speedup": round(sum(p["cycles_dense"] for p in group) /
                                    sum(p["cycles"] for p in group), 3),
                   "mean_speedup": round(sum(p["speedup"] for p in group) / len(group), 3),
                   "min_utilization": min(p["utilization"] for p in group)}
            for name, group in groups.items()}
    return out


def taylor_vs_dense(cycles_dense):
    from ..taylor.cycles import cycles as taylor_cycles
    from ..taylor.spec import TaylorParams
    taylor = taylor_cycles(TaylorParams(head_dim=HEAD_DIM, max_tokens=256, mac_units=MAC_UNITS,
                                        heads=1), TOKENS)
    return {"tokens": TOKENS, "head_dim": HEAD_DIM, "mac_units": MAC_UNITS,
            "taylor_cycles": taylor, "taylor_cycles_from": "the Taylor cycle model "
            "(exact against its RTL, tests/test_taylor.py)", "dense_cycles": cycles_dense,
            "ratio": round(cycles_dense / taylor, 3), "mac_bound": round(TOKENS / HEAD_DIM, 3)}


def softmax_accuracy():
    """The integer softmax against float softmax on the shipped masks with correlated q, k."""
    from ...golden.vitcod.attention import softmax_error
    from ...golden.vitcod.mask import load_deit_masks
    params = VitcodParams()
    deit = load_deit_masks()
    generator = torch.Generator().manual_seed(0)
    reports = []
    for layer in range(deit.shape[0]):
        for head in range(deit.shape[1]):
            qf = torch.randn(TOKENS, HEAD_DIM, generator=generator)
            kf = 0.6 * qf + 0.8 * torch.randn(TOKENS, HEAD_DIM, generator=generator)
            sq, sk = float(qf.abs().max() / 127), float(kf.abs().max() / 127)
            q, k = torch.round(qf / sq).long(), torch.round(kf / sk).long()
            reports.append(softmax_error(q @ k.T, deit[layer, head], sq * sk / math.sqrt(HEAD_DIM),
                                         params))
    entries = sum(r["entries"] for r in reports)
    return {"prob_bits": params.prob_bits, "entries": entries,
            "within_one_lsb": round(sum(r["within_one_lsb"] * r["entries"] for r in reports) / entries, 6),
            "max_lsb": round(max(r["max_lsb"] for r in reports), 4),
            "mean_lsb": round(sum(r["mean_lsb"] * r["entries"] for r in reports) / entries, 4),
            "scores": "the 18 shipped DeiT-Tiny masks; q ~ N(0,1), k = 0.6 q + 0.8 N(0,1), int8"}


def autoencoder():
    from ...golden.vitcod.autoencoder import autoencoder_report
    log("auto-encoder: the digits ViT and its Q/K auto-encoders (cached under build/models) ...")
    report = autoencoder_report()
    return {key: report[key] for key in ("bytes_plain", "bytes_compressed", "recon_rel_error",
                                         "attention_rel_error") if key in report} | \
        {"report": report}


MASE = dict(tokens=16, head_dim=16, mac_units=32, sparsity=0.75)


def mase_shape(fpga):
    """One head at N = 16, d = 16 on 32 MAC units (16 + 16), the shape of a published open
    attention head (258 cycles, 26,176 LUT4, 60 MULT18X18D, 55.8 MHz with 32 MACs): cycles
    in simulation of a random 75% mask (a quarter of the scores kept, the CLS row and
    column among them: at N = 16 those alone are 12% of the scores, so 90% would keep
    little else), of a 90% one and of the full mask, and, with `fpga`, the engine core out of context on the
    LFE5U-85F. The full mask cannot beat 258 cycles on 32 MACs: its 2·N²·d = 8,192 MACs
    alone take 256 cycles, and the SpMM uses d = 16 of the 32 units."""
    from ...golden.vitcod.mask import random_mask
    from ...rtl.vitcod.shell_adapter import VitcodShellAdapter
    from ...sim.adapter_bench import run_adapter
    from ...sim.vitcod_cases import make_case
    tokens, head_dim, macs = MASE["tokens"], MASE["head_dim"], MASE["mac_units"]
    params = VitcodParams(head_dim=head_dim, max_tokens=tokens, heads=1, max_global=tokens,
                          sparse_capacity=tokens * tokens, dense_macs=macs // 2,
                          sparse_macs=macs // 2, out_lanes=head_dim // 2)
    result = {"tokens": tokens, "head_dim": head_dim, "mac_units": params.mac_units,
              "out_lanes": params.out_lanes}
    # threshold 0 makes every column of the full mask global; the host gives each engine
    # what balances them (plan_head(balance=True))
    for key, mask, threshold in (("", random_mask(tokens, MASE["sparsity"], seed=1), 50),
                                 ("_90", random_mask(tokens, 0.9, seed=1), 50),
                                 ("_dense", None, 0)):
        case = make_case(params, tokens, [mask], threshold=threshold, balance=True)
        (status,), words = run_adapter(VitcodShellAdapter(params), case.contents,
                                       case.settings)
        expected = list(case.contents["out"])
        for address, word in case.expected.writes["out"].items():
            expected[address] = word
        if status[0] or words["out"] != expected:
            raise AssertionError("the RTL's output differs from the golden model")
        work = work_of_plan(case.plans[0])
        result.update({f"cycles{key}": status[1], f"model_cycles{key}": model_cycles(params, [work]),
                       f"work{key}": work.work,
                       f"mac_bound{key}": -(-params.useful_macs(work.work) // macs)})
        log(f"mase shape{key or ' (75% mask)'}: {status[1]} cycles on {macs} MAC units "
            f"(W = {work.work}, MAC bound {result[f'mac_bound{key}']})")
    result["mask"] = (f"random {MASE['sparsity']:.0%} (random_mask seed 1, the CLS row and "
                      f"column kept); cycles_90: random 90%; cycles_dense: the full mask")
    if fpga:
        from ...gen.synth import place_and_route
        from ...rtl.vitcod.core import VitcodCore
        log("mase shape: the core out of context on the LFE5U-85F (minutes) ...")
        figures = place_and_route(VitcodCore(params), top="vitcod_mase",
                                  workdir=Path("build/bench/ooc_vitcod"), log=log)
        result.update(lut4=figures["lut4"], ff=figures["ff"], mult18x18d=figures["mult18x18d"],
                      dp16kd=figures["dp16kd"], fmax_mhz=figures["fmax_mhz"])
    return result


def measure_fpga(board, seed=1):
    """The default engine in the shell (router auto): one DeiT-Tiny head (d = 64, N = 197) on
    8 + 24 MAC units, its rows in two 256-bit buffer words (VitcodParams.beats; with
    512-bit words the design does not route: docs/vitcod.md, "Status")."""
    from ...gen.bitstream import bench_build
    return bench_build(board, "vitcod", VitcodParams(), seed=seed, log=log,
                       out=Path("build/bench/fpga_vitcod"))


def run(out, *, quick=False, fpga=True, board="ulx3s-85f"):
    """The benchmark (`celine bench --only vitcod`); `quick` runs fewer masks, `fpga` False
    skips the ECP5 builds."""
    cycles_dense, dense_model = dense_baseline()
    points = []
    for name, sparsity, kept in masks(quick):
        for config in (("sized",) if quick else ("sized", "fixed")):
            points.append(point(name, sparsity, kept, config, cycles_dense, seed=len(points)))
    result = {"points": points, "deit_tiny": summarize_deit(points),
              "dense_baseline": {"cycles": cycles_dense, "model_cycles": dense_model},
              "taylor_vs_dense": taylor_vs_dense(cycles_dense),
              "softmax_error": softmax_accuracy(), "autoencoder": autoencoder(),
              "mase_shape": mase_shape(fpga)}
    out.mkdir(parents=True, exist_ok=True)
    path = out / "vitcod.json"
    write_if_changed(path, json.dumps(result, indent=2) + "\n")    # before the long build
    if fpga:
        result["fpga"] = measure_fpga(board)
        write_if_changed(path, json.dumps(result, indent=2) + "\n")
    log(f"wrote {path}")
    return result


def sample_calls(params):
    """The record's sample calls (celine.engines.Accelerator.sample_calls): the default
    workload, one head of N tokens (seeded random int8 q, k, v) over a random mask at the
    workload's sparsity (random_mask, seed 0, as the cycle model's estimate draws it),
    balanced by the host; the device's other heads are skipped.

    The Q/K auto-encoder would cut the link's share (only the code heads of Q and K
    travel), but the default parameters build the engine without it (autoencoder=False):
    so there is no second workload here while that default stands."""
    from ...golden.vitcod.mask import random_mask
    from . import ENGINE
    tokens, sparsity = ENGINE.workload["tokens"], ENGINE.workload["sparsity"]
    others = ((1 << params.heads) - 1) & ~1            # every head but head 0 skipped

    def head(device):
        gen = torch.Generator().manual_seed(1)
        q, k, v = (torch.randint(-128, 128, (tokens, params.head_dim), generator=gen)
                   for _ in range(3))
        device.vitcod.sparse_attention(q, k, v, random_mask(tokens, sparsity, seed=0))
        work = work_of_plan(device.vitcod.last_plans[0])
        return model_cycles(params, [work] * params.heads, head_mask=others)

    return [(f"tokens={tokens}, sparsity={sparsity}, one head", head)]
