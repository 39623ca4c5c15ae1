"""`celine bench` for the activation engine: cycles of a GELU workload through the shell
adapter in RTL simulation with the cycle model beside them, the lookup's throughput, the
GELU table's error against the float function, and ECP5 resources and Fmax in the shell.

workload: the GELU of one DeiT-Tiny MLP (197 tokens x 768 hidden = 151,296 int8
elements; --quick: one full run, lanes x max_words elements) on the default engine
(ActivationParams(): 8 lanes, 1024 words), in the runs the host API makes (the table
loaded by the first), each checked == against golden/activation.py; cycles as the
adapter counts them (STATUS), summed over the runs. elements_per_cycle = elements /
cycles (at most `lanes`).
lookup: the lookup core alone, a stream of 1024 beats with no stalls: cycles from the
first beat offered to the last taken.
table_error: golden/activation.py `table_error` of gelu_table(s, s) for inputs spanning
+-4 and +-8 (s = 4/127, 8/127), in output steps.
fpga: the default engine inside the shell on ULX3S-85F (nextpnr, `--router auto`).
Writes <out>/activation.json.
"""

import json
import random
import sys
from pathlib import Path

from ...golden.activation import gelu_table, gelu_value, lookup_values, table_error
from ...rtl.activation.lookup import TableLookup
from ...rtl.activation.shell_adapter import ActivationShellAdapter
from ...sim.emit import write_if_changed
from ...sim.runner import run_cocotb
from ...spec.lanes import pack_lanes
from .cycles import cycles as model_cycles
from .cycles import run_cycles, runs
from .spec import ActivationParams

TOKENS, HIDDEN = 197, 768               # DeiT-Tiny's MLP
IN_SCALES = (4 / 127, 8 / 127)
LOOKUP_BEATS = 1024


def log(message):
    print(f"[bench activation] {message}", file=sys.stderr, flush=True)


def gelu_inputs(elements, in_scale, seed=1):
    """`elements` GELU inputs: normal, std 1, quantized at `in_scale` to int8."""
    rng = random.Random(seed)
    return [max(-128, min(127, round(rng.gauss(0.0, 1.0) / in_scale)))
            for _ in range(elements)]


def workload_runs(params, elements, in_scale, seed=1):
    """The adapter testbench's runs for `elements` GELU inputs (gelu_inputs), with their
    golden y words and the model's cycles."""
    values = gelu_inputs(elements, in_scale, seed)
    values += [0] * (params.words_for(elements) * params.lanes - elements)
    table = gelu_table(in_scale, in_scale)
    out, first = [], 0
    for words, load in runs(params, elements):
        lanes = [values[(first + i) * params.lanes:(first + i + 1) * params.lanes]
                 for i in range(words)]
        out.append({"words": words, "load_table": int(load), "table": table,
                    "x": [pack_lanes(v, 8) for v in lanes],
                    "expected": [pack_lanes(lookup_values(v, table), 8) for v in lanes],
                    "errors": 0, "cycles": None})
        first += words
    return out


def measure_workload(params, elements, name):
    """RTL cycles of the host's runs for `elements` elements, checked == (the testbench
    raises otherwise)."""
    data = {"runs": workload_runs(params, elements, IN_SCALES[0])}
    case = run_cocotb(ActivationShellAdapter(params), toplevel="bench_activation_adapter",
                      test_module="celine.sim.tb.activation_tb",
                      case_id=f"bench_activation_{name}", testcase="adapter_runs",
                      params=params.to_dict(), seed=1, data=data, optimize=True)
    measured = json.loads((case / "adapter.json").read_text())["cycles"]
    cycles, predicted = sum(measured), model_cycles(params, elements)
    point = {"workload": name, "elements": elements, "runs": len(measured),
             "cycles": cycles, "elements_per_cycle": round(elements / cycles, 4),
             "utilization": round(elements / (cycles * params.lanes), 4),
             "model_cycles": predicted,
             "model_error": round((predicted - cycles) / cycles, 5),
             "model_exact_each_run": measured == [run_cycles(params, w, load_table=load)
                                                  for w, load in runs(params, elements)]}
    log(f"{name}: {elements} elements in {len(measured)} runs, {cycles} cycles "
        f"({point['elements_per_cycle']} elements/cycle), model {predicted} "
        f"({point['model_error']:+.2%})")
    return point


def measure_lookup(params, beats=LOOKUP_BEATS):
    rng = random.Random(2)
    table = gelu_table(IN_SCALES[0], IN_SCALES[0])
    inputs = [{"data": [rng.randint(-128, 127) for _ in range(params.lanes)], "last": 0}
              for _ in range(beats)]
    inputs[-1]["last"] = 1
    expected = [{"data": lookup_values(b["data"], table), "last": b["last"]} for b in inputs]
    case = run_cocotb(TableLookup(params), toplevel="bench_activation_lookup",
                      test_module="celine.sim.tb.activation_tb",
                      case_id="bench_activation_lookup", testcase="lookup_throughput",
                      params=params.to_dict(), seed=1,
                      data={"batches": [{"table": table, "beats": inputs,
                                         "expected": expected}],
                            "idle_prob": 0.0, "backpressure_prob": 0.0}, optimize=True)
    result = json.loads((case / "throughput.json").read_text())
    result["latency"] = result["cycles"] - result["beats"]
    log(f"lookup: {result['beats']} beats in {result['cycles']} cycles")
    return result


def measure_table_errors():
    out = []
    for scale in IN_SCALES:
        report = table_error(gelu_table(scale, scale), gelu_value, scale, scale)
        out.append({"in_scale": scale, "out_scale": scale, "input_range": round(127 * scale, 3),
                    **{k: round(v, 6) if isinstance(v, float) else v
                       for k, v in report.items()}})
        log(f"GELU table, inputs +-{127 * scale:.1f}: max error {report['max_abs']:.3f} steps, "
            f"mean {report['mean_abs']:.3f}")
    return out


def measure_fpga(board, seed=1):
    from ...gen.bitstream import bench_build
    return bench_build(board, "activation", ActivationParams(), seed=seed, log=log,
                       out=Path("build/bench/fpga_activation"))


def run(out, *, quick=False, fpga=True, board="ulx3s-85f"):
    params = ActivationParams()
    workloads = [("one_run", params.max_elements)]
    if not quick:
        workloads.append(("deit_tiny_mlp_gelu", TOKENS * HIDDEN))
    result = {
        "params": params.to_dict(),
        "points": [measure_workload(params, elements, name) for name, elements in workloads],
        "lookup": measure_lookup(params),
        "table_error": measure_table_errors(),
    }
    if fpga:
        result["fpga"] = measure_fpga(board)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "activation.json"
    write_if_changed(path, json.dumps(result, indent=2) + "\n")
    log(f"wrote {path}")
    return result


def sample_calls(params):
    """The record's sample calls (celine.engines.Accelerator.sample_calls): the default
    workload, the GELU of `elements` seeded int8 inputs (gelu_inputs at IN_SCALES[0]) in
    the runs the host makes (max_words words each, the table loaded by the first)."""
    from . import ENGINE
    elements = ENGINE.workload["elements"]

    def gelu(device):
        x = gelu_inputs(elements, IN_SCALES[0])
        device.activation.gelu(x, IN_SCALES[0])
        return model_cycles(params, elements)

    return [(f"gelu, elements={elements}", gelu)]
