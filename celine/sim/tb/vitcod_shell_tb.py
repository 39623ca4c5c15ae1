"""cocotb testbench: the ViTCoD engine in the shell, through its UART pins, driven by the
host runtime (dev.vitcod.sparse_attention), bit-exact against the golden model.

Case parameters: `shell` (clock_hz, baud, ...). Case data: `attention`: [{"q", "k", "v",
"mask" (None, or bools N x N / H x N x N, True = kept), "threshold", "scales",
"head_mask", "expected" (the kept heads' outputs), "max_cycles"}]; `info`: the shell's
INFO description. The cycles of each run go to `attention.json` in the case directory.
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
async def attention_end_to_end(dut):
    """Host runtime -> UART -> shell -> ViTCoD engine, bit-exact against the golden model."""
    case, host, bit_s = await start_shell(dut)

    def host_thread():
        dev = Device.open("sim", transport=host, timeout=200_000 * bit_s)
        out = []
        for job in case.data["attention"]:
            mask = job["mask"]
            result = dev.vitcod.sparse_attention(
                torch.tensor(job["q"]), torch.tensor(job["k"]), torch.tensor(job["v"]),
                None if mask is None else torch.tensor(mask, dtype=torch.bool),
                head_mask=job["head_mask"], threshold=job["threshold"],
                scales=job["scales"], timeout=job["max_cycles"] * 1e-8 + 1.0)
            out.append((job, result, dev.status()))
        return dev.info, out

    info, results = await bridge(host_thread)()
    assert info == case.data["info"], "INFO differs from the shell's description"
    cycles = []
    for n, (job, result, report) in enumerate(results):
        outs = [result] if isinstance(result, torch.Tensor) else result
        assert [o.tolist() for o in outs] == job["expected"], f"job {n}: outputs differ"
        assert not report.busy and report.engine_errors == 0
        assert report.cycles <= job["max_cycles"], f"job {n}: {report.cycles} cycles"
        cycles.append(report.cycles)
    out = Path(os.environ[ENV_VAR]).parent / "attention.json"
    out.write_text(json.dumps({"cycles": cycles}))
