"""The Taylor engine's part in whole models (celine.models.ops): ViTALiTy attention.

TAYLOR_ATTENTION(q, k, v, registers): the heads of one image, H x N x d int8 each, with the
registers the model chose (golden.taylor.calibrate), on the device (`dev.taylor.attention`
with those registers) or in its golden model (golden.taylor.taylor_int).
"""

import torch

from ...firmware.tensors import attention_heads
from ...golden.taylor import taylor_int
from ...models.ops import TAYLOR_ATTENTION, EngineLayers, ModelOp
from .spec import TaylorParams

__all__ = ["LAYERS", "model_params"]


def model_params(needs):
    """An engine for a model's heads: its head_dim, all its heads in one run, and room
    for its tokens (the next power of two)."""
    tokens = needs["tokens"]
    return TaylorParams(head_dim=needs["head_dim"], heads=needs["heads"],
                        max_tokens=1 << max(0, tokens - 1).bit_length())


def _check(params, q, k, v, registers):
    attention_heads(q, k, v, head_dim=params.head_dim, max_tokens=params.max_tokens,
                    heads=params.heads, operand_width=params.operand_width)


def _golden(params, q, k, v, registers):
    return torch.stack(taylor_int(q, k, v, registers, width=params.operand_width,
                                  max_tokens=params.max_tokens))


def _device(device, q, k, v, registers):
    return torch.stack(device.taylor.attention(q, k, v, registers=registers))


LAYERS = EngineLayers(ops={TAYLOR_ATTENTION: ModelOp(golden=_golden, device=_device,
                                                     check=_check)},
                      params=model_params)
