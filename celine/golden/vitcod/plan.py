"""What the host does to one head before the engine sees it (docs/vitcod.md): polarize the
mask for the engine's denser width, reorder K and V (global tokens first), build and check
the index lists, and choose the scales. `plan_head` is shared by the host runtime and the
tests, so that both compute the expected result from the same plan."""

import math
from dataclasses import dataclass

import torch

from ...engines.vitcod.spec import VitcodParams, csc_fields, csr_fields, pack_word
from .attention import HeadScales, check_mask, exp_scale, masked_softmax_attention, out_scale
from .mask import GLOBAL_THRESHOLD, check_index_lists, index_lists, polarize

__all__ = ["HeadPlan", "plan_head", "calibrate_head"]


@dataclass(frozen=True)
class HeadPlan:
    """One head, ready for the engine: q unchanged; k and v in the polarized key order;
    `kept` the polarized mask in that order; g global columns; the index lists and their
    buffer words."""
    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    kept: torch.Tensor
    order: torch.Tensor
    globals: int
    nnz: int
    csc_words: list
    csr_words: list


def plan_head(params, q, k, v, mask=None, *, threshold=GLOBAL_THRESHOLD):
    """The HeadPlan of integer q, k, v (N, d) and a kept mask (N, N; None: dense). Raises
    ValueError (with the reason) for a mask the engine cannot take: an empty row, or more
    sparse entries than `sparse_capacity` after the denser engine took `max_global` columns."""
    if not isinstance(params, VitcodParams):
        raise TypeError(f"params must be a VitcodParams, not {params!r}")
    tokens = q.shape[0]
    mask = torch.ones(tokens, tokens, dtype=torch.bool) if mask is None else mask
    mask = check_mask(mask, tokens)
    if params.max_global == 0:
        threshold = tokens                 # no denser engine: every column is sparse
    polar = polarize(mask, threshold=min(threshold, tokens), max_global=params.max_global)
    if polar.nnz_sparse > params.sparse_capacity:
        raise ValueError(f"mask must fit the engine: {polar.nnz_sparse} sparse entries after "
                         f"{polar.globals} global columns, capacity {params.sparse_capacity}")
    lists = index_lists(polar)
    check_index_lists(lists, tokens, polar.globals)
    csc = [pack_word(csc_fields(params), {"col": int(c), "row": int(r), "pos": int(p)})
           for c, r, p in zip(lists.csc_col, lists.csc_row, lists.csc_pos)]
    csr = [pack_word(csr_fields(params), {"row": int(r), "col": int(c)})
           for r, c in zip(lists.csr_row, lists.csr_col)]
    order = polar.order
    return HeadPlan(q=q, k=k[order], v=v[order], kept=polar.kept, order=order,
                    globals=polar.globals, nnz=polar.nnz_sparse, csc_words=csc, csr_words=csr)


def calibrate_head(plan, params, *, scales=(1.0, 1.0, 1.0), out_step=None):
    """(HeadScales, the output step) for a plan: the exponent scale from s_q·s_k/√d; the
    output step `out_step` or, by default, the float attention's largest magnitude over
    the top of the output range."""
    sq, sk, sv = scales
    exp_mult, exp_shift = exp_scale(sq * sk / math.sqrt(params.head_dim))
    if out_step is None:
        real = masked_softmax_attention(plan.q * sq, plan.k * sk, plan.v * sv, plan.kept)
        top = (1 << (params.operand_width - 1)) - 1
        out_step = max(float(real.abs().max()), sv) / top
    out_mult, out_shift = out_scale(sv, out_step, params)
    return HeadScales(exp_mult, exp_shift, out_mult, out_shift), out_step
