"""The ViTCoD engine's part in whole models (celine.models.ops): sparse softmax attention.

SPARSE_ATTENTION(q, k, v, masks, scales, autoencoders): the heads of one image (q, k, v
H x N x d int8 at the real steps `scales` = (s_q, s_k, s_v); masks H x N x N bool, True =
kept; autoencoders None or the layer's (Q's, K's) QuantizedAutoEncoders, whose input scale
is s_q and s_k). Returns (the H x N x d int64 outputs, each head's real output step). On
the device: `dev.vitcod.sparse_attention` (Q and K cross the link as the auto-encoders'
code heads and the engine decodes them). Golden: the same steps the host takes (encode_int
and decode_int of Q and K, then golden.vitcod.plan's plan_head and calibrate_head per
head, the output step chosen from the data) and attention_head_int.
"""

import torch

from ...firmware.tensors import attention_heads
from ...golden.vitcod.attention import attention_head_int
from ...golden.vitcod.autoencoder import decode_int, encode_int
from ...golden.vitcod.mask import GLOBAL_THRESHOLD
from ...golden.vitcod.plan import calibrate_head, plan_head
from ...models.ops import SPARSE_ATTENTION, EngineLayers, ModelOp
from .spec import VitcodParams

__all__ = ["LAYERS", "model_params"]


def model_params(needs):
    """An engine for a model's heads (all in one run), tokens and auto-encoder."""
    head_dim = needs["head_dim"]
    return VitcodParams(head_dim=head_dim, heads=needs["heads"], max_tokens=needs["tokens"],
                        dense_macs=min(8, head_dim), sparse_macs=min(24, head_dim),
                        autoencoder=needs.get("autoencoder", False))


def _check(params, q, k, v, masks, scales, autoencoders):
    attention_heads(q, k, v, head_dim=params.head_dim, max_tokens=params.max_tokens,
                    heads=params.heads, operand_width=params.operand_width)


def _golden(params, q, k, v, masks, scales, autoencoders):
    if autoencoders is not None:
        q, k = (decode_int(qae, encode_int(qae, x[None]))[0]
                for qae, x in zip(autoencoders, (q, k)))
    outs, steps = [], []
    for h in range(q.shape[0]):
        plan = plan_head(params, q[h], k[h], v[h], masks[h], threshold=GLOBAL_THRESHOLD)
        head_scales, step = calibrate_head(plan, params, scales=scales)
        outs.append(attention_head_int(plan.q, plan.k, plan.v, plan.kept, head_scales, params))
        steps.append(step)
    return torch.stack(outs), tuple(steps)


def _device(device, q, k, v, masks, scales, autoencoders):
    host = device.vitcod
    outs = host.sparse_attention(q, k, v, masks, scales=scales, threshold=GLOBAL_THRESHOLD,
                                 autoencoder=autoencoders)
    return torch.stack(outs), tuple(host.last_output_scales)


LAYERS = EngineLayers(ops={SPARSE_ATTENTION: ModelOp(golden=_golden, device=_device,
                                                     check=_check)},
                      params=model_params)
