"""The ViTCoD engine (its shell adapter) in the Amaranth simulator against the golden
engine model: every word of `out`, the error flags and the rows written."""

import pytest

from celine.engines.vitcod.spec import (Errors, VitcodParams, csc_fields, csr_fields,
                                        head_register, pack_word, unpack_word)
from celine.golden.vitcod.mask import load_deit_masks, random_mask
from celine.rtl.vitcod.shell_adapter import VitcodShellAdapter
from celine.sim.adapter_bench import run_adapter
from celine.sim.vitcod_cases import make_case

SMALL = VitcodParams(head_dim=16, max_tokens=24, heads=2, max_global=8, sparse_capacity=400,
                     dense_macs=8, sparse_macs=8, out_lanes=4)


def check(case, limit=60_000):
    status, words = run_adapter(VitcodShellAdapter(case.params), case.contents, case.settings,
                                limit=limit)
    (errors, cycles, result_words), = status
    expected = case.expected
    assert errors == expected.errors
    assert result_words == expected.result_words
    out = list(case.contents["out"])
    for address, word in expected.writes.get("out", {}).items():
        out[address] = word
    assert words["out"] == out
    return cycles


def test_two_sparse_heads():
    masks = [random_mask(21, 0.7, seed=1), random_mask(21, 0.5, seed=2)]
    check(make_case(SMALL, 21, masks, seed=3))


def test_dense_and_global_heads():
    full = None
    only_global = random_mask(24, 0.9, seed=4)
    only_global[:, :3] = True
    check(make_case(SMALL, 24, [full, only_global], seed=5, threshold=5))


# -- edges and errors ------------------------------------------------------------------------


def test_one_token_and_extreme_operands():
    check(make_case(SMALL, 1, [None, None], seed=6))
    check(make_case(SMALL, 24, [random_mask(24, 0.5, seed=7), None], extreme=True, threshold=6))


def test_max_tokens_odd_and_skipped_head():
    odd = VitcodParams(head_dim=16, max_tokens=23, heads=3, max_global=8, sparse_capacity=400,
                       dense_macs=8, sparse_macs=8, out_lanes=16)
    masks = [random_mask(23, s, seed=8 + n) for n, s in enumerate((0.9, 0.5, 0.75))]
    check(make_case(odd, 23, masks, seed=9, head_mask=0b010, threshold=8))


def test_sparse_only_and_dense_only_engines():
    sparse_only = VitcodParams(head_dim=16, max_tokens=20, heads=1, max_global=0,
                               sparse_capacity=400, dense_macs=0, sparse_macs=16, out_lanes=4)
    check(make_case(sparse_only, 20, [random_mask(20, 0.6, seed=10)]))
    dense_only = VitcodParams(head_dim=16, max_tokens=20, heads=1, max_global=20,
                              sparse_capacity=0, dense_macs=16, sparse_macs=0, out_lanes=4)
    check(make_case(dense_only, 20, [None], threshold=5))


@pytest.mark.parametrize("settings, errors", [
    ({"tokens": 0}, Errors.TOKENS),
    ({"tokens": 25}, Errors.TOKENS),
    ({head_register("nnz", 1): 401}, Errors.CAPACITY),
    ({head_register("globals", 0): 9}, Errors.CAPACITY),
])
def test_bad_registers_run_nothing(settings, errors):
    case = make_case(SMALL, 12, [random_mask(12, 0.5, seed=11)] * 2, settings=settings)
    assert case.expected.errors == errors and case.expected.result_words == 0
    check(case)


def _corrupt(case, buffer, head, index, change):
    address = head * case.params.sparse_capacity + index
    if change == "pos":
        fields = csc_fields(case.params)
        values = unpack_word(fields, case.contents[buffer][address])
        values["pos"] = case.settings[head_register("nnz", head)]
        case.contents[buffer][address] = pack_word(fields, values)
    else:
        case.contents[buffer][address] = change(case.contents[buffer][address])
    from celine.golden.shell import Buffer
    from celine.golden.vitcod.engine_model import VitcodEngineModel
    model = VitcodEngineModel(case.params)
    buffers = {spec.name: Buffer(spec) for spec in model.buffer_specs}
    for name, words in case.contents.items():
        buffers[name].words = list(words)
    case.expected = model.run(case.settings, buffers)
    return case


@pytest.mark.parametrize("buffer, index, change", [
    ("csr", 3, lambda w: w ^ 1),                    # a CSR row changed: order/consistency
    ("csc", 2, lambda w: w ^ (1 << 5)),             # a CSC row changed
    ("csc", 0, "pos"),                              # a CSR position beyond nnz
    ("csr", 0, lambda w: w | 0x1F),                 # a row beyond N
])
def test_malformed_lists_stop_before_the_head_writes(buffer, index, change):
    case = make_case(SMALL, 12, [random_mask(12, 0.5, seed=12)] * 2)
    case = _corrupt(case, buffer, 1, index, change)
    assert case.expected.errors == Errors.INDEX and case.expected.result_words == 12
    check(case)


def test_a_row_without_entries_is_malformed():
    """With no global column, a CSR list that skips a row would leave the row without a
    score: the engine flags it (INDEX) instead of waiting for it."""
    case = make_case(SMALL, 12, [random_mask(12, 0.5, seed=13)] * 2)
    p, h = SMALL, 1
    base, nnz = h * p.sparse_capacity, case.settings[head_register("nnz", h)]
    csr = [unpack_word(csr_fields(p), case.contents["csr"][base + n]) for n in range(nnz)]
    csc = [unpack_word(csc_fields(p), case.contents["csc"][base + n]) for n in range(nnz)]
    keep = [n for n, e in enumerate(csr) if e["row"] != 5]          # drop row 5 entirely
    new_pos = {old: new for new, old in enumerate(keep)}
    csr = [csr[n] for n in keep]
    csc = [dict(e, pos=new_pos[e["pos"]]) for e in csc if e["row"] != 5]
    for n in range(nnz):
        case.contents["csr"][base + n] = pack_word(csr_fields(p), csr[n]) if n < len(csr) else 0
        case.contents["csc"][base + n] = pack_word(csc_fields(p), csc[n]) if n < len(csc) else 0
    case.settings[head_register("nnz", h)] = len(csr)
    case = _corrupt(case, "csr", h, 0, lambda w: w)
    assert case.expected.errors == Errors.INDEX and case.expected.result_words == 12
    check(case, limit=20_000)
