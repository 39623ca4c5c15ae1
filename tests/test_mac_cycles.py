"""The MAC array's cycle model (celine/engines/mac/cycles.py) against RTL simulation."""

import pytest

from celine.engines.mac.bench import measure
from celine.engines.mac.cycles import cycles, estimate
from celine.engines.mac.spec import MacArrayParams


@pytest.mark.cocotb
@pytest.mark.parametrize("impl,precision,size", [
    ("dsp", 4, 13),             # make test samples the quick one (a brick array takes minutes)
    pytest.param("bricks", 8, 12, marks=pytest.mark.sweep),
    pytest.param("bricks", 2, 20, marks=pytest.mark.sweep),
    pytest.param("bricks", 16, 9, marks=pytest.mark.sweep),
])
def test_cycle_model_equals_rtl(request, impl, precision, size):
    params = MacArrayParams(rows=2, cols=3, impl=impl)
    measured, _ = measure(params, precision, size, case_id=request.node.nodeid)
    assert cycles(params, size, size, size, precision) == measured


def test_cycle_model_checks_its_workload():
    params = MacArrayParams(precisions=(4, 8))
    with pytest.raises(ValueError, match=r"^precision must be one of 4, 8, not 2$"):
        cycles(params, 4, 4, 4, 2)
    with pytest.raises(ValueError, match=r"^k must be a positive integer, not 0$"):
        cycles(params, 4, 0, 4)
    assert estimate(params).useful_macs == 64 ** 3
