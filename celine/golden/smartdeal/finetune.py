"""The digits ViT with SmartDeal weights: which layers, the plain decomposition, and the
fine-tuning with the decomposition in the loop (cached under build/models).

Layers. Every nn.Linear of the digits ViT (celine.golden.digits_vit) is decomposed except
the patch embedding `embed`: it is a 2x2 convolution (4 inputs per output), a kernel size
the reference does not decompose (it handles 1x1 and 3x3 only), and its rows of 4 weights
(two rows of 3 after padding) would need 9 B values each: it stays int8.

Fine-tuning, as SmartDeal trains (the reference's SELinear): each decomposed layer becomes
an `SDLinear` whose weight is rebuilt from trainable coefficients C and bases B; the zero
pattern of Ce (the mask) is fixed by the initial decomposition. The forward pass rounds as
the hardware form does, with straight-through gradients: C to signed powers of two inside
the layer's exponent window of 2^E exponents under its largest (`window_pow2`), B to int8
with one scale per layer, the rebuilt weight to int8 with the scale max|W| / 127 (the
hardware's requantizer M_w / 2^S_w differs from it only by the rounding of M_w). Every
other parameter of the ViT trains too. AdamW (no weight decay; C and B at learning rates
scaled to their size, `_parameter_groups`), cosine-annealed learning rate, shift-augmented
batches; deterministic (digits_vit.deterministic).
"""

import copy
import dataclasses
import hashlib
import json
import math
import time

import torch
from torch import nn

from ...spec.checks import check_int
from ..activation import check_scale
from ..digits_vit import (DigitsViT, DigitsViTConfig, accuracy, classification_loss, deterministic,
                          digits_dataset, one_thread, trained_vit_record, training_batches)
from .decomposition import (DECAY, ITERATIONS, THRESHOLD, Decomposition, decompose,
                            pow2_exponents, weight_layout)
from .format import MAX_EXPONENT
from .hardware import EXPONENT_BITS, quantize_decomposition

KEPT_INT8 = ("embed",)      # the layers that are not decomposed (module docstring)
FINETUNE_FORMAT = 1         # bump when the cache's layout or the training code changes
INT8_HI = 127


def decomposed_layers(model):
    """[(name, nn.Linear)] of the layers SmartDeal replaces, in model order."""
    return [(name, module) for name, module in model.named_modules()
            if isinstance(module, nn.Linear) and name not in KEPT_INT8]


def int8_layers(model):
    """[(name, nn.Linear)] of every linear layer (the int8 baseline quantizes them all)."""
    return [(name, module) for name, module in model.named_modules()
            if isinstance(module, nn.Linear)]


# -- straight-through numerics ---------------------------------------------------------------

def _straight_through(x, rounded):
    return x + (rounded - x).detach()


def window_pow2(coefficients, exponent_bits):
    """C rounded to sign * 2^k (decomposition.pow2's rule), k clamped to the window
    [top - 2^E + 1, top], top the largest exponent of the tensor (no clipping above: the
    window is relative, as `hardware.window` makes it); zeros stay zero. Float, no grad."""
    with torch.no_grad():
        signs, k = pow2_exponents(coefficients.detach().double(), 1 << 30)
        nonzero = signs != 0
        top = int(k[nonzero].max()) if bool(nonzero.any()) else 0
        k = k.clamp(min=top - (1 << exponent_bits) + 1)
        return (signs * torch.ldexp(torch.ones_like(k, dtype=torch.float64), k)) \
            .to(coefficients.dtype)


def fake_int8(x):
    """x rounded to int8 with the per-tensor scale max|x| / 127 (round half up), as a real
    value; straight-through."""
    with torch.no_grad():
        peak = float(x.detach().abs().max())
        scale = peak / INT8_HI if peak > 0 else 1.0
        rounded = torch.floor(x.detach() / scale + 0.5).clamp(-INT8_HI, INT8_HI) * scale
    return _straight_through(x, rounded)


class SDLinear(nn.Module):
    """A linear layer whose weight is rebuilt from (C, B) with the hardware's rounding
    (module docstring); `mask` (Ce != 0) is fixed."""

    def __init__(self, linear, decomposition, exponent_bits):
        super().__init__()
        self.layout = decomposition.layout
        self.exponent_bits = exponent_bits
        self.coefficients = nn.Parameter(decomposition.ce.to(torch.float32))
        self.basis = nn.Parameter(decomposition.basis.to(torch.float32))
        self.register_buffer("mask", (decomposition.ce != 0).to(torch.float32))
        self.bias = nn.Parameter(linear.bias.detach().clone())

    def quantized_coefficients(self):
        return _straight_through(self.coefficients,
                                 window_pow2(self.coefficients * self.mask, self.exponent_bits))

    def weight(self):
        blocks = self.quantized_coefficients() @ fake_int8(self.basis)
        return fake_int8(self.layout.from_blocks(blocks))

    def forward(self, x):
        return nn.functional.linear(x, self.weight(), self.bias)

    def decomposition(self, template):
        """The Decomposition this layer computes (Ce in the window, the trained B), with
        the settings of `template`; its target is its own product Ce B."""
        with torch.no_grad():
            ce = window_pow2(self.coefficients * self.mask, self.exponent_bits).double()
            basis = self.basis.detach().double()
            # C may have grown past 2^MAX_EXPONENT in training (the loop's window is
            # relative): shift the largest exponent back to MAX_EXPONENT, exactly.
            _, exponent = torch.frexp(ce.abs().max())
            shift = MAX_EXPONENT - (int(exponent) - 1) if bool((ce != 0).any()) else 0
            ce = torch.ldexp(ce, torch.tensor(shift))
            basis = torch.ldexp(basis, torch.tensor(-shift))
        return dataclasses.replace(template, target=ce @ basis, ce=ce, basis=basis)


# -- configuration and cache -------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """How the SmartDeal weights of the digits ViT are made; all validated.

    bits_per_weight: each layer's threshold is the smallest that packs it into at most
    this many bits per weight (`threshold_for_budget`; 3.6: 2.22x against int8); when
    None, every layer uses `threshold`. The threshold sets Ce's sparsity, hence the bits
    per weight: the reference's default 1e-3 keeps ~99% of Ce and cannot reach 2x against
    int8 here. exponent_bits: the window's E; epochs, batch_size, lr, seed: the
    fine-tuning (module docstring). Why these values: docs/smartdeal.md, "The digits ViT".
    """
    threshold: float = 0.08
    bits_per_weight: float | None = 3.6
    exponent_bits: int = EXPONENT_BITS
    epochs: int = 30
    batch_size: int = 64
    lr: float = 2e-3
    seed: int = 0

    def __post_init__(self):
        check_scale("threshold", self.threshold)
        if self.bits_per_weight is not None:
            check_scale("bits_per_weight", self.bits_per_weight)
        if isinstance(self.exponent_bits, bool) or self.exponent_bits not in (2, 3, 4):
            raise ValueError(f"exponent_bits must be 2 or 3 or 4, not {self.exponent_bits!r}")
        check_int("epochs", self.epochs, minimum=0)
        check_int("batch_size", self.batch_size, minimum=1)
        check_scale("lr", self.lr)
        check_int("seed", self.seed, minimum=0)

    def digest(self, vit_config):
        """The cache key: this configuration, the ViT's and the cache format."""
        text = json.dumps([FINETUNE_FORMAT, vit_config.digest, dataclasses.asdict(self)],
                          sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def threshold_for_budget(weight, bits_per_weight, exponent_bits=EXPONENT_BITS, *,
                         low=THRESHOLD, high=1.0, steps=12):
    """The smallest threshold found (bisection on a log scale between `low` and `high`,
    `steps` halvings) at which the decomposition of `weight`, in hardware form with
    `exponent_bits`, packs into at most `bits_per_weight` bits per weight; `high` if none.
    Deterministic."""
    def fits(threshold):
        sd = quantize_decomposition(decompose(weight, threshold=threshold),
                                    exponent_bits=exponent_bits)
        return sd.bits_per_weight <= bits_per_weight

    if fits(low):
        return low
    best = high
    lo, hi = math.log(low), math.log(high)
    for _ in range(steps):
        middle = (lo + hi) / 2
        if fits(math.exp(middle)):
            best, hi = math.exp(middle), middle
        else:
            lo = middle
    return best


def layer_thresholds(model, config):
    """{name: threshold} of every decomposed layer: config.threshold, or, when
    config.bits_per_weight is set, `threshold_for_budget` of the layer."""
    if config.bits_per_weight is None:
        return {name: config.threshold for name, _ in decomposed_layers(model)}
    return {name: threshold_for_budget(linear.weight, config.bits_per_weight,
                                       config.exponent_bits)
            for name, linear in decomposed_layers(model)}


def decompose_model(model, thresholds, **options):
    """{name: Decomposition} of every decomposed layer of `model` at its threshold
    ({name: threshold}, or one number for all), decompose's defaults otherwise."""
    if not isinstance(thresholds, dict):
        thresholds = {name: thresholds for name, _ in decomposed_layers(model)}
    return {name: decompose(linear.weight, threshold=thresholds[name], **options)
            for name, linear in decomposed_layers(model)}


def _replace(model, name, module):
    parent, _, leaf = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)


def _parameter_groups(model, lr):
    """AdamW groups: each SDLinear's C and B at lr * rms(parameter) / rms(its weight), the
    rest at lr. Adam's steps are about lr in absolute size whatever the parameter's scale,
    and C and B of a layer carry scales 2^d and 2^-d; this gives C and B steps of the same
    size relative to their values as the ViT's own weights get."""
    groups, special = [], set()
    for module in model.modules():
        if isinstance(module, SDLinear):
            with torch.no_grad():
                weight_rms = float(module.weight().pow(2).mean().sqrt()) or 1.0
            for parameter in (module.coefficients, module.basis):
                rms = float(parameter.detach().pow(2).mean().sqrt()) or weight_rms
                groups.append({"params": [parameter], "lr": lr * rms / weight_rms})
                special.add(id(parameter))
    groups.append({"params": [p for p in model.parameters() if id(p) not in special], "lr": lr})
    return groups


def finetune(vit, config, data, *, thresholds=None, progress=False):
    """(model, {name: Decomposition}, seconds): a copy of `vit` fine-tuned with its layers'
    decompositions in the loop (module docstring), starting from their decompositions at
    `thresholds` ({name: threshold}, default `layer_thresholds(vit, config)`) in hardware
    form; the model in eval mode, with SDLinear layers."""
    start = time.perf_counter()
    thresholds = layer_thresholds(vit, config) if thresholds is None else thresholds
    initial = decompose_model(vit, thresholds)
    with deterministic(config.seed), torch.enable_grad():
        model = copy.deepcopy(vit)
        for name, linear in decomposed_layers(vit):
            sd = quantize_decomposition(initial[name], exponent_bits=config.exponent_bits)
            e_min = sd.header.min_exponent
            start_point = dataclasses.replace(
                initial[name], ce=torch.ldexp(sd.ce.double(), torch.tensor(e_min)),
                basis=sd.basis.double() * math.ldexp(sd.unit, -e_min))
            _replace(model, name, SDLinear(linear, start_point, config.exponent_bits))
        optimizer = torch.optim.AdamW(_parameter_groups(model, config.lr), weight_decay=0.0)
        generator = torch.Generator().manual_seed(config.seed)
        steps = max(1, config.epochs * math.ceil(len(data.train_labels) / config.batch_size))
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
        for epoch in range(config.epochs):
            model.train()
            for images, labels in training_batches(data, config.batch_size, generator):
                loss = classification_loss(model(images), labels)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
            if progress:
                test = accuracy(model, data.test_images, data.test_labels)
                print(f"SmartDeal fine-tune epoch {epoch + 1:3d}/{config.epochs}  test accuracy "
                      f"{test:.4f}  ({time.perf_counter() - start:.1f} s)", flush=True)
        model.eval()
    decompositions = {name: model.get_submodule(name).decomposition(initial[name])
                      for name, _ in decomposed_layers(vit)}
    return model, decompositions, time.perf_counter() - start


def finetune_cache_path(vit_config, config):
    from ...sim.emit import build_root
    return build_root() / "models" / f"digits_vit_sd-{config.digest(vit_config)}.pt"


def with_weights(vit, weights, *, source=None):
    """A copy of `vit` (eval mode) whose layers {name: weight} take those weights (float32);
    every other parameter and buffer from `source` (a module of the same architecture whose
    SmartDeal layers may be SDLinear) when given."""
    model = copy.deepcopy(vit)
    if source is not None:      # an SDLinear's bias is "<name>.bias" too; C, B, mask are not
        own = model.state_dict()
        model.load_state_dict({key: value for key, value in source.state_dict().items()
                               if key in own}, strict=False)
    for name, weight in weights.items():
        model.get_submodule(name).weight.data = torch.as_tensor(weight).to(torch.float32)
    return model.eval()


@dataclasses.dataclass(frozen=True)
class SmartDealViT:
    """What `smartdeal_vit` returns: the trained ViT (`vit`); the fine-tuned ViT (`model`,
    plain nn.Linear layers whose weights are the float products Ce B); its decompositions
    {name: Decomposition}; the decompositions' thresholds {name: threshold} (the initial,
    plain decomposition's); the record."""
    vit: nn.Module
    model: nn.Module
    decompositions: dict
    thresholds: dict
    record: dict


@one_thread()
def smartdeal_vit(vit_config=None, config=None, *, data=None, progress=False):
    """SmartDealViT for `vit_config` (default DigitsViTConfig()) and `config` (default
    FinetuneConfig()): from build/models/digits_vit_sd-<hash of both>.pt, or made now (the
    ViT from its own cache) and cached.

    record: vit_config, vit_digest, config, digest, vit_test_accuracy, test_accuracy (the
    fine-tuned model with the loop's numerics), finetune_seconds.
    """
    vit_config = DigitsViTConfig() if vit_config is None else vit_config
    config = FinetuneConfig() if config is None else config
    if not isinstance(vit_config, DigitsViTConfig):
        raise TypeError(f"vit_config must be a DigitsViTConfig, not {vit_config!r}")
    if not isinstance(config, FinetuneConfig):
        raise TypeError(f"config must be a FinetuneConfig, not {config!r}")
    vit, vit_record = trained_vit_record(vit_config, progress=progress)
    digest = config.digest(vit_config)
    path = finetune_cache_path(vit_config, config)
    from ...sim.emit import locked
    # One worker makes the entry, the others wait and load it.
    with locked(path.with_suffix(".lock")):
        if path.exists():
            saved = torch.load(path, weights_only=True)
            if saved["digest"] == digest:
                model = DigitsViT(vit_config)
                model.load_state_dict(saved["model"])
                layers = saved["layers"]
                return SmartDealViT(vit, model.eval(),
                                    {name: _decomposition(layer) for name, layer in layers.items()},
                                    {name: layer["threshold"] for name, layer in layers.items()},
                                    saved["record"])
        data = digits_dataset() if data is None else data
        thresholds = layer_thresholds(vit, config)
        tuned, decompositions, seconds = finetune(vit, config, data, thresholds=thresholds,
                                                  progress=progress)
        model = with_weights(vit, {name: d.reconstruct() for name, d in decompositions.items()},
                             source=tuned)
        record = {"vit_config": dataclasses.asdict(vit_config), "vit_digest": vit_config.digest,
                  "config": dataclasses.asdict(config), "digest": digest,
                  "vit_test_accuracy": vit_record["test_accuracy"],
                  "test_accuracy": accuracy(tuned, data.test_images, data.test_labels),
                  "finetune_seconds": seconds}
        layers = {name: {"shape": list(d.shape), "threshold": thresholds[name], "ce": d.ce,
                         "basis": d.basis, "thresholds": d.thresholds,
                         "iterations_run": d.iterations_run, "errors": d.errors}
                  for name, d in decompositions.items()}
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".tmp")
        torch.save({"digest": digest, "record": record, "model": model.state_dict(),
                    "layers": layers}, partial)
        partial.replace(path)
        return SmartDealViT(vit, model, decompositions, thresholds, record)


def _decomposition(layer):
    """A cached layer's Decomposition (its target is its own product Ce B)."""
    ce, basis = layer["ce"], layer["basis"]
    return Decomposition(weight_layout(tuple(layer["shape"])), ce @ basis, ce, basis,
                         layer["thresholds"], layer["iterations_run"], layer["errors"],
                         ITERATIONS, layer["threshold"], DECAY, MAX_EXPONENT)
