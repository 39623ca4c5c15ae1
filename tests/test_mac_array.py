"""The MAC array's generated Verilog against golden/mac.py in cocotb (Verilator or Icarus)."""

import pytest

from celine.rtl.mac.array import MacArray
from celine.engines.mac.spec import MacArrayParams
from celine.sim.mac_cases import mixed_tiles
from celine.sim.runner import run_cocotb
from celine.sim.toolchain import selected_simulator

# Icarus runs the big brick arrays at a few hundred cycles per second: there the worst-case
# tile (most negative operands for max_reduction beats) is cut to 64 beats. Verilator runs
# it in full, so the accumulator widths are still proven at max_reduction.
WORST_DEPTH = {"verilator": 1024, "icarus": 64}

# (name, parameters): every parameter point a testbench runs at in `make sim`.
# tests/test_mac_cycles.py runs dsp_default and bricks_odd_b1 under the same top names
# (mac_<name>): keep its copies of them equal, so that both share one Verilator build.
POINTS = {
    "bricks_default": dict(),
    "dsp_default": dict(impl="dsp"),
    "bricks_odd_b1": dict(rows=3, cols=1, brick_width=1, precisions=(2, 8), max_reduction=37),
    "bricks_b4_narrow_acc": dict(rows=2, cols=3, brick_width=4, precisions=(4, 8, 16),
                                 acc_width=32, rps_precisions=(4, 16), lfsr_seed=1),
    "dsp_8_16": dict(rows=2, cols=2, impl="dsp", precisions=(8, 16), lfsr_seed=0xFFFF),
    "bricks_1x1_two": dict(rows=1, cols=1, precisions=(2,), max_reduction=1),
}
# The sample that `make test` runs; `make sim` runs every point.
SAMPLED = {"dsp_default", "bricks_odd_b1"}     # the others: test_mac_array_sweep (make sim)

STALLS = [(0.0, 0.0), (0.3, 0.3), (0.6, 0.1), (0.1, 0.7)]


def run_point(request, name, *, seed, idle_prob, backpressure_prob, testcase="tiles_match_golden"):
    params = MacArrayParams(**POINTS[name])
    tiles = mixed_tiles(params, seed, max_depth=min(12, params.max_reduction * 2),
                        worst_depth=WORST_DEPTH[selected_simulator()])
    run_cocotb(MacArray(params), toplevel=f"mac_{name}", test_module="celine.sim.tb.mac_tb",
               case_id=request.node.nodeid, params=params.to_dict(), seed=seed,
               testcase=testcase,
               data={"tiles": tiles, "idle_prob": idle_prob, "backpressure_prob": backpressure_prob})


@pytest.mark.cocotb
@pytest.mark.parametrize("name", sorted(SAMPLED))
def test_mac_array(request, name):
    run_point(request, name, seed=1, idle_prob=0.3, backpressure_prob=0.3)


@pytest.mark.cocotb
@pytest.mark.sweep
@pytest.mark.parametrize("idle_prob,backpressure_prob", STALLS)
@pytest.mark.parametrize("name", sorted(POINTS))
def test_mac_array_sweep(request, name, idle_prob, backpressure_prob):
    run_point(request, name, seed=7, idle_prob=idle_prob, backpressure_prob=backpressure_prob)


@pytest.mark.cocotb
@pytest.mark.parametrize("name", ["bricks_default"])
def test_mac_array_error_flags(request, name):
    params = MacArrayParams(**POINTS[name])
    run_cocotb(MacArray(params), toplevel=f"mac_{name}", test_module="celine.sim.tb.mac_tb",
               case_id=request.node.nodeid, params=params.to_dict(), testcase="error_flags",
               data={})
