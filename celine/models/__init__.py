"""Whole models on Celine's engines (docs/models.md): the digits ViT family and its
variants (variants), its integer model (integer), the engine operations it needs (ops) and
running it on devices (offload)."""

from .integer import QuantizedViT, quantize_model
from .offload import OffloadedViT, offload, open_devices
from .variants import VARIANTS, Variant

__all__ = ["offload", "open_devices", "quantize_model", "QuantizedViT", "OffloadedViT",
           "VARIANTS", "Variant"]
