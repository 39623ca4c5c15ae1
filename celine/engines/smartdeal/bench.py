"""`celine bench` for the SmartDeal engine (`--only smartdeal`): the decomposition's figures on
the digits ViT (celine/golden/smartdeal/report.py), the SD linear layer in RTL simulation on
real layers and activations (bit-exact against the golden model) beside the same MAC array
with plain int8 weights, the SD decoder's resources, and the engine in the shell on an
ECP5 board. Writes <out>/smartdeal.json (before the long build, and again after it).
"""

import json
import math
import sys
import time
from pathlib import Path

import torch

from ...sim.emit import write_if_changed
from .cycles import Layer, cycles as model_cycles
from .spec import IMPLS, SmartDealParams

# The layers the linear points run: an MLP's two layers of the digits ViT's first block.
LINEAR_LAYERS = ("blocks.0.mlp.0", "blocks.0.mlp.2")
TOKENS = 64            # activation rows a run takes (the default max_tokens): 3.8 images


def log(message):
    print(f"[bench smartdeal] {message}", file=sys.stderr, flush=True)


def _digits(vit_config=None, finetune=None):
    """(the fine-tuned SmartDeal model record, its hardware-form layers by name, the test
    images) of the digits ViT `vit_config` fine-tuned with `finetune` (default: the
    defaults of both, as the benchmark runs; the tests use smartdeal_cases.SMALL_VIT)."""
    from ...golden.digits_vit import digits_dataset
    from ...golden.smartdeal.finetune import smartdeal_vit
    from ...golden.smartdeal.hardware import quantize_decomposition
    data = digits_dataset()
    made = smartdeal_vit(vit_config, finetune, data=data)
    layers = {name: quantize_decomposition(d, exponent_bits=2, refit=False)
              for name, d in made.decompositions.items()}
    return made, layers, data.test_images


def activations(made, name, images, tokens):
    """int8 activations (tokens x inputs) of layer `name` on the test images: its real
    inputs, quantized with the largest magnitude at 127."""
    from ...golden.smartdeal.report import capture_inputs
    x = capture_inputs(made.model, [name], images[:math.ceil(tokens / 17) + 1])[name][:tokens]
    scale = float(x.abs().max()) / 127 or 1.0
    return torch.clamp(torch.round(x / scale), -128, 127).to(torch.int64)


def linear_point(impl, name, sd, x, fpga):
    """One SD linear layer run in RTL simulation (twice: the first run checks the stream),
    bit-exact against the golden model, beside the plain int8 MAC array's cycles."""
    from ...rtl.smartdeal.shell_adapter import SmartDealShellAdapter
    from ...sim.adapter_bench import run_adapter
    from ...sim.smartdeal_cases import make_case
    from ..mac.cycles import cycles as mac_cycles
    params = SmartDealParams(impl=impl)
    adapter = SmartDealShellAdapter(params)
    h = sd.header
    case = make_case(params, sd.pack(), x)
    start = time.monotonic()
    status, words = run_adapter(adapter, case.contents, case.settings, runs=2, limit=2_000_000)
    want = list(case.contents["result"])
    for address, word in case.expected.writes["result"].items():
        want[address] = word
    if any(s[0] for s in status) or words["result"] != want:
        raise AssertionError(f"{impl} {name}: the RTL's result differs from the golden model")
    layer = Layer.of(sd)
    dense = mac_cycles(params.array(), m=x.shape[0], k=h.length, n=h.outputs, precision=8)
    result = {
        "impl": impl, "layer": name, "shape": [x.shape[0], h.length, h.outputs],
        "array": [params.array_rows, params.array_cols, params.array_impl],
        "cycles": status[1][1], "cycles_first_run": status[0][1],
        "model_cycles": model_cycles(params, layer, x.shape[0], checked=True),
        "model_cycles_first_run": model_cycles(params, layer, x.shape[0]),
        "cycles_dense_int8": dense,
        "cycles_vs_dense": round(status[1][1] / dense, 4),
        "link_bytes": sd.packed_words * 4, "link_bytes_dense_int8": h.outputs * h.length,
    }
    log(f"{impl} {name} {result['shape']}: {result['cycles']} cycles "
        f"({result['cycles_first_run']} with the check; model {result['model_cycles']}), "
        f"plain int8 {dense} ({result['cycles_vs_dense']:.3f}x); link {result['link_bytes']} "
        f"bytes against {result['link_bytes_dense_int8']} [{time.monotonic() - start:.0f} s]")
    if fpga:
        from ...gen.synth import place_and_route
        from ...rtl.smartdeal.shell_adapter import smartdeal_core
        log(f"{impl}: the SD linear layer out of context on the LFE5U-85F (minutes) ...")
        figures = place_and_route(smartdeal_core(params), top=f"sd_linear_{impl}",
                                  workdir=Path(f"build/bench/ooc_smartdeal_{impl}"), log=log)
        result.update(lut4=figures["lut4"], ff=figures["ff"],
                      mult18x18d=figures["mult18x18d"], dp16kd=figures["dp16kd"],
                      fmax_mhz=figures["fmax_mhz"])
    return result


DECODER_ROWS = (1, 4)   # the decoder points synthesized (R; E the default's)


def decoder(fpga, measure=None):
    """(`decoder`, `decoder_points`) of the benchmark record: the SD decoder alone at the
    default configuration (SmartDealParams(): E, R), the issue's one object
    {"weights_per_cycle", "lut4", "ff", "mult18x18d", "fmax_mhz", ...}, and every point
    of DECODER_ROWS (the default's R among them), each with its exponent_bits and
    rows_per_cycle. `measure(exponent_bits, rows_per_cycle)` gives a point's resources
    (default: rtl.smartdeal.synth.decoder_resources, out of context on the LFE5U-85F);
    without `fpga` the points hold their rates only."""
    default = SmartDealParams()
    E = default.exponent_bits
    rows = sorted({*DECODER_ROWS, default.rows_per_cycle})
    if measure is None:
        def measure(exponent_bits, rows_per_cycle):
            from ...rtl.smartdeal.synth import decoder_resources
            log(f"decoder E = {exponent_bits}, R = {rows_per_cycle} out of context on the "
                f"LFE5U-85F ...")
            return decoder_resources(exponent_bits, rows_per_cycle, log=log, workdir=Path(
                f"build/bench/ooc_sd_decoder_r{rows_per_cycle}"))
    points = []
    for R in rows:
        figures = measure(E, R) if fpga else {"weights_per_cycle": 3 * R,
                                              "note": "resources: --no-synth"}
        points.append({"exponent_bits": E, "rows_per_cycle": R, **figures})
    chosen, = (point for point in points if point["rows_per_cycle"] == default.rows_per_cycle)
    return chosen, points


def measure_fpga(board, seed=1):
    from ...gen.bitstream import bench_build
    return bench_build(board, "smartdeal", SmartDealParams(), seed=seed, log=log,
                       out=Path("build/bench/fpga_smartdeal"))


def run(out, *, quick=False, fpga=True, board="ulx3s-85f"):
    """The benchmark (`celine bench --only smartdeal`); `quick` runs one layer, `fpga`
    False skips the ECP5 builds."""
    from ...golden.smartdeal.report import bench_record, smartdeal_report
    log("the digits ViT's SmartDeal report (the models cached under build/models) ...")
    report = smartdeal_report()
    result = bench_record(report)
    result["total"] = report["total"]
    made, layers, images = _digits()
    names = LINEAR_LAYERS[:1] if quick else LINEAR_LAYERS
    result["linear"] = [linear_point(impl, name, layers[name],
                                     activations(made, name, images, TOKENS), fpga)
                        for name in names for impl in IMPLS]
    result["decoder"], result["decoder_points"] = decoder(fpga)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "smartdeal.json"
    write_if_changed(path, json.dumps(result, indent=2) + "\n")
    if fpga:
        result["fpga"] = measure_fpga(board)
        write_if_changed(path, json.dumps(result, indent=2) + "\n")
    log(f"wrote {path}")
    return result


def sample_calls(params):
    """The record's sample calls (celine.engines.Accelerator.sample_calls): the default
    workload, a random layer (outputs x inputs, random_layer seed 0, as the cycle model's
    estimate draws it) over `tokens` seeded int8 activation rows, in the runs the host
    makes (max_tokens rows each), first as the first call of the layer (its packed weights
    sent, the first run checks them), then again with the weights already on chip (the
    host sends activations only, and no run checks the stream): SmartDeal's way of
    cutting the link's share."""
    from ...sim.smartdeal_cases import random_layer
    from . import ENGINE
    outputs, inputs, tokens = (ENGINE.workload[name] for name in ("outputs", "inputs", "tokens"))
    sd = random_layer(outputs, inputs, seed=0, exponent_bits=params.exponent_bits)
    layer = Layer.of(sd)
    x = torch.randint(-128, 128, (tokens, inputs), generator=torch.Generator().manual_seed(1))
    rows = [min(params.max_tokens, tokens - start)
            for start in range(0, tokens, params.max_tokens)]

    def call(device):
        """The host call; its cycles (the first run checks the layer if it was sent)."""
        device.smartdeal.linear(x, sd)
        sent = device.smartdeal.last_link_bytes["weights"] > 0
        return sum(model_cycles(params, layer, count, checked=not (sent and index == 0))
                   for index, count in enumerate(rows))

    def on_chip(device):
        cycles = call(device)
        if device.smartdeal.last_link_bytes["weights"]:
            raise RuntimeError("the weights-on-chip call must follow a call of the same "
                               "layer on the device (its weights were sent)")
        return cycles

    name = f"outputs={outputs}, inputs={inputs}, tokens={tokens}"
    return [(f"{name}, weights sent", call), (f"{name}, weights on chip", on_chip)]
