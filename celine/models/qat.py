"""Quantization-aware fine-tuning: the 4-bit and the switchable-precision variants.

The MAC array runs a product at precision p < 8 on p-bit operands it derives from the
int8 values it is given: round_half_up(x / 2^(8-p)) saturated to p bits
(golden.quant.reduce_precision), both for the activations and for the weights. The
integer model quantizes a linear layer's input to int8 with its calibrated scale s and
its weights to int8 with one scale per output channel, so at precision p an operand
stands for reduce_precision(round(x / s), p) * 2^(8-p) * s.

`QATOps` is the float model with exactly that rounding on every linear layer's input and
weights (straight-through gradients; the activation scale is the batch's largest
magnitude / 127, the weights' their rows'), so that training sees what the engine will
compute. Attention's own products stay float (they run at 8 bits in the integer model).

`finetune` starts from a trained float variant and trains it for `epochs` more epochs with
the sum of the losses at every precision of `precisions`: one precision gives a model for
that precision; several give one set of weights that runs at any of them (InstantNet's
switchable precision, here with the plain sum of the losses). Deterministic, cached as
build/models/digits_vit_qat-<hash>.pt.
"""

import dataclasses
import hashlib
import json
import math
import time

import torch
from torch import nn

from ..golden.activation import check_scale
from ..golden.digits_vit import (DigitsViT, accuracy, cached, classification_loss,
                                 deterministic, digits_dataset, training_batches)
from ..spec.checks import check_int, check_int_tuple
from .integer import PEAK, FloatOps, forward

__all__ = ["QATOps", "QATConfig", "finetune", "fake_operand"]

QAT_FORMAT = 1          # bump when the cache's layout or the training code changes


def _straight_through(x, rounded):
    return x + (rounded - x).detach()


def fake_operand(x, step, precision):
    """The real value of the p-bit operand the engine derives from x quantized to int8 with
    `step` (a float or a tensor broadcast against x), with straight-through gradients."""
    int8 = torch.clamp(torch.floor(x / step + 0.5), -128, 127)
    if precision < 8:
        shift = 8 - precision
        top = (1 << (precision - 1)) - 1
        reduced = torch.clamp(torch.floor(int8 / 2 ** shift + 0.5), -top - 1, top)
        int8 = reduced * 2 ** shift
    return _straight_through(x, int8 * step)


class QATOps(FloatOps):
    """The float model with the engine's operand rounding at `precision` on every linear
    layer (see the module docstring)."""

    def __init__(self, precision):
        super().__init__()
        self.precision = precision

    def linear(self, name, x, layer):
        step = x.detach().abs().max().clamp(min=1e-12) / PEAK
        w_step = layer.weight.detach().abs().amax(dim=1, keepdim=True).clamp(min=1e-12) / PEAK
        return nn.functional.linear(fake_operand(x, step, self.precision),
                                    fake_operand(layer.weight, w_step, self.precision),
                                    layer.bias)


@dataclasses.dataclass(frozen=True)
class QATConfig:
    """precisions: the precisions whose losses are summed; epochs, lr (AdamW, cosine
    annealed, no weight decay), batch_size, seed."""
    precisions: tuple = (4,)
    epochs: int = 40
    lr: float = 5e-4
    batch_size: int = 64
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "precisions", tuple(sorted(
            check_int_tuple("precisions", self.precisions, allowed=(2, 4, 8)), reverse=True)))
        check_int("epochs", self.epochs, minimum=1)
        check_scale("lr", self.lr)
        check_int("batch_size", self.batch_size, minimum=1)
        check_int("seed", self.seed, minimum=0)

    def digest(self, base_digest):
        text = json.dumps([QAT_FORMAT, base_digest, dataclasses.asdict(self)], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _qat_accuracy(model, data, precision):
    with torch.no_grad():
        model.eval()
        logits = forward(model, data.test_images, QATOps(precision))
    return float((logits.argmax(-1) == data.test_labels).float().mean())


def _train(base, config, data, progress):
    model = DigitsViT(base.config)
    model.load_state_dict(base.state_dict())
    start = time.perf_counter()
    with deterministic(config.seed), torch.enable_grad():
        generator = torch.Generator().manual_seed(config.seed)
        optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.0)
        steps = config.epochs * math.ceil(len(data.train_labels) / config.batch_size)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
        for epoch in range(config.epochs):
            model.train()
            for images, labels in training_batches(data, config.batch_size, generator):
                loss = sum(classification_loss(forward(model, images, QATOps(p)), labels)
                           for p in config.precisions)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                schedule.step()
            if progress:
                figures = ", ".join(f"{p}-bit {_qat_accuracy(model, data, p):.4f}"
                                    for p in config.precisions)
                print(f"qat epoch {epoch + 1:3d}/{config.epochs}  test accuracy {figures}  "
                      f"({time.perf_counter() - start:.1f} s)", flush=True)
        model.eval()
        record = {"float_test_accuracy": accuracy(model, data.test_images, data.test_labels),
                  "qat_test_accuracy": {str(p): _qat_accuracy(model, data, p)
                                        for p in config.precisions},
                  "train_seconds": time.perf_counter() - start}
    return model, record


def finetune(base, base_record, config, *, progress=True):
    """(model, record): `base` (a trained DigitsViT, its training record) fine-tuned with
    `config` (a QATConfig), from the cache or trained now."""
    digest = config.digest(base_record["digest"])

    def make():
        model, record = _train(base, config, digits_dataset(), progress)
        return {"record": {"config": dataclasses.asdict(config), "base": base_record["digest"],
                           "digest": digest, **record},
                "state_dict": model.state_dict()}

    saved = cached("digits_vit_qat", digest, make)
    model = DigitsViT(base.config)
    model.load_state_dict(saved["state_dict"])
    return model.eval(), saved["record"]
