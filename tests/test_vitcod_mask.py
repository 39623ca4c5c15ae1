"""golden/vitcod/mask.py: mask generation, polarization, index lists and the engines' split."""

import dataclasses
import math
import re
from fractions import Fraction

import numpy as np
import pytest
import torch

from celine.golden.vitcod.mask import (DATA_ENV, GLOBAL_TOKENS_FILE, MASK_FILE, IndexLists,
                                       Polarized, check_index_lists, cutoff_for_sparsity,
                                       data_dir, generate_mask, global_tokens, index_lists,
                                       load_deit_global_tokens, load_deit_masks,
                                       mask_for_sparsity, polarize, random_mask, sparsity,
                                       split_macs)

LAYER_HEADS = [(layer, head) for layer in range(6) for head in range(3)]


def raises(kind, message):
    return pytest.raises(kind, match=re.escape(message) + "$")


@pytest.fixture(scope="module")
def masks():
    return load_deit_masks()


@pytest.fixture(scope="module")
def shipped_counts():
    return load_deit_global_tokens()


def softmax_maps(shape, seed, temperature=3.0):
    gen = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(shape, generator=gen, dtype=torch.float64) * temperature, -1)


# -- the shipped data -----------------------------------------------------------------------


def test_load_shipped_data(masks, shipped_counts):
    pruned = np.load(data_dir() / MASK_FILE)
    assert masks.dtype == torch.bool and masks.shape == (6, 3, 197, 197)
    assert torch.equal(masks, torch.from_numpy(~pruned))
    assert shipped_counts.dtype == torch.int64 and shipped_counts.shape == (6, 3)
    assert masks[..., 0, :].all() and masks[..., :, 0].all()       # CLS row and column kept
    assert 0.94 < sparsity(masks) < 0.95


def test_data_directory_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    assert data_dir() == tmp_path
    with raises(FileNotFoundError, f"ViTCoD data file {str(tmp_path / MASK_FILE)!r} not found "
                                   f"(set {DATA_ENV} to the directory holding {MASK_FILE})"):
        load_deit_masks()
    np.save(tmp_path / GLOBAL_TOKENS_FILE, np.array([[1.0, 2.0]]))
    assert load_deit_global_tokens().tolist() == [[1, 2]]
    assert load_deit_global_tokens(tmp_path / GLOBAL_TOKENS_FILE).tolist() == [[1, 2]]


@pytest.mark.parametrize("layer, head", LAYER_HEADS)
def test_global_tokens_reproduce_shipped_counts(masks, shipped_counts, layer, head):
    assert int(global_tokens(masks[layer, head]).sum()) == int(shipped_counts[layer, head])


def test_global_tokens_batched_and_strictly_more_than_threshold(masks, shipped_counts):
    assert torch.equal(global_tokens(masks).sum(-1), shipped_counts)
    kept = torch.zeros(4, 4, dtype=torch.bool)
    kept[:2, 1] = True
    kept[:3, 2] = True
    assert global_tokens(kept, threshold=2).tolist() == [False, False, True, False]
    with raises(ValueError, "threshold must be at least 0, not -1"):
        global_tokens(kept, threshold=-1)
    with raises(TypeError, "kept must be a bool tensor, not a torch.int64 tensor of shape (4, 4)"):
        global_tokens(kept.long())
    with raises(ValueError, "kept must be a square mask (..., N, N) with N >= 1, not shape (4, 3)"):
        global_tokens(kept[:, :3])


# -- generate_mask and mask_for_sparsity ------------------------------------------------------


def test_generate_mask_cumulative_rule():
    # Exact binary fractions: no rounding in the cumulative sums.
    row = [0.25, 0.125, 0.5, 0.125]
    attention = torch.tensor([[1.0, 0, 0, 0], row, row, [0.25, 0.25, 0.25, 0.25]])
    kept = generate_mask(attention, 0.75)
    assert kept[0].all() and kept[:, 0].all()                   # CLS row and column
    # 0.5 then 0.25 reach 0.75 exactly: stop.
    assert kept[1].tolist() == [True, False, True, False]
    # Uniform row: 0.25 + 0.25 + 0.25 reaches 0.75 -> the three lowest columns (ties).
    assert kept[3].tolist() == [True, True, True, False]
    # Just above: the entry that crosses the cut-off is kept; of the tied 0.125s, the lower column.
    assert generate_mask(attention, 0.76)[1].tolist() == [True, True, True, False]
    no_cls = torch.tensor([[0.5, 0.5, 0, 0]] + [[0, 0.125, 0.5, 0.375]] * 3)
    crossed = generate_mask(no_cls, 0.8)
    assert crossed[1].tolist() == [True, False, True, True]     # 0.5 + 0.375 crosses 0.8
    assert generate_mask(no_cls, 0.9)[1].tolist() == [True, True, True, True]
    assert generate_mask(no_cls, 1e-9)[2].tolist() == [True, False, True, False]
    assert generate_mask(no_cls, 1.0).all()


def test_generate_mask_ties_and_rows_not_normalized():
    attention = torch.tensor([[1.0, 1, 1, 1, 1]] * 5)            # uniform, not normalized
    kept = generate_mask(attention, 0.5)                          # 0.2 0.4 | 0.6 crosses
    assert kept[1:].tolist() == [[True, True, True, False, False]] * 4


def test_generate_mask_average_over():
    maps = softmax_maps((5, 2, 16, 16), seed=1)
    assert torch.equal(generate_mask(maps, 0.6, average_over=0), generate_mask(maps.mean(0), 0.6))
    assert torch.equal(generate_mask(maps.numpy(), 0.6, average_over=0),
                       generate_mask(maps.mean(0), 0.6))


def test_generate_mask_messages():
    maps = softmax_maps((2, 4, 4), seed=0)
    with raises(ValueError, "cutoff must be in (0, 1], not 0.0"):
        generate_mask(maps, 0)
    with raises(ValueError, "cutoff must be in (0, 1], not 1.5"):
        generate_mask(maps, 1.5)
    with raises(TypeError, "cutoff must be a real number, not '0.5'"):
        generate_mask(maps, "0.5")
    with raises(ValueError, "cutoff must be finite, not nan"):
        generate_mask(maps, float("nan"))
    with raises(TypeError, "attention must be a floating-point tensor, not a torch.int64 tensor "
                           "of shape (4, 4)"):
        generate_mask(torch.ones(4, 4, dtype=torch.int64), 0.5)
    with raises(ValueError, "attention must be square maps (..., N, N) with N >= 1, not shape (4, 3)"):
        generate_mask(torch.ones(4, 3), 0.5)
    with raises(ValueError, "attention must be finite and non-negative, not values in [-1.0, 1.0]"):
        generate_mask(torch.tensor([[1.0, -1.0], [1.0, 1.0]]), 0.5)
    with raises(ValueError, "attention rows must have a positive sum, not 1 all-zero rows"):
        generate_mask(torch.tensor([[0.0, 0.0], [1.0, 1.0]]), 0.5)
    with raises(ValueError, "average_over must be between 0 and 0, not 1"):
        generate_mask(maps, 0.5, average_over=1)
    with raises(ValueError, "average_over must be None for attention of shape (4, 4), not 0"):
        generate_mask(maps[0], 0.5, average_over=0)


def test_mask_for_sparsity_is_closest_achievable():
    tokens = 24
    maps = softmax_maps((tokens, tokens), seed=3)
    # Every achievable mask, by brute force over cut-offs between the distinct cumulative sums.
    ranked = torch.sort(maps, dim=-1, descending=True).values
    sums = torch.unique(torch.cumsum(ranked, -1))
    cutoffs = torch.cat([sums[sums < 1] - 1e-12, sums[sums < 1] + 1e-12, torch.tensor([1.0])])
    achievable = {sparsity(generate_mask(maps, c)) for c in cutoffs.tolist() if 0 < c <= 1}
    for target in (0.0, 0.3, 0.5, 0.75, 0.9, 0.95, 0.99):
        kept = mask_for_sparsity(maps, target)
        closest = min(abs(s - target) for s in achievable)
        assert abs(sparsity(kept) - target) == pytest.approx(closest, abs=1e-15)
        assert torch.equal(kept, generate_mask(maps, cutoff_for_sparsity(maps, target)))
        assert torch.equal(kept, mask_for_sparsity(maps, target))             # deterministic
    assert abs(sparsity(mask_for_sparsity(maps, 0.5)) - 0.5) <= 1 / tokens ** 2
    assert mask_for_sparsity(maps, 0.0).all()


def test_mask_for_sparsity_on_averaged_maps():
    maps = softmax_maps((4, 3, 64, 64), seed=4)                 # 4 samples, 3 heads
    for target in (0.5, 0.9, 0.95):
        kept = mask_for_sparsity(maps, target, average_over=0)
        assert kept.shape == (3, 64, 64)
        assert abs(sparsity(kept) - target) <= 1 / 64 ** 2
        assert kept[..., 0, :].all() and kept[..., :, 0].all()
    with raises(ValueError, "sparsity must be in [0, 1), not 1.0"):
        mask_for_sparsity(maps, 1.0, average_over=0)


# -- random masks and sparsity ----------------------------------------------------------------


@pytest.mark.parametrize("tokens", [197, 31])
@pytest.mark.parametrize("target", [0.0, 0.5, 0.75, 0.9, 0.95])
def test_random_mask_exact_counts(tokens, target):
    kept = random_mask(tokens, target, seed=7, heads=3)
    assert kept.shape == (3, tokens, tokens) and kept.dtype == torch.bool
    exact = (1 - Fraction(str(target))) * tokens * tokens               # round half up, exactly
    expected = max(math.floor(exact + Fraction(1, 2)), 2 * tokens - 1)
    assert kept.sum((1, 2)).tolist() == [expected] * 3
    assert kept[:, 0, :].all() and kept[:, :, 0].all() and kept.any(-1).all()
    if 2 * tokens - 1 < expected < tokens * tokens:                     # heads drawn independently
        assert not torch.equal(kept[0], kept[1])


def test_random_mask_deterministic_and_edge_cases():
    assert torch.equal(random_mask(50, 0.9, seed=1), random_mask(50, 0.9, seed=1))
    assert not torch.equal(random_mask(50, 0.9, seed=1), random_mask(50, 0.9, seed=2))
    assert torch.equal(random_mask(50, 0.9, seed=1), random_mask(50, 0.9, seed=1, heads=2)[0])
    only_cls = random_mask(10, 0.99, seed=0)                    # fewer than the forced 19
    assert int(only_cls.sum()) == 19 and only_cls[0].all() and only_cls[:, 0].all()
    assert random_mask(1, 0.5, seed=0).tolist() == [[True]]
    assert random_mask(2, 0.5, seed=0).tolist() == [[True, True], [True, False]]
    assert sparsity(random_mask(200, 0.9, seed=5)) == pytest.approx(0.9, abs=1e-12)
    with raises(ValueError, "tokens must be at least 1, not 0"):
        random_mask(0, 0.5, seed=0)
    with raises(ValueError, "sparsity must be in [0, 1), not -0.1"):
        random_mask(4, -0.1, seed=0)
    with raises(TypeError, "seed must be an integer, not None"):
        random_mask(4, 0.5, seed=None)
    with raises(ValueError, "heads must be at least 1, not 0"):
        random_mask(4, 0.5, seed=0, heads=0)


def test_sparsity():
    kept = torch.tensor([[True, True], [True, False]])
    assert sparsity(kept) == 0.25
    assert sparsity(torch.stack([kept, torch.ones(2, 2, dtype=torch.bool)])) == 0.125
    assert sparsity(kept.numpy()) == 0.25
    with raises(TypeError, "kept must be a bool tensor, not [[1, 0]]"):
        sparsity([[1, 0]])


# -- polarize -----------------------------------------------------------------------------------


@pytest.mark.parametrize("layer, head", LAYER_HEADS)
def test_polarize_shipped_masks(masks, shipped_counts, layer, head):
    kept = masks[layer, head]
    p = polarize(kept)
    g, n = p.globals, 197
    assert isinstance(p, Polarized) and p.tokens == n
    assert g == int(shipped_counts[layer, head])
    assert p.order.dtype == torch.int64
    assert torch.equal(torch.sort(p.order).values, torch.arange(n))          # a permutation
    is_global = global_tokens(kept)
    assert torch.equal(p.order[:g], is_global.nonzero().flatten())            # ascending
    assert torch.equal(p.order[g:], (~is_global).nonzero().flatten())
    assert p.kept[:, :g].all()                                                 # computed densely
    assert torch.equal(p.kept[:, g:], kept[:, p.order[g:]])
    assert p.nnz_sparse == int(kept[:, ~is_global].sum())
    assert p.nnz_sparse + g * n == p.work
    assert p.dense_share == g * n / p.work


def column_mask(counts):
    """A mask whose column j keeps its first counts[j] rows."""
    kept = torch.zeros(len(counts), len(counts), dtype=torch.bool)
    for j, c in enumerate(counts):
        kept[:c, j] = True
    return kept


def test_polarize_max_global():
    kept = column_mask([6, 3, 4, 3, 0, 2])
    full = polarize(kept, threshold=1)
    assert full.globals == 5 and full.order.tolist() == [0, 1, 2, 3, 5, 4]
    two = polarize(kept, threshold=1, max_global=2)
    assert two.globals == 2 and two.order.tolist() == [0, 2, 1, 3, 4, 5]
    assert two.nnz_sparse == 3 + 3 + 0 + 2 and two.work == 12 + 8
    three = polarize(kept, threshold=1, max_global=3)                  # tie 3/3: lower index
    assert three.globals == 3 and three.order.tolist() == [0, 1, 2, 3, 4, 5]
    assert polarize(kept, threshold=1, max_global=5).order.tolist() == full.order.tolist()
    none = polarize(kept, threshold=1, max_global=0)
    assert none.globals == 0 and none.dense_share == 0.0 and torch.equal(none.kept, kept)
    assert none.order.tolist() == list(range(6))
    empty = polarize(torch.zeros(3, 3, dtype=torch.bool))
    assert empty.work == 0 and empty.dense_share == 0.0


def test_polarize_messages():
    kept = column_mask([2, 1])
    with raises(ValueError, "kept must be one head's (N, N) mask, not shape (1, 2, 2)"):
        polarize(kept[None])
    with raises(ValueError, "max_global must be at least 0, not -1"):
        polarize(kept, max_global=-1)
    with raises(TypeError, "threshold must be an integer, not 1.5"):
        polarize(kept, threshold=1.5)


# -- index lists ----------------------------------------------------------------------------------

HAND = torch.tensor([[1, 1, 1, 1, 1],
                     [1, 0, 1, 0, 0],
                     [1, 1, 0, 0, 1],
                     [1, 0, 0, 1, 0],
                     [1, 0, 1, 0, 1]], dtype=torch.bool)


@pytest.fixture
def hand_lists():
    return index_lists(polarize(HAND, threshold=3))              # column 0 is the only global


def test_index_lists_hand_example(hand_lists):
    lists = hand_lists
    assert isinstance(lists, IndexLists) and lists.nnz == 10
    assert list(zip(lists.csr_row.tolist(), lists.csr_col.tolist())) == [
        (0, 1), (0, 2), (0, 3), (0, 4), (1, 2), (2, 1), (2, 4), (3, 3), (4, 2), (4, 4)]
    assert list(zip(lists.csc_col.tolist(), lists.csc_row.tolist())) == [
        (1, 0), (1, 2), (2, 0), (2, 1), (2, 4), (3, 0), (3, 3), (4, 0), (4, 2), (4, 4)]
    assert lists.csc_pos.tolist() == [0, 5, 1, 4, 8, 2, 7, 3, 6, 9]
    assert lists.row_nnz.tolist() == [4, 1, 2, 1, 2]
    assert lists.col_nnz.tolist() == [0, 2, 3, 2, 3]
    for field in ("csc_col", "csc_row", "csc_pos", "csr_row", "csr_col", "row_nnz", "col_nnz"):
        assert getattr(lists, field).dtype == torch.int64
    check_index_lists(lists, 5, 1)


def rebuild(rows, cols, tokens):
    dense = torch.zeros(tokens, tokens, dtype=torch.bool)
    dense[rows, cols] = True
    return dense


def round_trip(p):
    lists = index_lists(p)
    n, g = p.tokens, p.globals
    sparse = p.kept.clone()
    sparse[:, :g] = False
    check_index_lists(lists, n, g)
    assert torch.equal(rebuild(lists.csr_row, lists.csr_col, n), sparse)
    assert torch.equal(rebuild(lists.csc_row, lists.csc_col, n), sparse)
    assert torch.equal(lists.csr_row[lists.csc_pos], lists.csc_row)
    assert torch.equal(lists.csr_col[lists.csc_pos], lists.csc_col)
    assert lists.nnz == p.nnz_sparse == int(lists.row_nnz.sum()) == int(lists.col_nnz.sum())
    assert torch.equal(lists.row_nnz, sparse.sum(1)) and torch.equal(lists.col_nnz, sparse.sum(0))
    return lists


def test_index_lists_round_trip_shipped(masks):
    for layer, head in LAYER_HEADS:
        round_trip(polarize(masks[layer, head]))
    round_trip(polarize(masks[2, 0], max_global=16))


def test_index_lists_round_trip_edge_masks():
    for kept in (random_mask(33, 0.75, seed=9), random_mask(16, 0.5, seed=1),
                 torch.ones(7, 7, dtype=torch.bool)):
        round_trip(polarize(kept, threshold=3))
        round_trip(polarize(kept, threshold=3, max_global=0))      # no global tokens
    only_global = round_trip(polarize(torch.ones(7, 7, dtype=torch.bool), threshold=0))
    assert only_global.nnz == 0
    assert round_trip(polarize(torch.ones(1, 1, dtype=torch.bool), threshold=0)).nnz == 0
    assert round_trip(polarize(torch.ones(1, 1, dtype=torch.bool))).nnz == 1


def replaced(lists, **changes):
    return dataclasses.replace(lists, **{k: torch.tensor(v, dtype=torch.int64) if isinstance(v, list)
                                         else v for k, v in changes.items()})


CSR_ROW = [0, 0, 0, 0, 1, 2, 2, 3, 4, 4]
CSR_COL = [1, 2, 3, 4, 2, 1, 4, 3, 2, 4]
CSC_COL = [1, 1, 2, 2, 2, 3, 3, 4, 4, 4]
CSC_ROW = [0, 2, 0, 1, 4, 0, 3, 0, 2, 4]
CSC_POS = [0, 5, 1, 4, 8, 2, 7, 3, 6, 9]

MALFORMED = [
    (dict(csr_row=torch.zeros(10)), TypeError,
     "csr_row must be a 1-D int64 tensor, not a torch.float32 tensor of shape (10,)"),
    (dict(col_nnz=[[0, 2, 3, 2, 3]]), TypeError,
     "col_nnz must be a 1-D int64 tensor, not a torch.int64 tensor of shape (1, 5)"),
    (dict(csr_col=CSR_COL[:9]), ValueError, "len(csr_col) must be 10 (as csr_row), not 9"),
    (dict(csc_pos=CSC_POS + [0]), ValueError, "len(csc_pos) must be 10 (as csr_row), not 11"),
    (dict(row_nnz=[4, 1, 2, 1]), ValueError, "len(row_nnz) must be 5 (the tokens), not 4"),
    (dict(csr_row=CSR_ROW[:9] + [5]), ValueError, "csr_row[9] must be between 0 and 4, not 5"),
    (dict(csc_row=[-1] + CSC_ROW[1:]), ValueError, "csc_row[0] must be between 0 and 4, not -1"),
    (dict(csr_col=[0] + CSR_COL[1:]), ValueError,          # a global column in the sparse list
     "csr_col[0] must be between 1 and 4, not 0"),
    (dict(csc_col=CSC_COL[:9] + [5]), ValueError, "csc_col[9] must be between 1 and 4, not 5"),
    (dict(csr_col=[2, 1] + CSR_COL[2:]), ValueError,
     "csr_row, csr_col must be sorted by (row, column), not row 0 column 1 after row 0 column 2 "
     "(entry 1)"),
    (dict(csr_row=[0, 0, 0, 0, 2, 1, 2, 3, 4, 4], csr_col=[1, 2, 3, 4, 1, 2, 4, 3, 2, 4]), ValueError,
     "csr_row, csr_col must be sorted by (row, column), not row 1 column 2 after row 2 column 1 "
     "(entry 5)"),
    (dict(csr_col=[1, 1] + CSR_COL[2:]), ValueError,
     "csr_row, csr_col must be free of duplicates, not row 0 column 1 twice (entry 1)"),
    (dict(csc_row=[2, 0] + CSC_ROW[2:]), ValueError,
     "csc_col, csc_row must be sorted by (column, row), not column 1 row 0 after column 1 row 2 "
     "(entry 1)"),
    (dict(csc_row=CSC_ROW[:9] + [2]), ValueError,
     "csc_col, csc_row must be free of duplicates, not column 4 row 2 twice (entry 9)"),
    (dict(csc_pos=[10] + CSC_POS[1:]), ValueError, "csc_pos[0] must be between 0 and 9, not 10"),
    (dict(csc_pos=[0, 0] + CSC_POS[2:]), ValueError,
     "csc_pos must be a permutation of 0..9, not repeat 0 (entries 0 and 1)"),
    (dict(csc_pos=[5, 0] + CSC_POS[2:]), ValueError,
     "csc_pos[0] must point at the CSR entry of row 0 column 1, not 5 (row 2 column 1)"),
    (dict(csr_col=[1, 2, 3, 4, 2, 1, 4, 4, 2, 4]), ValueError,    # CSR holds (3, 4), CSC (3, 3)
     "csc_pos[6] must point at the CSR entry of row 3 column 3, not 7 (row 3 column 4)"),
    (dict(row_nnz=[4, 1, 2, 2, 1]), ValueError,
     "row_nnz[3] must be 1 (the CSR entries in row 3), not 2"),
    (dict(col_nnz=[1, 1, 3, 2, 3]), ValueError,
     "col_nnz[0] must be 0 (the CSC entries in column 0), not 1"),
]


@pytest.mark.parametrize("changes, kind, message", MALFORMED)
def test_check_index_lists_rejects(hand_lists, changes, kind, message):
    with raises(kind, message):
        check_index_lists(replaced(hand_lists, **changes), 5, 1)


def test_check_index_lists_arguments(hand_lists):
    with raises(TypeError, "lists must be an IndexLists, not None"):
        check_index_lists(None, 5, 1)
    with raises(ValueError, "tokens must be at least 1, not 0"):
        check_index_lists(hand_lists, 0, 0)
    with raises(ValueError, "globals must be between 0 and 5, not 6"):
        check_index_lists(hand_lists, 5, 6)
    with raises(ValueError, "csr_col[0] must be between 2 and 4, not 1"):
        check_index_lists(hand_lists, 5, 2)                         # lists built for globals = 1
    with raises(ValueError, "len(row_nnz) must be 6 (the tokens), not 5"):
        check_index_lists(hand_lists, 6, 1)


# -- split_macs --------------------------------------------------------------------------------------


def test_split_macs_examples():
    assert split_macs([(100, 300)], 64, 8) == (16, 48)                # share 1/4 of 8 granules
    assert split_macs([(100, 100), (0, 200)], 64, 8) == (16, 48)      # summed over heads
    assert split_macs([(1, 1)], 24, 8) == (16, 8)                     # 1.5 granules: half up
    assert split_macs([(1, 1000)], 32, 8) == (8, 24)                  # at least one granule
    assert split_macs([(1000, 1)], 32, 8) == (24, 8)
    assert split_macs([(5, 0)], 32, 8) == (32, 0)                     # no sparse work
    assert split_macs([(0, 5)], 32, 8) == (0, 32)                     # no dense work
    assert split_macs([(0, 0)], 32, 8) == (32, 0)                     # nothing: the dense baseline
    assert split_macs([(1, 3)], 8, 8) == (0, 8)                       # one granule: to the larger
    assert split_macs([(3, 1)], 8, 8) == (8, 0)
    assert split_macs([(3, 1)], 5, 1) == (4, 1)


def test_split_macs_polarized(masks):
    heads = [polarize(masks[layer, head]) for layer, head in LAYER_HEADS]
    dense = sum(p.globals * 197 for p in heads)
    share = Fraction(dense, dense + sum(p.nnz_sparse for p in heads))
    expected = int(share * 16 + Fraction(1, 2)) * 4
    assert split_macs(heads, 64, 4) == (expected, 64 - expected)
    one = heads[6]                                                    # layer 2, head 0: g = 70
    assert split_macs(one, 64, 1) == split_macs([(70 * 197, one.nnz_sparse)], 64, 1)
    assert split_macs(one, 64, 1)[0] == int(64 * one.dense_share + 0.5)


def test_split_macs_messages():
    with raises(ValueError, "total_macs must be a multiple of granule (8), not 60"):
        split_macs([(1, 1)], 60, 8)
    with raises(ValueError, "total_macs must be at least 8, not 4"):
        split_macs([(1, 1)], 4, 8)
    with raises(ValueError, "granule must be at least 1, not 0"):
        split_macs([(1, 1)], 8, 0)
    with raises(ValueError, "polarized_or_work_list must be non-empty, not []"):
        split_macs([], 8, 1)
    with raises(TypeError, "polarized_or_work_list must be a Polarized or an iterable of Polarized "
                           "or (dense_work, sparse_work) pairs, not 5"):
        split_macs(5, 8, 1)
    with raises(TypeError, "polarized_or_work_list[1] must be a Polarized or a (dense_work, "
                           "sparse_work) pair, not [1, 2]"):
        split_macs([(1, 1), [1, 2]], 8, 1)
    with raises(ValueError, "polarized_or_work_list[0][1] must be at least 0, not -1"):
        split_macs([(1, -1)], 8, 1)
