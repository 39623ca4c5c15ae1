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


@pytest.mark.cocotb
def test_open_sim_serves_the_rtl():
    # before: Device.open("sim") without a transport made in a cocotb test was an error
    import torch

    from celine.engines.mac.spec import MacArrayParams
    from celine.firmware.device import Device
    from celine.golden.mac import reference_matmul

    # test_shell.py's "small" point: one Verilator build for both tests
    params = MacArrayParams(rows=2, cols=2, precisions=(4, 8))
    with Device.open("sim", accel="mac", params=params, operand_depth=16, result_depth=16,
                     max_payload=48) as dev:
        process = dev.transport.process
        assert dev.info["params"] == params.to_dict() and dev.max_payload == 48
        assert dev.info["baud"] == dev.info["clock_hz"] // 4
        data = bytes((7 * i + 3) & 0xFF for i in range(60))      # two WRITE frames
        dev.write_buffer("weight", 4, data)
        assert dev.read_buffer("weight", 4, len(data)) == data
        gen = torch.Generator().manual_seed(5)
        a = torch.randint(-128, 128, (3, 5), generator=gen)
        w = torch.randint(-128, 128, (5, 3), generator=gen)
        assert torch.equal(dev.matmul(a, w), reference_matmul(a, w, 8))
        assert not dev.status().busy
    assert process.returncode == 0                              # close() ended the simulation


def test_open_sim_checks_the_shell_options():
    pytest.importorskip("amaranth")
    from celine.firmware.device import Device
    from celine.firmware.errors import SettingError

    with pytest.raises(SettingError, match=r"colour"):
        Device.open("sim", accel="mac", colour=3)
    with pytest.raises(SettingError, match=r"^start_timeout must be a positive number of "
                                           r"seconds, not 0$"):
        Device.open("sim", start_timeout=0)
