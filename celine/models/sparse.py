"""The ViTCoD variant: fixed sparse attention masks and the Q/K auto-encoder, trained.

As ViTCoD does: the trained softmax model's attention maps, averaged over the training
images, give each layer a fixed mask (golden.vitcod.mask.mask_for_sparsity: each row keeps
its most probable entries up to a cut-off chosen for the layer's target sparsity; the CLS
row and column stay); the model then runs softmax over the kept entries only
(DigitsViT.set_masks). The Q/K auto-encoders (golden.vitcod.autoencoder: per layer, for Q
and for K, an encoder from the heads to ceil(heads/2) code heads and a decoder back) are
fitted to the masked model's Q and K, then the model and the auto-encoders are fine-tuned
together (golden.vitcod.autoencoder.finetune: cross-entropy plus the reconstruction error)
with the masks in place. Deterministic; cached as build/models/digits_vit_vitcod-<hash>.pt.
"""

import copy
import dataclasses
import hashlib
import json
import time

import torch

from ..golden.digits_vit import (DigitsViT, accuracy, attention_maps, cached, digits_dataset,
                                 one_thread)
from ..golden.vitcod.autoencoder import (AutoEncoder, FinetuneConfig, _float_path,
                                         fit_autoencoders, finetune)
from ..golden.vitcod.mask import mask_for_sparsity, sparsity

__all__ = ["SparseConfig", "sparse_vit"]

SPARSE_FORMAT = 1          # bump when the cache's layout or the training code changes


@dataclasses.dataclass(frozen=True)
class SparseConfig:
    """sparsity: each layer's mask's target (the fraction of attention entries pruned);
    finetune: the auto-encoders' and the model's fine-tuning (golden.vitcod's
    FinetuneConfig)."""
    sparsity: float = 0.92
    finetune: FinetuneConfig = FinetuneConfig()

    def __post_init__(self):
        if isinstance(self.sparsity, bool) or not isinstance(self.sparsity, (int, float)) \
                or not 0 <= self.sparsity < 1:
            raise ValueError(f"sparsity must be a number in [0, 1), not {self.sparsity!r}")
        if not isinstance(self.finetune, FinetuneConfig):
            raise TypeError(f"finetune must be a golden.vitcod.autoencoder.FinetuneConfig, "
                            f"not {self.finetune!r}")

    def digest(self, base_digest):
        text = json.dumps([SPARSE_FORMAT, base_digest, self.sparsity,
                           dataclasses.asdict(self.finetune)], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def _masks(model, config, data):
    maps = attention_maps(model, data.train_images)          # (layers, heads, N, N)
    return [mask_for_sparsity(maps[layer], config.sparsity) for layer in range(len(maps))]


def _aes(states, layers, heads):
    aes = {}
    for layer in range(layers):
        pair = []
        for i in range(2):
            ae = AutoEncoder(heads)
            ae.load_state_dict(states[f"{layer}.{i}"])
            pair.append(ae.eval())
        aes[layer] = tuple(pair)
    return aes


@one_thread()
def sparse_vit(base, base_record, config, *, progress=True):
    """(model with its masks set, {layer: (ae_q, ae_k)} float auto-encoders, record) for the
    trained softmax model `base` (and its training record) and `config`; cached."""
    digest = config.digest(base_record["digest"])
    c = base.config

    def make():
        data = digits_dataset()
        start = time.perf_counter()
        masks = _masks(base, config, data)
        masked = copy.deepcopy(base).set_masks(masks).eval()
        masked_accuracy = accuracy(masked, data.test_images, data.test_labels)
        initial = fit_autoencoders(masked, data.train_images,
                                   epochs=config.finetune.ae_epochs, seed=config.finetune.seed)
        model, aes, _ = finetune(masked, initial, config.finetune, data, progress=progress)
        record = {"config": {"sparsity": config.sparsity,
                             "finetune": dataclasses.asdict(config.finetune)},
                  "base": base_record["digest"], "digest": digest,
                  "sparsity": [round(float(sparsity(mask)), 4) for mask in masks],
                  "masked_test_accuracy": masked_accuracy,
                  "test_accuracy_without_ae": accuracy(model, data.test_images,
                                                       data.test_labels),
                  "test_accuracy": accuracy(model, data.test_images, data.test_labels,
                                            _float_path(aes)),
                  "train_seconds": time.perf_counter() - start}
        return {"record": record, "model": model.state_dict(), "masks": torch.stack(masks),
                "aes": {f"{layer}.{i}": ae.state_dict()
                        for layer, pair in aes.items() for i, ae in enumerate(pair)}}

    saved = cached("digits_vit_vitcod", digest, make)
    model = DigitsViT(c)
    model.load_state_dict(saved["model"])
    model.set_masks(list(saved["masks"]))
    return model.eval(), _aes(saved["aes"], c.depth, c.heads), saved["record"]
