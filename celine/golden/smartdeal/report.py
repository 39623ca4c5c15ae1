"""The SmartDeal report on the digits ViT: per layer and for the whole model (JSON-ready).

`smartdeal_report()` measures, on the test split of the digits (celine.golden.digits_vit):

per layer (`layers`, the default path: the ViT fine-tuned with its decompositions in the
loop, finetune.py), each SmartDeal layer in hardware form (hardware.py, E = 2):
  threshold             the decomposition's threshold (finetune.threshold_for_budget);
                        threshold_after_retries: the median over blocks after decay-and-retry
  bits_per_weight       packed words (header, every B, every code, padding) * 32 / weights
  compression_vs_int8   8 / bits_per_weight; compression_vs_float32 = 32 / bits_per_weight
  ce_sparsity           fraction of Ce entries that are 0
  recon_rel_error       ||W_sd - W|| / ||W||: W_sd the int8 weights the MAC array gets (as
                        real values), W the float product Ce B they stand for (what the
                        hardware form loses: the window, int8 B, int8 weights)
  recon_rel_error_vs_trained   the same against the trained ViT's weight (before
                        fine-tuning moved it)
  output_rel_error      ||(x W_sd^T + b) - (x W^T + b)|| / ||x W^T + b||: the layer's output
                        error on its real inputs x (captured with forward hooks on the test
                        images, every token of every image)
  output_rel_error_int  the same through the bit-exact integer layer (`integer.linear_int`:
                        x and y int8 with per-tensor scales, int32 bias); _bitop: through
                        `integer.linear_bitop_int`
  plain                 the same figures for the plain decomposition of the trained ViT at
                        the same thresholds (no fine-tuning), against the trained weights
  reference_default     the figures of the reference's default decomposition (threshold
                        1e-3) of the trained ViT, E = 3
model_accuracy: float (the trained ViT), int8 (its linear weights int8, per tensor),
  smartdeal (the default path: SmartDeal layers' int8 rebuilt weights, embed int8),
  smartdeal_plain, reference_default (same, plain decompositions), finetuned_float (the
  fine-tuned ViT with float Ce B). Activations stay float in every model accuracy.
formats: bits per weight of the storage formats considered (`format_alternatives`), pooled
  over the SmartDeal layers, for the default path and for the reference's default.
window: the pooled reconstruction error of the plain decompositions in hardware form for
  each exponent-field width E and for zeroing or clamping the coefficients below the
  window; basis_scale: per-layer against per-block scales for B.
"""

import contextlib
import math
import sys

import torch

from ..digits_vit import accuracy, digits_dataset, one_thread
from ..quant import quantize
from .decomposition import RCOND, THRESHOLD, least_squares
from .finetune import (FinetuneConfig, decompose_model, decomposed_layers, int8_layers,
                       smartdeal_vit, with_weights)
from .format import (BASIS, BASIS_BITS, BASIS_VALUES, HEADER_WORDS, WORD_BITS, LayerHeader,
                     min_exponent, packed_words, symbols_per_word)
from .hardware import quantize_decomposition, window
from .integer import linear_bitop_int, linear_int, output_requantizer

INT8_HI = 127
REFERENCE_EXPONENT_BITS = 3     # the window that keeps the reference default's exponents


def _rel(approx, reference):
    reference = reference.to(torch.float64)
    norm = float(torch.linalg.vector_norm(reference))
    return float(torch.linalg.vector_norm(approx.to(torch.float64) - reference)) / norm \
        if norm else 0.0


def _pooled(pairs):
    """sqrt(sum ||a - r||^2 / sum ||r||^2) over (approx, reference) pairs."""
    error = sum(float(((a.double() - r.double()) ** 2).sum()) for a, r in pairs)
    return math.sqrt(error / sum(float((r.double() ** 2).sum()) for _, r in pairs))


def int8_weight(weight):
    """`weight` rounded to int8 with the per-tensor scale max|w| / 127, as real values."""
    weight = torch.as_tensor(weight, dtype=torch.float64)
    peak = float(weight.abs().max())
    scale = peak / INT8_HI if peak > 0 else 1.0
    return quantize(weight, scale).to(torch.float64) * scale


@one_thread()
@torch.no_grad()
def capture_inputs(model, names, images):
    """{name: (tokens, in_features) float64}: what each named layer receives for `images`,
    every token of every image (forward hooks)."""
    captured, hooks = {}, []
    for name in names:
        def hook(module, inputs, output, name=name):
            captured[name] = inputs[0].detach().reshape(-1, inputs[0].shape[-1]).double()
        hooks.append(model.get_submodule(name).register_forward_hook(hook))
    try:
        model.eval()
        model(images)
    finally:
        for handle in hooks:
            handle.remove()
    return captured


def integer_output(sd, x, bias, reference, *, bitop=False):
    """The layer's output for float inputs x through the bit-exact integer layer, as real
    values: x int8 at max|x| / 127, the bias int32 at the accumulator's scale, y int8 at
    max|reference| / 127 (reference: the float output it is compared with)."""
    x_scale = float(x.abs().max()) / INT8_HI or 1.0
    y_scale = float(reference.abs().max()) / INT8_HI or 1.0
    weights = "wide" if bitop else "int8"
    w_scale = sd.unit if bitop else sd.weight_scale
    mult, shift = output_requantizer(sd, x_scale, y_scale, weights=weights)
    x_int = quantize(x, x_scale)
    bias_int = quantize(bias.double(), x_scale * w_scale, 32)
    layer = linear_bitop_int if bitop else linear_int
    options = {} if bitop else {"weights": "int8"}
    return layer(x_int, sd, mult=mult, shift=shift, bias=bias_int, **options).double() * y_scale


def layer_figures(sd, weight, bias, x, *, integer=True):
    """The figures of one layer in hardware form `sd` standing for float `weight` (and
    `bias`), on its inputs x (module docstring)."""
    deployed = sd.float_weight()
    bias = bias.detach().double()
    reference = x @ weight.double().T + bias
    bits = sd.bits_per_weight
    figures = {"bits_per_weight": bits, "compression_vs_int8": 8 / bits,
               "compression_vs_float32": 32 / bits, "ce_sparsity": sd.ce_sparsity,
               "recon_rel_error": _rel(deployed, weight),
               "output_rel_error": _rel(x @ deployed.T + bias, reference)}
    if integer:
        figures["output_rel_error_int"] = _rel(integer_output(sd, x, bias, reference),
                                               reference)
        figures["output_rel_error_bitop"] = _rel(
            integer_output(sd, x, bias, reference, bitop=True), reference)
    return figures


# -- storage formats --------------------------------------------------------------------------

def format_alternatives(sd):
    """{format: packed bits} of the layer `sd` (its Ce and block shape) in each storage
    format considered (docs/smartdeal.md, "The packed format"); every one but int8/float32
    has the same 5-word header. P = symbols_per_word(E) codes of 1 + E bits per word.

    symbol_stream     the chosen format (format.py), E as in `sd`
    symbol_stream_e3  the same with E = 3 (4-bit symbols, 8 a word)
    fixed_codes       every coefficient an (E + 2)-bit code (zero among the codes), a row's
                      three in one record, records never cross a word; per block B in 3
                      words (9 bytes, 3 spare)
    mask_groups       per block B in 3 words; then per group of 10 rows a word of 3-bit
                      masks and the group's codes in ceil(nnz / P) words
    regions           three word-aligned regions per layer: every B (bytes, 4 a word),
                      every row's mask (10 a word), every code (P a word)
    int8, float32     the dense weights
    """
    h = sd.header
    e_bits = h.exponent_bits
    per_word = symbols_per_word(e_bits)
    nonzero = (sd.ce != 0)
    nnz = int(nonzero.sum())
    weights = h.outputs * h.length
    code_bits = e_bits + 2
    rows_per_word = WORD_BITS // (BASIS * code_bits)
    basis_words = -(-BASIS_VALUES * BASIS_BITS // WORD_BITS)
    group_rows = WORD_BITS // BASIS
    groups = nonzero.sum(-1)                                        # (blocks, m0) per row
    mask_groups = 0
    for block in groups:
        mask_groups += basis_words
        for first in range(0, len(block), group_rows):
            mask_groups += 1 + -(-int(block[first:first + group_rows].sum()) // per_word)
    e3 = LayerHeader(kind=h.kind, outputs=h.outputs, length=h.length, block_rows=h.block_rows,
                     blocks_per_output=h.blocks_per_output, exponent_bits=3,
                     weight_mult=h.weight_mult, weight_shift=h.weight_shift)
    words = {
        "symbol_stream": sd.packed_words,
        "symbol_stream_e3": packed_words(e3, nnz),
        "fixed_codes": HEADER_WORDS + h.blocks * (basis_words + -(-h.block_rows // rows_per_word)),
        "mask_groups": HEADER_WORDS + mask_groups,
        "regions": HEADER_WORDS + -(-h.blocks * BASIS_VALUES // 4)
        + -(-h.blocks * h.block_rows // group_rows) + -(-nnz // per_word),
    }
    bits = {name: count * WORD_BITS for name, count in words.items()}
    return {**bits, "int8": 8 * weights, "float32": 32 * weights}


def _pooled_formats(sds):
    """{format: bits per weight} pooled over layers, and the smallest layer compression
    against int8 of each format."""
    totals, smallest = {}, {}
    weights = sum(sd.header.outputs * sd.header.length for sd in sds)
    for sd in sds:
        layer_weights = sd.header.outputs * sd.header.length
        for name, bits in format_alternatives(sd).items():
            totals[name] = totals.get(name, 0) + bits
            smallest[name] = min(smallest.get(name, math.inf), 8 * layer_weights / bits)
    return {name: {"bits_per_weight": total / weights,
                   "compression_vs_int8": 8 * weights / total,
                   "smallest_layer_compression_vs_int8": smallest[name]}
            for name, total in totals.items()}


def _basis_scale_rebuilds(decomposition, exponent_bits):
    """(per_layer, per_block): the weight rebuilt from the hardware form's windowed Ce and
    refitted B (hardware.py steps 1-3), B rounded to int8 with one scale per layer or one
    per block (the int8 weight requantizer left out of both)."""
    ce, _ = window(decomposition, exponent_bits)
    coefficients = torch.ldexp(ce.double(), torch.tensor(min_exponent(exponent_bits)))
    basis = least_squares(coefficients, decomposition.target, RCOND)
    rebuilt = []
    for peak in (basis.abs().max(), basis.abs().flatten(1).max(1).values[:, None, None]):
        scale = torch.as_tensor(peak).clamp(min=1e-300) / INT8_HI
        blocks = coefficients @ (torch.floor(basis / scale + 0.5) * scale)
        rebuilt.append(decomposition.layout.from_blocks(blocks))
    return tuple(rebuilt)


# -- the report --------------------------------------------------------------------------------

def _model_accuracy(model, data):
    return accuracy(model, data.test_images, data.test_labels)


@one_thread()
@torch.no_grad()
def smartdeal_report(vit_config=None, config=None, *, data=None, progress=False):
    """The report (module docstring) for `vit_config` (default DigitsViTConfig()) and
    `config` (default FinetuneConfig()); everything trained or loaded by `smartdeal_vit`."""
    config = FinetuneConfig() if config is None else config
    data = digits_dataset() if data is None else data
    made = smartdeal_vit(vit_config, config, data=data, progress=progress)
    vit, tuned, e_bits = made.vit, made.model, config.exponent_bits
    names = [name for name, _ in decomposed_layers(vit)]
    images = data.test_images
    trained_inputs = capture_inputs(vit, names, images)
    tuned_inputs = capture_inputs(tuned, names, images)
    plain = decompose_model(vit, made.thresholds)
    reference = decompose_model(vit, THRESHOLD)

    def hardware(decompositions, bits, refit=True):
        return {name: quantize_decomposition(d, exponent_bits=bits, refit=refit)
                for name, d in decompositions.items()}

    default_sd = hardware(made.decompositions, e_bits, refit=False)
    plain_sd = hardware(plain, e_bits)
    reference_sd = hardware(reference, REFERENCE_EXPONENT_BITS)

    layers = []
    for name in names:
        trained, module = vit.get_submodule(name), tuned.get_submodule(name)
        sd = default_sd[name]
        thresholds = made.decompositions[name].thresholds
        entry = {"name": name, "shape": list(sd.shape), "threshold": made.thresholds[name],
                 "threshold_after_retries": float(thresholds.median()),
                 "block_rows": sd.header.block_rows, "blocks": sd.header.blocks,
                 "packed_words": sd.packed_words,
                 **layer_figures(sd, module.weight, module.bias, tuned_inputs[name]),
                 "recon_rel_error_vs_trained": _rel(sd.float_weight(), trained.weight)}
        for label, sds in (("plain", plain_sd), ("reference_default", reference_sd)):
            entry[label] = layer_figures(sds[name], trained.weight, trained.bias,
                                         trained_inputs[name], integer=False)
        layers.append(entry)

    def smartdeal_model(base, sds, source=None):
        weights = {name: int8_weight(base.get_submodule(name).weight)
                   for name, _ in int8_layers(base)}
        weights.update({name: sd.float_weight() for name, sd in sds.items()})
        return with_weights(base, weights, source=source)

    int8_model = with_weights(vit, {name: int8_weight(module.weight)
                                    for name, module in int8_layers(vit)})
    model_accuracy = {
        "float": _model_accuracy(vit, data),
        "int8": _model_accuracy(int8_model, data),
        "smartdeal": _model_accuracy(smartdeal_model(tuned, default_sd), data),
        "smartdeal_plain": _model_accuracy(smartdeal_model(vit, plain_sd), data),
        "reference_default": _model_accuracy(smartdeal_model(vit, reference_sd), data),
        "finetuned_float": _model_accuracy(tuned, data),
    }

    window = {}
    for label, decompositions in (("plain", plain), ("reference_default", reference)):
        window[label] = {}
        for bits in (2, 3, 4):
            for below in ("zero", "clamp"):
                pairs = [(quantize_decomposition(d, exponent_bits=bits, below=below)
                          .wide_weight(), d.weight()) for d in decompositions.values()]
                window[label][f"E{bits}_{below}"] = _pooled(pairs)
    basis_scale = {}
    for label, decompositions, bits in (("plain", plain, e_bits),
                                        ("reference_default", reference,
                                         REFERENCE_EXPONENT_BITS)):
        per_layer, per_block = [], []
        for d in decompositions.values():
            layer_scaled, block_scaled = _basis_scale_rebuilds(d, bits)
            per_layer.append((layer_scaled, d.weight()))
            per_block.append((block_scaled, d.weight()))
        basis_scale[label] = {"per_layer": _pooled(per_layer), "per_block": _pooled(per_block)}

    weights = sum(sd.header.outputs * sd.header.length for sd in default_sd.values())
    total_bits = sum(sd.packed_words * WORD_BITS for sd in default_sd.values())
    return {
        "images": len(data.test_labels), "vit_digest": made.record["vit_digest"],
        "digest": made.record["digest"], "config": made.record["config"],
        "default": "finetuned", "exponent_bits": e_bits, "kept_int8": ["embed"],
        "layers": layers,
        "total": {"weights": weights, "bits_per_weight": total_bits / weights,
                  "compression_vs_int8": 8 * weights / total_bits,
                  "compression_vs_float32": 32 * weights / total_bits,
                  "recon_rel_error": _pooled([(default_sd[n].float_weight(),
                                               tuned.get_submodule(n).weight) for n in names]),
                  "recon_rel_error_plain": _pooled([(plain_sd[n].float_weight(),
                                                     vit.get_submodule(n).weight)
                                                    for n in names])},
        "model_accuracy": model_accuracy,
        "formats": {"finetuned": _pooled_formats(list(default_sd.values())),
                    "reference_default": _pooled_formats(list(reference_sd.values()))},
        "window": window, "basis_scale": basis_scale,
        "finetune_seconds": made.record["finetune_seconds"],
    }


def bench_record(report):
    """The part of the report the benchmark writes (build/bench/smartdeal.json)."""
    keys = ("name", "shape", "bits_per_weight", "compression_vs_int8", "ce_sparsity",
            "recon_rel_error", "output_rel_error")
    return {"layers": [{key: layer[key] for key in keys} for layer in report["layers"]],
            "model_accuracy": {key: report["model_accuracy"][key]
                               for key in ("float", "int8", "smartdeal")}}


def format_report(report):
    """The report as a text table."""
    lines = [f"SmartDeal on the digits ViT {report['vit_digest']} (fine-tuned "
             f"{report['digest']}), {report['images']} test images, E = "
             f"{report['exponent_bits']}; embed kept int8",
             f"{'layer':20s} {'shape':>9s} {'bits/w':>6s} {'x int8':>6s} {'x fp32':>6s} "
             f"{'Ce 0s':>5s} {'recon':>6s} {'output':>6s} {'out int':>7s} | plain: "
             f"{'recon':>6s} {'output':>6s}"]
    for layer in report["layers"]:
        shape = "x".join(map(str, layer["shape"]))
        lines.append(
            f"{layer['name']:20s} {shape:>9s} {layer['bits_per_weight']:6.2f} "
            f"{layer['compression_vs_int8']:6.2f} {layer['compression_vs_float32']:6.2f} "
            f"{layer['ce_sparsity']:5.2f} {layer['recon_rel_error']:6.3f} "
            f"{layer['output_rel_error']:6.3f} {layer['output_rel_error_int']:7.3f} |        "
            f"{layer['plain']['recon_rel_error']:6.3f} {layer['plain']['output_rel_error']:6.3f}")
    total = report["total"]
    lines.append(f"{'all SmartDeal layers':30s} {total['bits_per_weight']:6.2f} "
                 f"{total['compression_vs_int8']:6.2f} {total['compression_vs_float32']:6.2f}")
    lines.append("test accuracy: " + ", ".join(f"{key} {value:.4f}" for key, value
                                              in report["model_accuracy"].items()))
    lines.append("storage formats, bits per weight (finetuned / reference default): " +
                 ", ".join(f"{name} {report['formats']['finetuned'][name]['bits_per_weight']:.2f}"
                           f"/{report['formats']['reference_default'][name]['bits_per_weight']:.2f}"
                           for name in report["formats"]["finetuned"]))
    return "\n".join(lines)


def main(argv=None):
    import argparse
    import json
    parser = argparse.ArgumentParser(prog="python -m celine.golden.smartdeal",
                                     description="The SmartDeal report on the digits ViT.")
    parser.add_argument("--json", action="store_true", help="print the whole report as JSON")
    args = parser.parse_args(argv)
    with contextlib.redirect_stdout(sys.stderr):        # training progress, apart
        report = smartdeal_report(progress=True)
    print(json.dumps(report, indent=1) if args.json else format_report(report))
