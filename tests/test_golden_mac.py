"""golden/mac.py: tiling reproduces the plain matmul; RPS draws replay the LFSR."""

import pytest
import torch

from celine.golden.lfsr import LFSR
from celine.golden.mac import MacArrayModel, Requant, assemble, reference_matmul, tile_matmul
from celine.engines.mac.spec import MacArrayParams


@pytest.mark.parametrize("precision", [2, 4, 8, 16])
def test_tiles_assemble_into_the_matmul(precision):
    params = MacArrayParams(rows=3, cols=2)
    model = MacArrayModel(params)
    gen = torch.Generator().manual_seed(precision)
    bits = 16 if precision == 16 else 8
    a = torch.randint(-(1 << (bits - 1)), 1 << (bits - 1), (13, 9), generator=gen)
    w = torch.randint(-(1 << (bits - 1)), 1 << (bits - 1), (9, 7), generator=gen)
    tiles = [(m0, n0, model.tile(act, weight, precision)) for m0, n0, act, weight
             in tile_matmul(a, w, precision, params)]
    assert torch.equal(assemble(13, 7, tiles, precision, params),
                       reference_matmul(a, w, precision))


def test_most_negative_operands_do_not_overflow():
    params = MacArrayParams(rows=1, cols=1, max_reduction=1024)
    model = MacArrayModel(params)
    for p in (2, 4, 8, 16):
        lo = -(1 << 15) if p == 16 else -128
        out = model.tile(torch.full((1024, params.act_lanes), lo), torch.full((1024, params.weight_lanes), lo), p)
        low = -(1 << (p - 1)) if p <= 8 else lo
        assert int(out[0, 0]) == 1024 * low * low


def test_requantized_output_and_zero_lanes():
    params = MacArrayParams(rows=1, cols=1, precisions=(4, 8))
    model = MacArrayModel(params)
    act = torch.tensor([[100, 50]])
    weight = torch.tensor([[100, -3]])
    out = model.tile(act, weight, 8, Requant(True, 1, 4))
    assert out.tolist() == [[127, 0]]                   # 10000 >> 4 saturates; lane 1 unused
    # At 4 bits: 100 -> 6, 50 -> 3, -3 -> 0 (round half up of x / 16).
    assert model.tile(act, weight, 4).tolist() == [[36, 0], [18, 0]]


def test_rps_draws_replay_the_lfsr():
    params = MacArrayParams(rps_precisions=(2, 8, 16), lfsr_seed=0x1234)
    model = MacArrayModel(params)
    lfsr = LFSR(width=16, seed=0x1234)
    draws = [model.tile_precision(rps=True) for _ in range(50)]
    assert draws == [(2, 8, 16)[lfsr.draw(3)] for _ in range(50)]
    assert set(draws) == {2, 8, 16}
    with pytest.raises(ValueError, match=r"^precision must be one of \(2, 4, 8, 16\), not 3$"):
        model.tile_precision(3)
