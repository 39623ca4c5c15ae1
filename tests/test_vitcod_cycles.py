"""The ViTCoD cycle model (celine/engines/vitcod/cycles.py) against RTL simulation: within
2% at every point (in practice within a few cycles)."""

import pytest

from celine.engines.vitcod.cycles import HeadWork, cycles, estimate
from celine.engines.vitcod.spec import VitcodParams
from celine.golden.vitcod.mask import random_mask
from celine.rtl.vitcod.shell_adapter import VitcodShellAdapter
from celine.sim.adapter_bench import run_adapter
from celine.sim.vitcod_cases import make_case

POINTS = {
    "d16_m16": VitcodParams(head_dim=16, max_tokens=32, heads=1, max_global=8,
                            sparse_capacity=1024, dense_macs=8, sparse_macs=8, out_lanes=4),
    "d64_m64": VitcodParams(head_dim=64, max_tokens=32, heads=1, max_global=8,
                            sparse_capacity=1024, dense_macs=8, sparse_macs=56, out_lanes=16),
    "d32_m16_2h": VitcodParams(head_dim=32, max_tokens=32, heads=2, max_global=8,
                               sparse_capacity=1024, dense_macs=8, sparse_macs=8, out_lanes=16),
}
# (tokens, sparsity, polarization threshold): sparse only, mixed, full, one token, 95%
CASES = [(20, 0.7, 50), (20, 0.7, 6), (24, 0.0, 5), (1, 0.0, 50), (17, 0.95, 50)]


def work(plan):
    g = plan.globals
    return HeadWork(g, tuple(int(n) for n in plan.kept[:, g:].sum(dim=1)))


def check(params, tokens, sparsity, threshold, head_mask=0):
    masks = [random_mask(tokens, sparsity, seed=tokens + h) for h in range(params.heads)]
    case = make_case(params, tokens, masks, threshold=threshold, head_mask=head_mask)
    (status,), _ = run_adapter(VitcodShellAdapter(params), case.contents, case.settings,
                               limit=200_000)
    plans = iter(case.plans)
    works = [HeadWork(0, (1,)) if head_mask >> h & 1 else work(next(plans))
             for h in range(params.heads)]
    model, rtl = cycles(params, works, head_mask), status[1]
    assert abs(model - rtl) <= 0.02 * rtl, f"model {model}, RTL {rtl}"
    return model, rtl


@pytest.mark.parametrize("point, case", [("d16_m16", CASES[1]), ("d64_m64", CASES[0]),
                                         ("d32_m16_2h", CASES[4])])
def test_model_against_rtl(point, case):
    check(POINTS[point], *case)


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
    assert result.mac_units == 64 and 0 < result.utilization <= 1
    with pytest.raises(ValueError, match="tokens must be between 1 and 197, not 198"):
        cycles(VitcodParams(), [HeadWork(0, (1,) * 198)])
