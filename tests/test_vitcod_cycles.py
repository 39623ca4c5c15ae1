"""The ViTCoD cycle model (celine/engines/vitcod/cycles.py) against RTL simulation: within
2% at every point (in practice within a few cycles)."""

import pytest

from celine.engines.vitcod.cycles import HeadWork, cycles, estimate, work_of_plan
from celine.engines.vitcod.spec import VitcodParams
from celine.golden.vitcod.mask import random_mask
from celine.rtl.vitcod.shell_adapter import VitcodShellAdapter
from celine.sim.adapter_bench import run_adapter
from celine.sim.amaranth_sim import shared
from celine.sim.vitcod_cases import make_case

POINTS = {
    "d16_m16": VitcodParams(head_dim=16, max_tokens=32, heads=1, max_global=8,
                            sparse_capacity=1024, dense_macs=8, sparse_macs=8, out_lanes=4),
    "d64_m64": VitcodParams(head_dim=64, max_tokens=32, heads=1, max_global=8,
                            sparse_capacity=1024, dense_macs=8, sparse_macs=56, out_lanes=16),
    "d32_m16_2h": VitcodParams(head_dim=32, max_tokens=32, heads=2, max_global=8,
                               sparse_capacity=1024, dense_macs=8, sparse_macs=8, out_lanes=16),
    "d16_m32": VitcodParams(head_dim=16, max_tokens=32, heads=1, max_global=16,
                            sparse_capacity=1024, dense_macs=16, sparse_macs=16, out_lanes=8),
}
# (tokens, sparsity, polarization threshold): sparse only, mixed, full, one token, 95%
CASES = [(20, 0.7, 50), (20, 0.7, 6), (24, 0.0, 5), (1, 0.0, 50), (17, 0.95, 50)]


def work(plan):
    return work_of_plan(plan)


def check(params, tokens, sparsity, threshold, head_mask=0, balance=False):
    masks = [random_mask(tokens, sparsity, seed=tokens + h) for h in range(params.heads)]
    case = make_case(params, tokens, masks, threshold=threshold, head_mask=head_mask,
                     balance=balance)
    (status,), _ = run_adapter(shared(VitcodShellAdapter, params), case.contents, case.settings,
                               limit=200_000)
    plans = iter(case.plans)
    works = [HeadWork(0, (1,)) if head_mask >> h & 1 else work(next(plans))
             for h in range(params.heads)]
    model, rtl = cycles(params, works, head_mask), status[1]
    assert abs(model - rtl) <= 0.02 * rtl, f"model {model}, RTL {rtl}"
    return model, rtl


@pytest.mark.parametrize("point, case", [
    ("d16_m16", CASES[1]), pytest.param("d64_m64", CASES[0], marks=pytest.mark.sweep),
    ("d32_m16_2h", CASES[4]), pytest.param("d16_m32", CASES[2], marks=pytest.mark.sweep)])
def test_model_against_rtl(point, case):
    check(POINTS[point], *case)


@pytest.mark.parametrize("point, case", [("d64_m64", CASES[1]), ("d16_m32", CASES[2])])
def test_model_against_rtl_balanced(point, case):
    """The host's balancing (plan_head(balance=True)) gives what dense_columns predicts."""
    check(POINTS[point], *case, balance=True)


def test_dense_columns_and_sized_split():
    from celine.engines.vitcod.cycles import balanced, dense_columns, sized_split
    # DeiT-Tiny layer 3 head 0's shape: g = 1, 946 sparse entries over 197 rows; 8 + 56
    # units: 197 jobs on one DPU (1,576 cycles) against 1,143 on seven (1,306): move it
    narrow = VitcodParams(dense_macs=8, sparse_macs=56, heads=1, sparse_capacity=4096)
    head = HeadWork(1, (5,) * 186 + (16,) * 11)
    assert head.nnz == 1106 and dense_columns(narrow, head) == 0
    assert balanced(narrow, head) == HeadWork(0, tuple(n + 1 for n in head.row_nnz))
    assert dense_columns(narrow, head, capacity_left=100) == 1          # 197 do not fit
    wide = VitcodParams(dense_macs=32, sparse_macs=32, heads=1)
    assert dense_columns(wide, HeadWork(2, (30,) * 197)) == 2           # the sparser is busy
    # equal engines: the columns split so that both have about the same work
    # (12·197 = 2,364 scores dense, 197·(3 + 8) = 2,167 sparse)
    assert dense_columns(wide, HeadWork(20, (3,) * 197)) == 12
    dense_only = VitcodParams(dense_macs=64, sparse_macs=0, max_global=197, sparse_capacity=0)
    assert dense_columns(dense_only, HeadWork(197, (0,) * 197)) == 197
    assert sized_split([head], head_dim=64, max_tokens=197, total_macs=64) == (0, 64)
    full = HeadWork(197, (0,) * 197)
    assert sized_split([full], head_dim=64, max_tokens=197, total_macs=64) == (64, 0)
    assert sized_split([full], head_dim=16, max_tokens=197, total_macs=32) == (16, 16)
    with pytest.raises(ValueError, match=r"^total_macs must be a multiple of granule \(8\), not 12$"):
        sized_split([head], head_dim=64, max_tokens=197, total_macs=12)
    with pytest.raises(ValueError, match=r"^total_macs \(64\) cannot be split into two engines "
                       r"of at most head_dim \(16\) MAC units for these heads$"):
        sized_split([head], head_dim=16, max_tokens=197, total_macs=64)


@pytest.mark.sweep
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("point", list(POINTS))
def test_model_against_rtl_sweep(point, case):
    check(POINTS[point], *case)


def test_skipped_head_costs_nothing():
    p = POINTS["d32_m16_2h"]
    check(p, 20, 0.7, 50, head_mask=0b01)
    one = HeadWork(2, (3,) * 20)
    assert cycles(p, [one, one], head_mask=0b10) == cycles(p, [one, one], head_mask=0b01)


def test_estimate_and_errors():
    result = estimate(VitcodParams())
    assert result.mac_units == 32 and 0 < result.utilization <= 1
    with pytest.raises(ValueError, match="tokens must be between 1 and 197, not 198"):
        cycles(VitcodParams(), [HeadWork(0, (1,) * 198)])
    # A head the engine would refuse has no cycle count (the default workload fits).
    with pytest.raises(ValueError, match=r"^mask must fit the engine: 2049 sparse entries "
                                         r"after 0 global columns, capacity 2048$"):
        cycles(VitcodParams(), [HeadWork(0, (11,) * 79 + (10,) * 118)])
    with pytest.raises(ValueError, match=r"^mask must fit the engine: 33 global columns, "
                                         r"max_global 32$"):
        cycles(VitcodParams(), [HeadWork(33, (1,) * 197)])
    with pytest.raises(ValueError, match=r"^mask must fit the engine: 3684 sparse entries"):
        estimate(VitcodParams(), sparsity=0.9)
    assert estimate(VitcodParams(sparse_capacity=4096), sparsity=0.9).cycles > 0


@pytest.mark.sweep          # minutes of RTL simulation: make sim
def test_model_with_the_decoders():
    """With the auto-encoder built in: the auto-encoder phase (ENCODE_TURN + DECODE_TURN, an
    AeEncoder run per enabled encoder and an AeDecoder run per enabled decoder,
    ae_codec.mixer_cycles) before the heads."""
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).parent))
    from test_vitcod_engine import ae_case, check_ae
    from celine.engines.vitcod.cycles import DECODE_TURN, ENCODE_TURN, decode_phase
    from celine.rtl.vitcod.ae_codec import mixer_cycles
    p = VitcodParams(head_dim=32, max_tokens=13, heads=4, max_global=4, sparse_capacity=120,
                     dense_macs=8, sparse_macs=8, out_lanes=16, autoencoder=True)
    for tokens, enable, head_mask in ((9, 0b0011, 0), (13, 0b1010, 0b0100), (1, 0, 0),
                                      (7, 0b1111, 0b0001), (5, 0b0100, 0)):
        masks = [random_mask(tokens, 0.5, seed=h) for h in range(p.heads)]
        case = ae_case(p, tokens, masks, ae_enable=enable, seed=5, head_mask=head_mask)
        rtl = check_ae(case, limit=100_000)
        plans = iter(case.plans)
        works = [HeadWork(0, (1,) * tokens) if head_mask >> h & 1 else work(next(plans))
                 for h in range(p.heads)]
        model = cycles(p, works, head_mask, ae_enable=enable)
        assert abs(model - rtl) <= 0.02 * rtl, f"model {model}, RTL {rtl}"
        assert model - cycles(p, works, head_mask) == (decode_phase(p, tokens, enable)
                                                         - decode_phase(p, tokens, 0))
        assert abs(model - rtl) <= 2, (tokens, enable, model, rtl)
    assert decode_phase(p, 9, 0b11) == ENCODE_TURN + DECODE_TURN + 2 * mixer_cycles(p, 2, 4, 9)
    assert decode_phase(p, 9, 0b1100) == ENCODE_TURN + DECODE_TURN + 2 * mixer_cycles(p, 4, 2, 9)
    assert decode_phase(POINTS["d16_m16"], 9, 0b11) == 0


def test_params_suggests_a_split_from_a_mask_file(tmp_path, capsys):
    import json

    import numpy

    from celine.gen.cli import main
    from celine.golden.vitcod.mask import load_deit_masks
    path = tmp_path / "masks.npy"
    numpy.save(path, (~load_deit_masks()[5, :2]).numpy())       # True = pruned, as shipped
    assert main(["params", "vitcod", "--workload", f"mask={path}"]) == 0
    model = json.loads(capsys.readouterr().out)["model"]
    # layer 5: head 0 has 20 global tokens, head 1 three
    # the fastest split of the default's 32 units: the sparser engine computes a global
    # column as fast as the denser
    assert model["masks"] == 2 and model["suggested_split"] == {"dense_macs": 0, "sparse_macs": 32}
    assert model["work_split"] == {"dense_macs": 24, "sparse_macs": 8}
    assert 0 < model["dense_share"] < 1
    bad = tmp_path / "bad.npy"
    numpy.save(bad, numpy.zeros((3, 4), dtype=numpy.int8))
    with pytest.raises(ValueError, match=r"^mask must hold bool masks \(\.\.\., N, N\), not int8 \(3, 4\)$"):
        estimate(VitcodParams(), mask=str(bad))
