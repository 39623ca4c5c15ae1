"""The Taylor-attention pipeline's generated Verilog against golden/taylor.py in cocotb,
and the cycle model (engines/taylor/cycles.py) against its measured cycles."""

import json

import pytest

from celine.engines.taylor.cycles import cycles as model_cycles
from celine.engines.taylor.spec import TaylorParams
from celine.rtl.taylor.pipeline import TaylorPipeline
from celine.sim.runner import run_cocotb
from celine.sim.taylor_cases import make_run

# (name, parameters, runs): every parameter point and the runs it takes, in order.
# A run is (tokens, head_mask, kind) with kind as in sim/taylor_cases.py.
POINTS = {
    # DeiT-Tiny: 197 tokens, head dim 64, 3 heads.
    "deit_m16": (dict(), [(197, 0b000, "random")]),
    "deit_m64": (dict(mac_units=64), [(197, 0b000, "random"), (256, 0b010, "random"),
                                      (256, 0b000, "most_negative")]),
    # Two MACs; max, 1 and odd token counts, a skipped head, the extreme operands.
    "small_m2": (dict(head_dim=8, max_tokens=13, mac_units=2, heads=2),
                 [(13, 0b00, "random"), (1, 0b00, "random"), (7, 0b01, "random"),
                  (13, 0b00, "most_negative"), (5, 0b10, "extreme")]),
    # One MAC, one head.
    "single_m1": (dict(head_dim=8, max_tokens=5, mac_units=1, heads=1),
                  [(5, 0, "random"), (1, 0, "most_negative"), (3, 0, "extreme")]),
    # 6-bit operands, a 4 x 2 tile over d = 24, a mask skipping the first and last heads.
    "w6_d24_m8": (dict(head_dim=24, max_tokens=40, mac_units=8, heads=3, operand_width=6),
                  [(40, 0b000, "random"), (9, 0b101, "random"), (40, 0b000, "most_negative"),
                   (11, 0b011, "extreme")]),
    # mac_units = head_dim: the output lane takes one element every cycle.
    "d16_m16": (dict(head_dim=16, max_tokens=64, mac_units=16, heads=2),
                [(64, 0b00, "random"), (33, 0b10, "random"), (64, 0b00, "extreme")]),
}
# The sample that `make test` runs; `make sim` runs every point under every stall mix.
SAMPLED = {"small_m2", "single_m1"}       # DeiT-Tiny: test_shell_attention (make sim)
STALLS = [(0.0, 0.0), (0.3, 0.3), (0.7, 0.1), (0.1, 0.8)]


def runs_for(name, seed):
    params = TaylorParams(**POINTS[name][0])
    runs = [make_run(params, tokens, seed=seed + n, head_mask=mask, kind=kind)
            for n, (tokens, mask, kind) in enumerate(POINTS[name][1])]
    return params, runs


def run_point(request, name, *, seed, idle_prob=0.0, backpressure_prob=0.0,
              testcase="runs_match_golden", runs=None):
    params, all_runs = runs_for(name, seed)
    return run_cocotb(TaylorPipeline(params), toplevel=f"taylor_{name}",
                      test_module="celine.sim.tb.taylor_tb", case_id=request.node.nodeid,
                      params=params.to_dict(), seed=seed, testcase=testcase,
                      data={"runs": all_runs if runs is None else runs(all_runs),
                            "idle_prob": idle_prob, "backpressure_prob": backpressure_prob})


@pytest.mark.cocotb
@pytest.mark.parametrize("name", sorted(SAMPLED))
def test_taylor(request, name):
    run_point(request, name, seed=1, idle_prob=0.3, backpressure_prob=0.3)


@pytest.mark.cocotb
@pytest.mark.sweep
@pytest.mark.parametrize("idle_prob,backpressure_prob", STALLS)
@pytest.mark.parametrize("name", sorted(POINTS))
def test_taylor_sweep(request, name, idle_prob, backpressure_prob):
    run_point(request, name, seed=11, idle_prob=idle_prob, backpressure_prob=backpressure_prob)


def check_model(request, name, run_index):
    params, runs = runs_for(name, 3)
    run = runs[run_index]
    path = run_point(request, name, seed=3, testcase="throughput", runs=lambda r: [run])
    measured = json.loads((path / "throughput.json").read_text())["cycles"]
    predicted = model_cycles(params, run["tokens"], run["head_mask"])
    assert abs(predicted - measured) <= 0.02 * measured, (predicted, measured)


@pytest.mark.cocotb
@pytest.mark.parametrize("name,run_index", [("small_m2", 2), ("single_m1", 0)])
def test_taylor_cycle_model(request, name, run_index):
    check_model(request, name, run_index)


@pytest.mark.cocotb
@pytest.mark.sweep
@pytest.mark.parametrize("name,run_index", [(name, index) for name in sorted(POINTS)
                                            for index in range(len(POINTS[name][1]))])
def test_taylor_cycle_model_sweep(request, name, run_index):
    check_model(request, name, run_index)


@pytest.mark.cocotb
@pytest.mark.parametrize("name", ["small_m2"])
def test_taylor_bad_settings(request, name):
    run_point(request, name, seed=5, testcase="bad_settings", runs=lambda r: r[:1])
