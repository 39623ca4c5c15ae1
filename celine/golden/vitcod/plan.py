"""What the host does to one head before the engine sees it (docs/vitcod.md): polarize the
mask for the engine's denser width (logically: K and V stay in token order, the global
columns travel as a table of token indices), build and check the index lists, and choose
the scales. `plan_head` is shared by the host runtime and the
tests, so that both compute the expected result from the same plan."""

import math
from dataclasses import dataclass

import torch

from ...engines.vitcod.spec import VitcodParams, csc_fields, csr_fields, pack_word
from .attention import HeadScales, check_mask, exp_scale, masked_softmax_attention, out_scale
from .mask import GLOBAL_THRESHOLD, IndexLists, check_index_lists, polarize

__all__ = ["HeadPlan", "plan_head", "calibrate_head", "sparse_lists"]


@dataclass(frozen=True)
class HeadPlan:
    """One head, ready for the engine: q, k, v unchanged (token order); `kept` the
    polarized mask in token order (the global columns kept whole); `gcols` the g global
    columns' token indices, ascending; `order` polarize's key order (global columns
    first); the index lists (token-index columns) and their buffer words."""
    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    kept: torch.Tensor
    order: torch.Tensor
    gcols: tuple
    nnz: int
    csc_words: list
    csr_words: list

    @property
    def globals(self):
        """g: the number of global columns."""
        return len(self.gcols)


def sparse_lists(kept, gcols):
    """The IndexLists (token-index columns) of the kept mask `kept` (N, N) outside the
    global columns `gcols`: CSR sorted by (row, col), CSC by (col, row) with each entry's
    CSR position."""
    tokens = kept.shape[0]
    sparse = kept.clone()
    sparse[:, list(gcols)] = False
    csr_row, csr_col = sparse.nonzero(as_tuple=True)              # sorted by (row, col)
    csc_col, csc_row = sparse.t().nonzero(as_tuple=True)          # sorted by (col, row)
    position = torch.full((tokens, tokens), -1, dtype=torch.int64)
    position[csr_row, csr_col] = torch.arange(csr_row.numel())
    return IndexLists(csc_col=csc_col, csc_row=csc_row, csc_pos=position[csc_row, csc_col],
                      csr_row=csr_row, csr_col=csr_col,
                      row_nnz=sparse.sum(dim=1, dtype=torch.int64),
                      col_nnz=sparse.sum(dim=0, dtype=torch.int64))


def plan_head(params, q, k, v, mask=None, *, threshold=GLOBAL_THRESHOLD, balance=False):
    """The HeadPlan of integer q, k, v (N, d) and a kept mask (N, N; None: dense). The
    mask is polarized with `threshold` (its global columns kept whole, whatever the
    engine); the denser engine takes up to `max_global` of them, the sparser one the rest
    as whole columns of its lists. Raises ValueError (with the reason) for a mask the
    engine cannot take: an empty row, or more sparse entries than `sparse_capacity`.

    With `balance` the denser engine takes only as many of the global columns as make the
    head fastest (celine.engines.vitcod.cycles.dense_columns, within the capacity): the
    others stay kept whole and go to the sparser engine. The result is the same."""
    if not isinstance(params, VitcodParams):
        raise TypeError(f"params must be a VitcodParams, not {params!r}")
    tokens = q.shape[0]
    mask = torch.ones(tokens, tokens, dtype=torch.bool) if mask is None else mask
    mask = check_mask(mask, tokens)
    threshold = min(threshold, tokens)
    # The effective mask: every global column kept whole, whichever engine computes it
    # (so a head's result does not depend on the engine's split or max_global).
    polar = polarize(mask, threshold=threshold)
    kept = torch.empty_like(polar.kept)
    kept[:, polar.order] = polar.kept               # back to token order
    # The denser engine's columns: at most max_global of them, those with the most kept
    # rows in the mask (polarize's cap); the others are whole columns of the lists.
    capped = polar if polar.globals <= params.max_global else \
        polarize(mask, threshold=threshold, max_global=params.max_global)
    order = capped.order
    gcols = tuple(sorted(int(c) for c in order[:capped.globals]))
    nnz = int(kept.sum()) - len(gcols) * tokens
    from ...engines.vitcod.cycles import HeadWork, check_capacity, dense_columns
    check_capacity(params, len(gcols), nnz)
    if balance and gcols:
        inside = torch.zeros(tokens, dtype=torch.bool)
        inside[list(gcols)] = True
        row_nnz = tuple(int(n) for n in kept[:, ~inside].sum(dim=1))
        gcols = gcols[:dense_columns(params, HeadWork(len(gcols), row_nnz),
                                     params.sparse_capacity - nnz)]
    lists = sparse_lists(kept, gcols)
    check_index_lists(lists, tokens, 0)
    csc = [pack_word(csc_fields(params), {"col": int(c), "row": int(r), "pos": int(p)})
           for c, r, p in zip(lists.csc_col, lists.csc_row, lists.csc_pos)]
    csr = [pack_word(csr_fields(params), {"row": int(r), "col": int(c)})
           for r, c in zip(lists.csr_row, lists.csr_col)]
    return HeadPlan(q=q, k=k, v=v, kept=kept, order=order, gcols=gcols,
                    nnz=lists.nnz, csc_words=csc, csr_words=csr)


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
