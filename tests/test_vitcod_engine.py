"""The ViTCoD engine (its shell adapter) in the Amaranth simulator against the golden
engine model: every word of `out`, the error flags and the rows written."""

import pytest

from celine.engines.vitcod.spec import Errors, VitcodParams, head_register
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
