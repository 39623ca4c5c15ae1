"""ViTCoD masks on the host: generation, polarization and the index lists the hardware reads.

Conventions. A mask is a bool tensor (..., N, N) with True = KEPT; rows are queries i,
columns are keys j; index 0 is the CLS token. (The shipped DeiT-Tiny data stores True =
pruned: `load_deit_masks` inverts it.)

The algorithms (docs/vitcod.md, DESIGN.md §3.3):

- `generate_mask`: from attention maps averaged over a data set, each row keeps its
  largest entries until their cumulative probability reaches a cut-off; the CLS row and
  column are always kept. `mask_for_sparsity` picks the cut-off for a target sparsity.
- `polarize`: key columns with more than `threshold` kept rows are global tokens; they
  move to the front and are computed densely for every row, the rest is the sparse region.
- `index_lists`: the sparse region as CSC (the sparser engine's K-stationary SDDMM walks
  it column by column) and CSR (the softmax unit and the output-stationary SpMM walk it
  row by row), linked by `csc_pos`. `check_index_lists` is the host's last check before
  sending them.
- `split_macs`: the suggested split of MAC units between the denser and sparser engine.
"""

import math
import numbers
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

DATA_ENV = "CELINE_VITCOD_DATA"
MASK_FILE = "deit_tiny_mask_0.95_layers00-05.npy"
GLOBAL_TOKENS_FILE = "deit_tiny_global_tokens_0.95_layers00-05.npy"
GLOBAL_THRESHOLD = 50      # the reference's "more than 50 of 197 kept rows" makes a global token

# celine/golden/vitcod/mask.py -> the repository root is three levels above this package.
_REPO_ROOT = Path(__file__).resolve().parents[3]


# -- validation ---------------------------------------------------------------------------


def _describe(value):
    """A short stand-in for a tensor or array in a message (its repr may be huge)."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        kind = "tensor" if isinstance(value, torch.Tensor) else "array"
        return f"a {value.dtype} {kind} of shape {tuple(value.shape)}"
    return repr(value)


def _check_int(name, value, minimum=None, maximum=None):
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if minimum is not None and maximum is not None and not minimum <= value <= maximum:
        raise ValueError(f"{name} must be between {minimum} and {maximum}, not {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {value!r}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be at most {maximum}, not {value!r}")
    return value


def _check_real(name, value):
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        raise TypeError(f"{name} must be a real number, not {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, not {value!r}")
    return float(value)


def _check_mask(name, kept, *, ndim=None):
    """A bool tensor (..., N, N), N >= 1 (exactly 2-D when ndim=2); numpy arrays are accepted."""
    if isinstance(kept, np.ndarray):
        kept = torch.from_numpy(kept)
    if not isinstance(kept, torch.Tensor) or kept.dtype != torch.bool:
        raise TypeError(f"{name} must be a bool tensor, not {_describe(kept)}")
    if ndim is not None and kept.dim() != ndim:
        raise ValueError(f"{name} must be one head's (N, N) mask, not shape {tuple(kept.shape)}")
    if kept.dim() < 2 or kept.shape[-1] != kept.shape[-2] or kept.shape[-1] == 0:
        raise ValueError(f"{name} must be a square mask (..., N, N) with N >= 1, "
                         f"not shape {tuple(kept.shape)}")
    return kept


# -- the shipped DeiT-Tiny data -------------------------------------------------------------


def data_dir():
    """The directory of the shipped ViTCoD data: $CELINE_VITCOD_DATA, or the repository's
    data/vitcod (a copy of the project's shared data/vitcod, so that a clone has it)."""
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env)
    return _REPO_ROOT / "data" / "vitcod"


def _data_file(path, name):
    path = data_dir() / name if path is None else Path(path)
    if path.is_dir():
        path = path / name
    if not path.is_file():
        raise FileNotFoundError(f"ViTCoD data file {str(path)!r} not found "
                                f"(set {DATA_ENV} to the directory holding {name})")
    return path


def load_deit_masks(path=None):
    """The shipped DeiT-Tiny masks (95% sparsity, layers 0-5) as a KEPT bool tensor (6, 3, 197, 197).

    `path` is the .npy file or its directory; by default `data_dir()`. The file stores
    True = pruned; this returns its complement.
    """
    path = _data_file(path, MASK_FILE)
    pruned = np.load(path)
    if pruned.dtype != np.bool_ or pruned.ndim != 4 or pruned.shape[-1] != pruned.shape[-2]:
        raise ValueError(f"{path} must hold a bool (layers, heads, N, N) array, not {_describe(pruned)}")
    return torch.from_numpy(~pruned)


def load_deit_global_tokens(path=None):
    """The shipped global-token counts per (layer, head) as an int64 tensor (6, 3).

    The file stores them as float64; they are whole numbers, checked here.
    """
    path = _data_file(path, GLOBAL_TOKENS_FILE)
    counts = np.load(path)
    if counts.ndim != 2 or not np.array_equal(counts, np.round(counts)):
        raise ValueError(f"{path} must hold whole (layers, heads) counts, not {_describe(counts)}")
    return torch.from_numpy(counts.astype(np.int64))


# -- mask generation ----------------------------------------------------------------------


def _prepare_attention(attention, average_over):
    """Validated float64 attention (..., N, N) with rows normalized to sum 1."""
    if isinstance(attention, np.ndarray):
        attention = torch.from_numpy(attention)
    if not isinstance(attention, torch.Tensor) or not attention.dtype.is_floating_point:
        raise TypeError(f"attention must be a floating-point tensor, not {_describe(attention)}")
    attention = attention.to(torch.float64)
    if average_over is not None:
        if attention.dim() < 3:
            raise ValueError(f"average_over must be None for attention of shape "
                             f"{tuple(attention.shape)}, not {average_over!r}")
        _check_int("average_over", average_over, 0, attention.dim() - 3)
        attention = attention.mean(dim=average_over)
    if attention.dim() < 2 or attention.shape[-1] != attention.shape[-2] or attention.shape[-1] == 0:
        raise ValueError(f"attention must be square maps (..., N, N) with N >= 1, "
                         f"not shape {tuple(attention.shape)}")
    if not torch.isfinite(attention).all() or (attention < 0).any():
        raise ValueError(f"attention must be finite and non-negative, not values in "
                         f"[{attention.min().item()!r}, {attention.max().item()!r}]")
    total = attention.sum(dim=-1, keepdim=True)
    if (total <= 0).any():
        raise ValueError(f"attention rows must have a positive sum, not {int((total <= 0).sum())} "
                         f"all-zero rows")
    return attention / total


def _preceding_mass(probs):
    """For each entry, the probability of the entries ranked above it in its row.

    Rank: larger first, ties broken by the lower column index (a stable sort of -p). An
    entry is kept at cut-off c exactly when this mass is below c: the entries above it have
    not reached c yet, so the entry that crosses (or reaches) the cut-off is kept and the
    first entry of every row always is.
    """
    ranked, order = torch.sort(-probs, dim=-1, stable=True)
    cumulative = torch.cumsum(-ranked, dim=-1)
    before = torch.cat([torch.zeros_like(cumulative[..., :1]), cumulative[..., :-1]], dim=-1)
    return torch.empty_like(before).scatter_(-1, order, before)


def _forced(shape):
    """The CLS row and column, kept whatever the attention."""
    forced = torch.zeros(shape, dtype=torch.bool)
    forced[..., 0, :] = True
    forced[..., :, 0] = True
    return forced


def _mask_at(mass, cutoff):
    if cutoff >= 1.0:           # every entry: rounding must not prune zero-probability tails
        return torch.ones(mass.shape, dtype=torch.bool)
    return (mass < cutoff) | _forced(mass.shape)


def generate_mask(attention, cutoff, *, average_over=None):
    """The kept mask of ViTCoD's fixed-mask generation.

    `attention` holds attention maps (..., N, N) already averaged over a data set (softmax
    rows; each row is renormalized to sum 1 so an average in float32 is fine). With
    `average_over=k` the maps are first averaged over dimension k (e.g. k=0 for a stack of
    per-sample maps (S, ..., N, N)). Each row keeps its largest entries (ties: lower column
    first) until their cumulative probability reaches `cutoff`, the entry that crosses it
    included; row 0 and column 0 (CLS) are always kept. 0 < cutoff <= 1; cutoff = 1 keeps
    everything.
    """
    cutoff = _check_real("cutoff", cutoff)
    if not 0 < cutoff <= 1:
        raise ValueError(f"cutoff must be in (0, 1], not {cutoff!r}")
    return _mask_at(_preceding_mass(_prepare_attention(attention, average_over)), cutoff)


def cutoff_for_sparsity(attention, sparsity, *, average_over=None):
    """The cut-off whose mask (`generate_mask`) has the sparsity closest to `sparsity`.

    Sparsity is the fraction pruned over all entries of all maps, non-increasing in the
    cut-off. The distinct masks are those of the cut-offs equal to the distinct positive
    values of the preceding mass (`_preceding_mass`) below 1, and 1 itself; a bisection over
    these candidates finds the first whose sparsity is at most the target, then the closer of
    it and its predecessor wins (ties: the sparser). Deterministic and exact: no tolerance.
    """
    sparsity = _check_real("sparsity", sparsity)
    if not 0 <= sparsity < 1:
        raise ValueError(f"sparsity must be in [0, 1), not {sparsity!r}")
    mass = _preceding_mass(_prepare_attention(attention, average_over))
    values = torch.unique(mass)
    candidates = torch.cat([values[(values > 0) & (values < 1)], torch.ones(1, dtype=torch.float64)])
    forced = _forced(mass.shape)
    total = mass.numel()

    def pruned(index):
        cutoff = candidates[index].item()
        if cutoff >= 1.0:
            return 0
        return total - int(((mass < cutoff) | forced).sum())

    target = sparsity * total      # in entries
    lo, hi = 0, len(candidates) - 1          # pruned(hi) == 0 <= target
    while lo < hi:
        mid = (lo + hi) // 2
        if pruned(mid) <= target:
            hi = mid
        else:
            lo = mid + 1
    best = lo
    if lo > 0 and pruned(lo - 1) - target <= target - pruned(lo):
        best = lo - 1
    return candidates[best].item()


def mask_for_sparsity(attention, sparsity, *, average_over=None):
    """`generate_mask` at the cut-off whose sparsity is closest to `sparsity` (0 <= s < 1)."""
    cutoff = cutoff_for_sparsity(attention, sparsity, average_over=average_over)
    return generate_mask(attention, cutoff, average_over=average_over)


def random_mask(tokens, sparsity, *, seed, heads=None):
    """A random kept mask (N, N), or (heads, N, N) with one independent draw per head.

    The CLS row and column are kept (2N - 1 entries; the CLS column also gives every row
    at least one kept entry). Exactly round_half_up((1 - sparsity) * N²) entries are kept
    per head, or the 2N - 1 forced ones if that is more; the others are drawn uniformly
    without replacement from a torch.Generator seeded with `seed`.
    """
    _check_int("tokens", tokens, 1)
    sparsity = _check_real("sparsity", sparsity)
    if not 0 <= sparsity < 1:
        raise ValueError(f"sparsity must be in [0, 1), not {sparsity!r}")
    _check_int("seed", seed, 0)
    if heads is not None:
        _check_int("heads", heads, 1)
    count = heads or 1
    target = math.floor((1 - sparsity) * tokens * tokens + 0.5)
    free = (tokens - 1) ** 2                      # positions outside the CLS row and column
    extra = min(max(target - (2 * tokens - 1), 0), free)
    gen = torch.Generator().manual_seed(seed)
    masks = _forced((count, tokens, tokens))
    for h in range(count):
        if extra:                                 # (extra is 0 whenever tokens == 1)
            chosen = torch.randperm(free, generator=gen)[:extra]
            masks[h, 1 + chosen // (tokens - 1), 1 + chosen % (tokens - 1)] = True
    return masks if heads is not None else masks[0]


def sparsity(kept):
    """The fraction of entries pruned, over everything in `kept`."""
    kept = _check_mask("kept", kept)
    return 1.0 - int(kept.sum()) / kept.numel()


# -- polarization ---------------------------------------------------------------------------


def global_tokens(kept, threshold=GLOBAL_THRESHOLD):
    """Per mask, the bool vector (..., N) of key columns with MORE than `threshold` kept rows."""
    kept = _check_mask("kept", kept)
    _check_int("threshold", threshold, 0)
    return kept.sum(dim=-2) > threshold


@dataclass(frozen=True, eq=False)
class Polarized:
    """One head's mask after polarization (see `polarize`).

    order: long (N,), permuted column c is original key column order[c].
    globals: g, the number of global (dense) columns, now columns 0..g-1.
    kept: (N, N) bool, columns permuted by `order`, columns 0..g-1 kept whole: the denser
        engine computes them for every row, so the effective mask keeps them.
    nnz_sparse: kept entries in columns g..N-1 (the sparser engine's work).
    work: g*N + nnz_sparse, the scores computed; dense_share: g*N / work (0.0 when work is 0).
    """
    order: torch.Tensor
    globals: int
    kept: torch.Tensor
    nnz_sparse: int
    work: int
    dense_share: float

    @property
    def tokens(self):
        return self.kept.shape[-1]


def polarize(kept, *, threshold=GLOBAL_THRESHOLD, max_global=None):
    """Polarize one head's kept mask (N, N) into a dense region of global columns and a sparse one.

    Global columns are those with more than `threshold` kept rows (`global_tokens`). If
    `max_global` is given and there are more, only the `max_global` with the most kept rows
    (ties: lower index) stay global and the rest join the sparse region: the denser engine
    has a fixed width, and this is how such a mask still runs. The permutation puts the
    global columns first in ascending original index, then the others ascending.

    Note that the result keeps the global columns whole: a pruned entry in a global column
    is computed by the denser engine and takes part in the softmax, so the effective mask
    (Polarized.kept, un-permuted) can keep more than the input.
    """
    kept = _check_mask("kept", kept, ndim=2)
    _check_int("threshold", threshold, 0)
    tokens = kept.shape[-1]
    if max_global is not None:
        _check_int("max_global", max_global, 0)
    counts = kept.sum(dim=0)
    is_global = counts > threshold
    if max_global is not None and int(is_global.sum()) > max_global:
        ranked = torch.sort(-counts, stable=True).indices      # most kept rows first, then lower index
        is_global = torch.zeros(tokens, dtype=torch.bool)
        is_global[ranked[:max_global]] = True
    columns = torch.arange(tokens)
    order = torch.cat([columns[is_global], columns[~is_global]])
    g = int(is_global.sum())
    permuted = kept[:, order].clone()
    permuted[:, :g] = True
    nnz_sparse = int(permuted[:, g:].sum())
    work = g * tokens + nnz_sparse
    return Polarized(order=order, globals=g, kept=permuted, nnz_sparse=nnz_sparse, work=work,
                     dense_share=g * tokens / work if work else 0.0)


# -- index lists ------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class IndexLists:
    """The sparse region (permuted columns g..N-1) of a polarized head, as int64 tensors.

    csc_col, csc_row: the kept entries sorted by (column, row), for the sparser engine's
        K-stationary SDDMM (each key column loaded once for all its kept rows).
    csc_pos: for each CSC entry, its position in the CSR list (where its score goes).
    csr_row, csr_col: the same entries sorted by (row, column), for the softmax unit and
        the output-stationary SpMM.
    row_nnz: (N,) sparse kept entries per row; col_nnz: (N,) per permuted column (0 for
        the global columns 0..g-1).
    """
    csc_col: torch.Tensor
    csc_row: torch.Tensor
    csc_pos: torch.Tensor
    csr_row: torch.Tensor
    csr_col: torch.Tensor
    row_nnz: torch.Tensor
    col_nnz: torch.Tensor

    @property
    def nnz(self):
        return self.csr_row.numel()


FIELDS = ("csc_col", "csc_row", "csc_pos", "csr_row", "csr_col", "row_nnz", "col_nnz")


def index_lists(polarized):
    """The CSC and CSR lists of a `Polarized` head's sparse region (see IndexLists)."""
    if not isinstance(polarized, Polarized):
        raise TypeError(f"polarized must be a Polarized, not {polarized!r}")
    tokens, g = polarized.tokens, polarized.globals
    sparse = polarized.kept.clone()
    sparse[:, :g] = False
    csr_row, csr_col = sparse.nonzero(as_tuple=True)              # row-major: sorted by (row, col)
    csc_col, csc_row = sparse.t().nonzero(as_tuple=True)          # sorted by (col, row)
    position = torch.full((tokens, tokens), -1, dtype=torch.int64)
    position[csr_row, csr_col] = torch.arange(csr_row.numel())
    return IndexLists(csc_col=csc_col, csc_row=csc_row, csc_pos=position[csc_row, csc_col],
                      csr_row=csr_row, csr_col=csr_col,
                      row_nnz=sparse.sum(dim=1, dtype=torch.int64),
                      col_nnz=sparse.sum(dim=0, dtype=torch.int64))


def _check_order(label, major, minor, major_name, minor_name):
    """Entries strictly increasing by (major, minor): sorted and free of duplicates."""
    if major.numel() < 2:
        return
    d_major, d_minor = major[1:] - major[:-1], minor[1:] - minor[:-1]
    bad = ((d_major < 0) | ((d_major == 0) & (d_minor <= 0))).nonzero()
    if bad.numel():
        i = int(bad[0]) + 1
        prev = f"{major_name} {int(major[i - 1])} {minor_name} {int(minor[i - 1])}"
        cur = f"{major_name} {int(major[i])} {minor_name} {int(minor[i])}"
        if d_major[i - 1] == 0 and d_minor[i - 1] == 0:
            raise ValueError(f"{label} must be free of duplicates, not {cur} twice (entry {i})")
        raise ValueError(f"{label} must be sorted by ({major_name}, {minor_name}), "
                         f"not {cur} after {prev} (entry {i})")


def _check_range(name, values, lo, hi):
    bad = ((values < lo) | (values > hi)).nonzero()
    if bad.numel():
        i = int(bad[0])
        raise ValueError(f"{name}[{i}] must be between {lo} and {hi}, not {int(values[i])!r}")


def _check_counts(name, got, expected, what):
    bad = (got != expected).nonzero()
    if bad.numel():
        i = int(bad[0])
        raise ValueError(f"{name}[{i}] must be {int(expected[i])} (the {what} {i}), not {int(got[i])!r}")


def check_index_lists(lists, tokens, globals):
    """Reject malformed index lists for a head of `tokens` tokens and `globals` global columns.

    Checks, in order: field types (1-D int64 tensors) and lengths; rows in 0..N-1 and
    columns in globals..N-1; CSR strictly increasing by (row, column) and CSC by (column,
    row) (sorted, no duplicates); csc_pos a permutation of 0..nnz-1 pointing every CSC
    entry at the same (row, column) in the CSR list; row_nnz and col_nnz the counts of the
    lists. Raises TypeError/ValueError with a message naming the first offending entry.
    """
    if not isinstance(lists, IndexLists):
        raise TypeError(f"lists must be an IndexLists, not {lists!r}")
    _check_int("tokens", tokens, 1)
    _check_int("globals", globals, 0, tokens)
    for field in FIELDS:
        value = getattr(lists, field)
        if not isinstance(value, torch.Tensor) or value.dtype != torch.int64 or value.dim() != 1:
            raise TypeError(f"{field} must be a 1-D int64 tensor, not {_describe(value)}")
    nnz = lists.csr_row.numel()
    for field in ("csr_col", "csc_col", "csc_row", "csc_pos"):
        if getattr(lists, field).numel() != nnz:
            raise ValueError(f"len({field}) must be {nnz} (as csr_row), "
                             f"not {getattr(lists, field).numel()!r}")
    for field in ("row_nnz", "col_nnz"):
        if getattr(lists, field).numel() != tokens:
            raise ValueError(f"len({field}) must be {tokens} (the tokens), "
                             f"not {getattr(lists, field).numel()!r}")
    _check_range("csr_row", lists.csr_row, 0, tokens - 1)
    _check_range("csr_col", lists.csr_col, globals, tokens - 1)
    _check_range("csc_row", lists.csc_row, 0, tokens - 1)
    _check_range("csc_col", lists.csc_col, globals, tokens - 1)
    _check_order("csr_row, csr_col", lists.csr_row, lists.csr_col, "row", "column")
    _check_order("csc_col, csc_row", lists.csc_col, lists.csc_row, "column", "row")
    _check_range("csc_pos", lists.csc_pos, 0, nnz - 1)
    if nnz:
        seen = torch.zeros(nnz, dtype=torch.int64).scatter_add_(
            0, lists.csc_pos, torch.ones(nnz, dtype=torch.int64))
        repeated = (seen > 1).nonzero()
        if repeated.numel():
            value = int(repeated[0])
            first, second = (lists.csc_pos == value).nonzero().flatten()[:2].tolist()
            raise ValueError(f"csc_pos must be a permutation of 0..{nnz - 1}, "
                             f"not repeat {value} (entries {first} and {second})")
        row_at, col_at = lists.csr_row[lists.csc_pos], lists.csr_col[lists.csc_pos]
        bad = ((row_at != lists.csc_row) | (col_at != lists.csc_col)).nonzero()
        if bad.numel():
            i = int(bad[0])
            p = int(lists.csc_pos[i])
            raise ValueError(f"csc_pos[{i}] must point at the CSR entry of row "
                             f"{int(lists.csc_row[i])} column {int(lists.csc_col[i])}, not {p!r} "
                             f"(row {int(row_at[i])} column {int(col_at[i])})")
    _check_counts("row_nnz", lists.row_nnz,
                  torch.bincount(lists.csr_row, minlength=tokens), "CSR entries in row")
    _check_counts("col_nnz", lists.col_nnz,
                  torch.bincount(lists.csc_col, minlength=tokens), "CSC entries in column")


# -- the engines' split ----------------------------------------------------------------------


def _work(heads):
    """(dense, sparse) work summed over a Polarized, or an iterable of Polarized or
    (dense_work, sparse_work) pairs."""
    name = "polarized_or_work_list"
    if isinstance(heads, Polarized):
        heads = [heads]
    if isinstance(heads, (str, bytes)) or not hasattr(heads, "__iter__"):
        raise TypeError(f"{name} must be a Polarized or an iterable of Polarized or "
                        f"(dense_work, sparse_work) pairs, not {heads!r}")
    heads = list(heads)
    if not heads:
        raise ValueError(f"{name} must be non-empty, not {heads!r}")
    dense = sparse = 0
    for i, head in enumerate(heads):
        if isinstance(head, Polarized):
            dense += head.globals * head.tokens
            sparse += head.nnz_sparse
        elif isinstance(head, tuple) and len(head) == 2:
            dense += _check_int(f"{name}[{i}][0]", head[0], 0)
            sparse += _check_int(f"{name}[{i}][1]", head[1], 0)
        else:
            raise TypeError(f"{name}[{i}] must be a Polarized or a (dense_work, sparse_work) "
                            f"pair, not {head!r}")
    return dense, sparse


def split_macs(polarized_or_work_list, total_macs, granule):
    """Split `total_macs` between the denser and sparser engine: (dense_macs, sparse_macs).

    Both are multiples of `granule` (total_macs must be one). The denser engine's share is
    the dense share of the summed work, g*N / (g*N + nnz_sparse), rounded half up to a whole
    granule (exact rational arithmetic). When both sides have work and there are at least
    two granules each engine gets at least one; a side with no work gets 0. With no work at
    all (empty masks) everything goes to the denser engine, the dense baseline.
    """
    dense, sparse = _work(polarized_or_work_list)
    _check_int("granule", granule, 1)
    _check_int("total_macs", total_macs, granule)
    if total_macs % granule:
        raise ValueError(f"total_macs must be a multiple of granule ({granule}), not {total_macs!r}")
    units = total_macs // granule
    if sparse == 0:
        dense_units = units
    elif dense == 0:
        dense_units = 0
    else:
        dense_units = math.floor(units * Fraction(dense, dense + sparse) + Fraction(1, 2))
        if units >= 2:
            dense_units = min(max(dense_units, 1), units - 1)
    return dense_units * granule, (units - dense_units) * granule
