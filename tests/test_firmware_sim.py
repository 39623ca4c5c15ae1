"""SimTransport in a cocotb simulation: bytes through UART pins, and the whole runtime."""

from pathlib import Path

import pytest

from celine.sim.runner import run_cocotb

LOOPBACK_V = Path(__file__).with_name("uart_loopback.v")


@pytest.mark.cocotb
@pytest.mark.parametrize("cycles_per_bit", [4, pytest.param(7, marks=pytest.mark.sweep)])
def test_sim_transport_over_uart_pins(request, cycles_per_bit):
    run_cocotb(LOOPBACK_V, test_module="celine.sim.tb.uart_loopback_tb", case_id=request.node.nodeid,
               data={"cycles_per_bit": cycles_per_bit,
                     "a": [[3, -128, 127, 5], [-7, 9, 0, 100]],
                     "w": [[1, -2], [127, -128], [-1, 60], [33, 4]]})


def test_sim_transport_checks_cycles_per_bit():
    from celine.firmware.transport import SimTransport
    with pytest.raises(ValueError, match=r"^cycles_per_bit must be an integer of at least 2, "
                                         r"not 1$"):
        SimTransport(None, None, None, cycles_per_bit=1)
