"""The MAC array's cycle model (celine/engines/mac/cycles.py) against RTL simulation."""

import pytest

from celine.engines.mac.bench import measure
from celine.engines.mac.cycles import cycles, estimate
from celine.engines.mac.spec import MacArrayParams


@pytest.mark.cocotb
@pytest.mark.sweep          # make test runs the array tests' designs below (no build of its own)
@pytest.mark.parametrize("impl,precision,size", [
    ("dsp", 4, 13),
    ("bricks", 8, 12),
    ("bricks", 2, 20),
    ("bricks", 16, 9),
])
def test_cycle_model_equals_rtl(request, impl, precision, size):
    params = MacArrayParams(rows=2, cols=3, impl=impl)
    measured, _ = measure(params, precision, size, case_id=request.node.nodeid)
    assert cycles(params, size, size, size, precision) == measured


# Two of tests/test_mac_array.py's points, with its parameters and its top names, so that
# make test simulates them on the Verilator builds that test makes anyway: a DSP array and
# a non-square array of 1-bit bricks (3 x 1); 13 is a multiple of neither array's rows.
ARRAY_TEST_POINTS = {
    "dsp_default": dict(impl="dsp"),
    "bricks_odd_b1": dict(rows=3, cols=1, brick_width=1, precisions=(2, 8), max_reduction=37),
}


@pytest.mark.cocotb
@pytest.mark.parametrize("name,precision,size", [("dsp_default", 4, 13),
                                                 ("bricks_odd_b1", 8, 13)])
def test_cycle_model_equals_rtl_on_the_array_tests_designs(request, name, precision, size):
    params = MacArrayParams(**ARRAY_TEST_POINTS[name])
    measured, _ = measure(params, precision, size, case_id=request.node.nodeid,
                          toplevel=f"mac_{name}", optimize=False)      # as test_mac_array's
    assert cycles(params, size, size, size, precision) == measured


def test_cycle_model_checks_its_workload():
    params = MacArrayParams(precisions=(4, 8))
    with pytest.raises(ValueError, match=r"^precision must be one of 4, 8, not 2$"):
        cycles(params, 4, 4, 4, 2)
    with pytest.raises(ValueError, match=r"^k must be a positive integer, not 0$"):
        cycles(params, 4, 0, 4)
    assert estimate(params).useful_macs == 64 ** 3
