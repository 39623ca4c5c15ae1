"""`celine bench --only reliability`: the link fuzzer on every engine's shell RTL, the
formal proofs, the noisy line and the soak (docs/reliability.md). Writes
<out>/reliability.json:

    {"fuzz": [{"engine", "seeds", "faulty_frames", "valid_frames", "mismatches", "hangs",
               "corrupted_buffers"}, ...],
     "formal": [{"component", "property", "depth", "proven", "seconds"}, ...],
     "noisy_line": {"ber", "calls", "wrong_results", "double_runs", "errors_raised",
                    "retries", ...},
     "soak": {"calls", "rtl_calls", "mismatches", "host_rss_growth_mb", ...}}

Full: 3 seeds x 1,000 faulty steps an engine, 1,000 noisy calls an engine at BER 1e-4,
2,000 soak calls an engine on the golden model and 100 through the RTL. `quick`: one
seed of 100 faulty steps, 100 noisy calls, 200 soak calls and 10 RTL calls an engine.
"""

import json
import sys
import time
from pathlib import Path

from .. import registry
from ..sim.emit import write_if_changed


def log(message):
    print(f"[bench reliability] {message}", file=sys.stderr, flush=True)


def _fuzz(quick):
    from ..sim.reliability import fuzz_rtl
    seeds, bursts, faulty = ([1], 1, 100) if quick else ([2, 3, 4], 10, 100)
    rows = []
    for record in registry.ENGINES:
        start = time.monotonic()
        log(f"fuzzing {record.name}'s shell: {len(seeds)} seeds x {bursts * faulty} faulty "
            f"steps (Verilator; minutes) ...")
        results = fuzz_rtl(record.name, seeds=seeds, bursts=bursts, faulty=faulty,
                           case_id=f"bench_reliability_fuzz_{record.name}")
        row = {"engine": record.name, "seeds": [r["seed"] for r in results]}
        for key in ("faulty_frames", "valid_frames", "mismatches", "hangs",
                    "corrupted_buffers"):
            row[key] = sum(r[key] for r in results)
        rows.append(row)
        log(f"  {row['faulty_frames']} faulty, {row['valid_frames']} valid frames, "
            f"{row['mismatches']} mismatches ({time.monotonic() - start:.0f} s)")
    return rows


def _formal(out):
    from ..formal import ProofFailed, all_proofs, prove
    rows = []
    for proof in all_proofs():
        try:
            rows.append(prove(proof, out / "formal"))
        except ProofFailed as failure:
            log(f"FAILED {failure}")
            rows.append({"component": proof.component, "property": proof.prop,
                         "depth": None, "proven": False, "seconds": None})
        else:
            log(f"proven {proof.component} (depth {rows[-1]['depth']})")
    return rows


def run(out, *, quick=False, fpga=True):
    """The benchmark; `fpga` is unused (nothing here is synthesised)."""
    from ..sim.reliability import noisy_line, soak, soak_rtl
    out = Path(out)
    result = {"fuzz": _fuzz(quick), "formal": _formal(out)}
    calls = 100 if quick else 1000
    log(f"noisy line: {calls} calls an engine at BER 1e-4 ...")
    result["noisy_line"] = noisy_line(calls, ber=1e-4)
    calls, rtl_calls = (200, 10) if quick else (2000, 100)
    log(f"soak: {calls} calls an engine on the golden model ...")
    soaked = soak(calls)
    rtl = {}
    for record in registry.ENGINES:
        log(f"soak: {rtl_calls} calls on {record.name}'s RTL (Verilator) ...")
        rtl[record.name] = soak_rtl(record.name, rtl_calls)
    soaked["rtl_calls"] = sum(r["calls"] for r in rtl.values())
    soaked["rtl_mismatches"] = sum(r["wrong_results"] for r in rtl.values())
    soaked["rtl_errors_raised"] = sum(r["errors_raised"] for r in rtl.values())
    soaked["rtl"] = rtl
    result["soak"] = soaked
    out.mkdir(parents=True, exist_ok=True)
    path = out / "reliability.json"
    write_if_changed(path, json.dumps(result, indent=2) + "\n")
    noisy = result["noisy_line"]
    log(f"noisy line: {noisy['calls']} calls, {noisy['wrong_results']} wrong, "
        f"{noisy['double_runs']} double runs, {noisy['errors_raised']} errors, "
        f"{noisy['retries']} retries; soak: {soaked['calls']} + {soaked['rtl_calls']} RTL "
        f"calls, {soaked['mismatches'] + soaked['rtl_mismatches']} mismatches, RSS "
        f"+{soaked['host_rss_growth_mb']} MB")
    log(f"wrote {path}")
    return result
