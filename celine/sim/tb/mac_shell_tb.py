"""cocotb testbench: the MAC array engine in the shell, through its UART pins, driven by
the host runtime (dev.mac.matmul).

Case parameters: `shell` (clock_hz, baud, ...). Case data: `matmuls`: [{"a", "w",
"precision", "expected"}]; `info`: the golden shell model's INFO description.
"""

import cocotb
import torch
from cocotb.task import bridge

from celine.firmware.device import Device
from celine.sim.shell_host import start_shell


@cocotb.test()
async def matmul_end_to_end(dut):
    """Host runtime -> UART -> shell -> MAC array, bit-exact against the golden matmul."""
    case, host, bit_s = await start_shell(dut)

    def host_thread():
        # Timeouts in bit times of the simulated line (INFO alone is about 6000).
        dev = Device.open("sim", transport=host, timeout=40_000 * bit_s)
        out = []
        for job in case.data["matmuls"]:
            product = dev.mac.matmul(torch.tensor(job["a"]), torch.tensor(job["w"]),
                                 precision=job["precision"])
            out.append((job, product, dev.status()))
        return dev.info, out

    info, results = await bridge(host_thread)()
    assert info == case.data["info"], "INFO differs from the golden description"
    for job, product, report in results:
        assert product.tolist() == job["expected"], f"precision {job['precision']}"
        assert not report.busy and report.engine_errors == 0
