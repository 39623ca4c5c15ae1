"""cocotb testbench: the Taylor-attention engine in the shell, through its UART pins,
driven by the host runtime (dev.taylor.attention), bit-exact against golden/taylor.py.

Case parameters: `shell` (clock_hz, baud, ...). Case data: `attention`: [{"q", "k", "v",
"head_mask", "registers" or "scales" and "out_scale", "expected" (the kept heads'
outputs), "expected_registers", "max_cycles"}]; `info`: the shell's INFO description. The
cycles of each run go to `attention.json` in the case directory.
"""

import json
import os
from pathlib import Path

import cocotb
import torch
from cocotb.task import bridge

from celine.firmware.device import Device
from celine.golden.taylor import TaylorRegisters
from celine.sim.case import ENV_VAR
from celine.sim.shell_host import start_shell


def _registers(values):
    """TaylorRegisters from their JSON form (per-head values as lists)."""
    return TaylorRegisters(**{name: tuple(value) if isinstance(value, list) else value
                              for name, value in values.items()})


@cocotb.test()
async def attention_end_to_end(dut):
    """Host runtime -> UART -> shell -> Taylor engine, bit-exact against golden/taylor.py."""
    case, host, bit_s = await start_shell(dut)

    def host_thread():
        dev = Device.open("sim", transport=host, timeout=40_000 * bit_s)
        out = []
        for job in case.data["attention"]:
            registers = job.get("registers")
            result = dev.taylor.attention(
                torch.tensor(job["q"]), torch.tensor(job["k"]), torch.tensor(job["v"]),
                registers=_registers(registers) if registers else None,
                head_mask=job["head_mask"], scales=job.get("scales"),
                out_scale=job.get("out_scale"))
            out.append((job, result, dev.taylor.last_registers, dev.status()))
        return dev.info, out

    info, results = await bridge(host_thread)()
    assert info == case.data["info"], "INFO differs from the shell's description"
    cycles = []
    for n, (job, result, registers, report) in enumerate(results):
        outs = [result] if isinstance(result, torch.Tensor) else result
        assert registers == _registers(job["expected_registers"]), f"job {n}: registers"
        assert [o.tolist() for o in outs] == job["expected"], f"job {n}: outputs differ"
        assert not report.busy and report.engine_errors == 0
        assert report.cycles <= job["max_cycles"], f"job {n}: {report.cycles} cycles"
        cycles.append(report.cycles)
    out = Path(os.environ[ENV_VAR]).parent / "attention.json"
    out.write_text(json.dumps({"cycles": cycles}))
