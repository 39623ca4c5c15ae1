"""SmartDeal (SmartExchange) weights: the host-side decomposition W ~ Ce B, its hardware
form and packed storage format, bit-exact integer models of the SD decoder and SD linear
layer, and the report on the digits ViT. docs/smartdeal.md describes all of it.

Modules: decomposition (the reference's algorithm, float), format (the packed format: every
field width and code, pack/unpack; dependency-free), hardware (int8 B, Ce codes in the
exponent window), integer (rebuild_int, linear_int, linear_bitop_int), finetune (the digits
ViT fine-tuned with the decomposition in the loop, cached), report (the figures).

The names below are imported on first use, so that `celine.golden.smartdeal.format` can be
used without torch.
"""

import importlib

_EXPORTS = {
    "decompose": "decomposition", "Decomposition": "decomposition",
    "weight_layout": "decomposition",
    "reference_block_rows": "decomposition",
    "pack": "format", "unpack": "format", "LayerHeader": "format", "FormatError": "format",
    "SmartDealWeights": "hardware", "quantize_decomposition": "hardware",
    "rebuild_int": "integer", "weights_int8": "integer", "linear_int": "integer",
    "linear_bitop_int": "integer", "output_requantizer": "integer",
    "FinetuneConfig": "finetune", "smartdeal_vit": "finetune",
    "smartdeal_report": "report", "bench_record": "report",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
