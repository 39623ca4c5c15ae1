"""cocotb testbench: the SmartDeal engine in the shell, through its UART pins, driven by the
host runtime (dev.linear), bit-exact against the golden model.

Case parameters: `shell` (clock_hz, baud, ...). Case data: `linear`: [{"words" (the packed
layer), "x" (M x L int8), "requant" (None or [M, S]), "expected" (M x N)}]; `info`: the
shell's INFO description. The cycles of each run go to `linear.json` in the case directory.
"""

import json
import os
from pathlib import Path

import cocotb
import torch
from cocotb.task import bridge

from celine.firmware.device import Device
from celine.sim.case import ENV_VAR
from celine.sim.shell_host import start_shell


@cocotb.test()
async def linear_end_to_end(dut):
    """Host runtime -> UART -> shell -> SD linear layer, bit-exact against the golden model."""
    case, host, bit_s = await start_shell(dut)

    def host_thread():
        dev = Device.open("sim", transport=host, timeout=200_000 * bit_s)
        out = []
        for job in case.data["linear"]:
            requant = None if job["requant"] is None else tuple(job["requant"])
            result = dev.linear(torch.tensor(job["x"]), list(job["words"]), requant=requant)
            out.append((result, dev.status(), dict(dev.smartdeal.last_link_bytes)))
        return dev.info, out

    info, results = await bridge(host_thread)()
    assert info == case.data["info"], "INFO differs from the shell's description"
    cycles, links = [], []
    for n, (job, (result, report, link)) in enumerate(zip(case.data["linear"], results)):
        assert result.tolist() == job["expected"], f"job {n}: outputs differ"
        assert not report.busy and report.engine_errors == 0
        cycles.append(report.cycles)
        links.append(link)
    out = Path(os.environ[ENV_VAR]).parent / "linear.json"
    out.write_text(json.dumps({"cycles": cycles, "link_bytes": links}))
