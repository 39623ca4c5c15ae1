"""Softmax attention over a fixed mask: in float, and bit for bit as the ViTCoD engine
computes it (docs/vitcod.md, "The integer arithmetic").

A mask here is a bool (N, N) tensor, True = kept (rows: queries, columns: keys); the
engine's mask is the polarized one (celine.golden.vitcod.mask.polarize), whose global
columns are kept whole. Integer results depend only on the set of kept entries, never on
an order of summation (every sum is exact), so these functions take the mask in the
tokens' own order; the engine's reordering of keys does not change them.

The integer softmax of one row i over its kept scores s_ij:
    m  = max_j s_ij
    x  = min(m - s_ij, 2^X_BITS - 1)
    z  = (x * exp_mult) >> exp_shift                 (units of 2^-EXP_FRAC_BITS)
    e  = (HI[a] * LO[b] + 2^(15 + n)) >> (16 + n)    n = z >> 12, a, b = z's fraction halves
    S  = sum_j e_ij                                  (>= 2^16: the maximum's own e)
    r  = (2^R + S // 2) // S
    p  = min((e * r + 2^(R - F - 1)) >> (R - F), 2^F)
then o_i = sum_j p_ij v_j and y = requantize(o, out_mult, out_shift).
"""

import math
from dataclasses import dataclass

import torch

from ...engines.vitcod.spec import (E_BITS, EXP_FRAC_BITS, EXP_HI_TABLE, EXP_LO_TABLE,
                                    EXP_TABLE_BITS, X_BITS, VitcodParams)
from ...spec.numerics import MULT_BITS, SHIFT_BITS
from ..quant import mult_shift, requantize, signed_range

__all__ = ["masked_softmax_attention", "exp_int", "softmax_int", "SoftmaxTrace", "HeadScales",
           "attention_head_int", "exp_scale", "out_scale", "softmax_error", "check_mask"]

MULT_MAX = (1 << MULT_BITS) - 1
SHIFT_MAX = (1 << SHIFT_BITS) - 1
_HI = torch.tensor(EXP_HI_TABLE, dtype=torch.int64)
_LO = torch.tensor(EXP_LO_TABLE, dtype=torch.int64)
_HALF = (1 << EXP_TABLE_BITS) - 1


def check_mask(kept, tokens):
    """`kept` as a bool (tokens, tokens) tensor in which every row keeps an entry."""
    kept = torch.as_tensor(kept)
    if kept.dtype != torch.bool or kept.shape != (tokens, tokens):
        raise ValueError(f"mask must be a bool tensor of shape ({tokens}, {tokens}), "
                         f"not {kept.dtype} {tuple(kept.shape)}")
    empty = (~kept.any(dim=-1)).nonzero().flatten()
    if len(empty):
        raise ValueError(f"mask must keep at least one entry in every row, not none in row "
                         f"{int(empty[0])}")
    return kept


# -- float ------------------------------------------------------------------------------


def masked_softmax_attention(q, k, v, kept, scale=None):
    """softmax over the kept entries of q kᵀ · scale (default 1/√d), times v, in float64.
    q, k, v: (..., N, d); kept: (N, N) or broadcastable, True = kept."""
    q, k, v = (torch.as_tensor(x, dtype=torch.float64) for x in (q, k, v))
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = (q @ k.transpose(-2, -1)) * scale
    scores = scores.masked_fill(~torch.as_tensor(kept, dtype=torch.bool), float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


# -- the integer softmax ------------------------------------------------------------------


def exp_int(x, exp_mult, exp_shift):
    """e for distances x >= 0 below the row maximum (int64 tensor in, int64 tensor out)."""
    x = torch.clamp(torch.as_tensor(x, dtype=torch.int64), 0, (1 << X_BITS) - 1)
    z = (x * exp_mult) >> exp_shift
    n = z >> EXP_FRAC_BITS
    a = (z >> EXP_TABLE_BITS) & _HALF
    b = z & _HALF
    product = _HI[a] * _LO[b]                                 # <= 2^32
    # n beyond 33 leaves nothing of the product: e = 0 (and keeps the shifts in int64).
    n = torch.clamp(n, max=40)
    return (product + (torch.ones_like(n) << (E_BITS - 1 + n))) >> (E_BITS + n)


@dataclass(frozen=True)
class SoftmaxTrace:
    """Every intermediate of the integer softmax of one head (int64 tensors; 0 where not kept)."""
    scores: torch.Tensor      # (N, N) s
    row_max: torch.Tensor     # (N,) m
    e: torch.Tensor           # (N, N)
    row_sum: torch.Tensor     # (N,) S
    recip: torch.Tensor       # (N,) r
    p: torch.Tensor           # (N, N) probabilities, F fraction bits


def softmax_int(scores, kept, *, exp_mult, exp_shift, params):
    """The integer softmax of the kept entries of `scores` (int64 (N, N))."""
    kept = torch.as_tensor(kept, dtype=torch.bool)
    scores = torch.as_tensor(scores, dtype=torch.int64)
    lowest = torch.iinfo(torch.int64).min
    row_max = torch.where(kept, scores, lowest).amax(dim=-1)
    e = torch.where(kept, exp_int(row_max[:, None] - scores, exp_mult, exp_shift), 0)
    row_sum = e.sum(dim=-1)
    big_r = params.recip_shift
    recip = ((1 << big_r) + row_sum // 2) // row_sum
    drop = big_r - params.prob_bits
    p = torch.clamp((e * recip[:, None] + (1 << (drop - 1))) >> drop, max=1 << params.prob_bits)
    return SoftmaxTrace(scores, row_max, e, row_sum, recip, torch.where(kept, p, 0))


# -- one head ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class HeadScales:
    """One head's runtime scales (its exp_* and out_* registers)."""
    exp_mult: int
    exp_shift: int
    out_mult: int
    out_shift: int

    def __post_init__(self):
        for name, top in (("exp_mult", MULT_MAX), ("exp_shift", SHIFT_MAX),
                          ("out_mult", MULT_MAX), ("out_shift", SHIFT_MAX)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} must be an integer, not {value!r}")
            if not 0 <= value <= top:
                raise ValueError(f"{name} must be between 0 and {top}, not {value!r}")


def attention_head_int(q, k, v, kept, scales, params, *, trace=False):
    """One head as the engine computes it: q, k, v int (N, d) in the operand range, kept
    (N, N) bool; returns y (N, d) int64 (and the SoftmaxTrace and o with trace=True)."""
    if not isinstance(params, VitcodParams):
        raise TypeError(f"params must be a VitcodParams, not {params!r}")
    q, k, v = (torch.as_tensor(x, dtype=torch.int64) for x in (q, k, v))
    tokens = q.shape[0]
    if q.shape != (tokens, params.head_dim) or k.shape != q.shape or v.shape != q.shape:
        raise ValueError(f"q, k and v must have shape (N, {params.head_dim}), not "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    lo, hi = signed_range(params.operand_width)
    for name, x in (("q", q), ("k", k), ("v", v)):
        if x.numel() and (x.min() < lo or x.max() > hi):
            raise ValueError(f"{name} must hold {params.operand_width}-bit integers "
                             f"({lo} .. {hi}), not values in {int(x.min())} .. {int(x.max())}")
    kept = check_mask(kept, tokens)
    softmax = softmax_int(q @ k.T, kept, exp_mult=scales.exp_mult, exp_shift=scales.exp_shift,
                          params=params)
    o = softmax.p @ v
    y = requantize(o, scales.out_mult, scales.out_shift, params.operand_width)
    return (y, softmax, o) if trace else y


# -- choosing the scales ----------------------------------------------------------------------


def exp_scale(score_scale):
    """(exp_mult, exp_shift) for real scores s * score_scale (e.g. sq * sk / √d):
    z = x * score_scale * log2(e) in units of 2^-12."""
    return mult_shift(score_scale * math.log2(math.e) * (1 << EXP_FRAC_BITS))


def out_scale(v_scale, y_scale, params):
    """(out_mult, out_shift) for y = o * v_scale / (2^F * y_scale)."""
    return mult_shift(v_scale / (y_scale * (1 << params.prob_bits)))


# -- accuracy of the integer softmax ---------------------------------------------------------------


def softmax_error(scores, kept, score_scale, params, *, exp_mult=None, exp_shift=None):
    """How far the integer probabilities are from float softmax of scores * score_scale,
    in LSBs of their format (2^-F), over the kept entries: a JSON-ready dict with the
    fraction within one LSB, the largest and mean error and the entries compared."""
    if exp_mult is None:
        exp_mult, exp_shift = exp_scale(score_scale)
    kept = torch.as_tensor(kept, dtype=torch.bool)
    scores = torch.as_tensor(scores, dtype=torch.int64)
    p = softmax_int(scores, kept, exp_mult=exp_mult, exp_shift=exp_shift, params=params).p
    real = torch.softmax((scores.to(torch.float64) * score_scale).masked_fill(~kept, float("-inf")),
                         dim=-1)
    error = (p.to(torch.float64) - real * (1 << params.prob_bits)).abs()[kept]
    return {"prob_bits": params.prob_bits, "entries": int(error.numel()),
            "within_one_lsb": float((error <= 1.0).double().mean()),
            "max_lsb": float(error.max()), "mean_lsb": float(error.mean())}
