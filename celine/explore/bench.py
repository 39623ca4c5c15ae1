"""`celine bench --only explore`: the cost data set, the cache, the estimator and the
cycle model, measured. Writes <out>/explore.json:

- points, failed, configurations, per engine and board: what the shipped data set
  (data/cost/celine-cost.sqlite) holds;
- a small fresh exploration (FRESH_POINTS, real synthesis and place and route in a work
  directory emptied first), run twice: fresh_points, seconds_per_point (the first run's
  mean), cache_hits_second_run (the fraction of the second run's points that were cache
  hits: 1.0 is the target);
- pareto: each engine's front of throughput against LUT4 per board;
- estimator: Estimator.evaluate on the data set (held-out configurations): lut4_mape,
  fmax_mape, dsp_mape (MULT18X18D), bram_mape (DP16KD), test_points (targets: LUT4 and
  Fmax <= 10 %);
- model_check: the cycle model against RTL simulation on the fresh points and on every
  data-set record with sim_cycles: points, max_cycle_error;
- deit_tiny_25f: the configuration with the most DeiT-Tiny attention heads per second
  (d = 64, 197 tokens, the engine's default workload) that fits a ULX3S-25F, from the
  data set: heads per second = heads x Fmax / cycles.
"""

import json
import shutil
import sys
import time
from pathlib import Path

from ..sim.emit import write_if_changed

__all__ = ["run", "FRESH_POINTS", "FRESH_BOARD", "deit_tiny_best"]

FRESH_BOARD = "ulx3s-25f"
FRESH_POINTS = ({"rows": 1, "cols": 1, "impl": "dsp", "precisions": [8]},
                {"rows": 1, "cols": 2, "impl": "dsp", "precisions": [8]})
ATTENTION_ENGINES = ("taylor", "vitcod")
DEIT_TINY = {"head_dim": 64, "tokens": 197}


def log(message):
    print(f"[bench explore] {message}", file=sys.stderr, flush=True)


def _configurations(records):
    return {(r["engine"], r["board"], json.dumps(r["params"], sort_keys=True))
            for r in records}


def data_set_summary(db):
    """Counts of the data set: records, failed records, configurations (engine, params,
    board) with at least one successful record, per engine and board."""
    every = db.query(status=None)
    ok = [r for r in every if r["status"] == "ok"]
    per = {}
    for r in ok:
        per.setdefault(r["engine"], {}).setdefault(r["board"], set()).add(
            json.dumps(r["params"], sort_keys=True))
    return {"points": len(_configurations(ok)), "records": len(every),
            "failed": len(every) - len(ok),
            "configurations": {engine: {board: len(configs) for board, configs in b.items()}
                               for engine, b in sorted(per.items())}}


def heads_per_second(record):
    """DeiT-Tiny attention heads a second of an attention engine's record (its workload
    at d = 64 and 197 tokens, heads x Fmax / cycles), or None."""
    params, load = record["params"], record["workload"] or {}
    if (record["engine"] not in ATTENTION_ENGINES or params.get("head_dim") != 64
            or load.get("tokens") != DEIT_TINY["tokens"] or not record["cycles"]
            or not record["fmax_mhz"]):
        return None
    return params.get("heads", 1) * record["fmax_mhz"] * 1e6 / record["cycles"]


def deit_tiny_best(db, board="ulx3s-25f"):
    """The record of the attention configuration with the most DeiT-Tiny heads a second
    that fits `board` (its successful records), as a summary dict; None without one."""
    found = [(heads_per_second(r), r) for r in db.query(board=board)
             if r["fits"] and r["engine"] in ATTENTION_ENGINES]
    found = [(h, r) for h, r in found if h is not None]
    if not found:
        return None
    h, r = max(found, key=lambda hr: (hr[0], hr[1]["key"]))
    return {"engine": r["engine"], "board": board, "params": r["params"],
            "workload": r["workload"], "heads_per_second": round(h, 1),
            "cycles": r["cycles"], "fmax_mhz": r["fmax_mhz"], "lut4": r["lut4"],
            "mult18x18d": r["mult18x18d"], "dp16kd": r["dp16kd"], "key": r["key"]}


def _fresh(out):
    """The fresh exploration, twice, in <out>/explore-work: (first, second) RunResults."""
    from .runner import run_points
    workdir = Path(out) / "explore-work"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    common = dict(board=FRESH_BOARD, seeds=(1,), workdir=workdir, jobs=1, progress=False)
    log(f"fresh exploration: {len(FRESH_POINTS)} MAC points on {FRESH_BOARD}, twice")
    first = run_points("mac", list(FRESH_POINTS), check_sim=len(FRESH_POINTS), **common)
    second = run_points("mac", list(FRESH_POINTS), **common)
    return first, second


def _pareto(db):
    fronts = []
    for engine in db.engines():
        for board in db.boards():
            for r in db.pareto("lut4", "throughput", engine=engine, board=board):
                fronts.append({"engine": engine, "board": board, "params": r["params"],
                               "lut4": r["lut4"], "fmax_mhz": r["fmax_mhz"],
                               "throughput": r["throughput"], "fits": r["fits"]})
    return fronts


def _estimator(db):
    from .estimator import Estimator
    result = Estimator.evaluate(db.query(status=None))
    mape = result["mape"]
    return {"lut4_mape": mape.get("lut4"), "fmax_mape": mape.get("fmax_mhz"),
            "dsp_mape": mape.get("mult18x18d"), "bram_mape": mape.get("dp16kd"),
            "ff_mape": mape.get("ff"), "test_points": result["test_points"],
            "train_points": result["train_points"],
            "per_engine": {engine: {"test_points": e["test_points"],
                                    **{k: v for k, v in e["mape"].items()}}
                           for engine, e in result["engines"].items()},
            "seconds_per_prediction": result["seconds_per_prediction"]}


def run(out, quick=False, fpga=True):
    """Write <out>/explore.json (module docstring). Without `fpga` the fresh exploration
    (the only part that runs the tools) is left out and its figures are null."""
    from .db import CostDB
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with CostDB(create=False) as db:
        summary = data_set_summary(db)
        log(f"data set: {summary['points']} configurations, {summary['failed']} failed "
            f"records")
        result = {**summary}
        checked = [r for r in db.query() if r["sim_cycles"] is not None]
        result["pareto"] = _pareto(db)
        log("estimator: held-out configurations")
        result["estimator"] = _estimator(db)
        result["deit_tiny_25f"] = deit_tiny_best(db, "ulx3s-25f")

    result.update(fresh_points=None, seconds_per_point=None, cache_hits_second_run=None)
    if fpga:
        first, second = _fresh(out)
        built = [r for r in first.records if r is not None]
        result.update(
            fresh_points=len(built),
            fresh_failed=first.failed,
            seconds_per_point=round(sum(r["seconds"]["total"] for r in built)
                                    / max(len(built), 1), 1),
            cache_hits_second_run=second.hits / max(len(second.records), 1))
        checked += [r for r in built if r["sim_cycles"] is not None]
    errors = [r["cycle_error"] for r in checked if r["cycle_error"] is not None]
    result["model_check"] = {
        "points": len(errors), "max_cycle_error": max(errors) if errors else None,
        "over_2_percent": [{"engine": r["engine"], "params": r["params"],
                            "cycles": r["cycles"], "sim_cycles": r["sim_cycles"]}
                           for r in checked if (r["cycle_error"] or 0) > 0.02]}
    result["seconds"] = round(time.monotonic() - start, 1)
    path = out / "explore.json"
    write_if_changed(path, json.dumps(result, indent=2) + "\n")
    log(f"wrote {path}")
    return result
