"""The model family Celine runs whole, and its named variants.

Every variant is the digits ViT (celine.golden.digits_vit) at one configuration: one
token per pixel (64 patch tokens + CLS = 65 tokens), each token embedded from the 3 x 3
window around its pixel (an overlapping patch embedding), embedding 32, 2 heads of
head_dim 16, 2 pre-norm blocks, MLP ratio 2, trained for 100 epochs on the fixed digits
split (well under a minute on two CPU cores, cached under build/models/).

- softmax: softmax attention, the baseline;
- taylor: ViTALiTy's first-order Taylor attention, trained in the loop.
"""

import dataclasses
from dataclasses import dataclass

from ..golden.digits_vit import DigitsViTConfig, trained_vit_record

__all__ = ["Variant", "VARIANTS", "FAMILY", "get"]

FAMILY = {"patch": 1, "kernel": 3, "dim": 32, "heads": 2, "depth": 2, "mlp_ratio": 2,
          "epochs": 100}


@dataclass(frozen=True)
class Variant:
    """name; attention ("softmax", "taylor"); weights (their format on the engines);
    precision (bits of the linear layers' operands); config (the model's DigitsViTConfig)."""
    name: str
    attention: str
    weights: str
    precision: int
    config: DigitsViTConfig

    def trained(self, *, progress=True):
        """(model, record): the trained float model (cached) and its training record."""
        return trained_vit_record(self.config, progress=progress)

    def describe(self):
        return {"name": self.name, "attention": self.attention, "weights": self.weights,
                "precision": self.precision, "params": dataclasses.asdict(self.config)}


VARIANTS = {v.name: v for v in (
    Variant("softmax", "softmax", "int8", 8, DigitsViTConfig(**FAMILY)),
    Variant("taylor", "taylor", "int8", 8, DigitsViTConfig(**FAMILY, attention="taylor")),
)}


def get(name):
    """The variant called `name`; ValueError naming the known ones otherwise."""
    try:
        return VARIANTS[name]
    except (KeyError, TypeError):
        raise ValueError(f"model must be one of {', '.join(VARIANTS)}, not {name!r}") from None
