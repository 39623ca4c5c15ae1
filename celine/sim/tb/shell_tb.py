"""cocotb testbench: the shell's Verilog through its UART pins.

Case parameters: `mac` (MacArrayParams fields) or `taylor` (TaylorParams fields), and
`shell` (clock_hz, baud, and the shell's other settings). Case data per test:
- `script`: steps {"send": hex, "expect": hex}; the bytes the golden model
  (golden/shell.py) replied to the same traffic. Replies must match byte for byte.
- `attention`: [{"q", "k", "v", "head_mask", "registers" or "scales" and "out_scale",
  "expected" (the kept heads' outputs), "expected_registers", "max_cycles"}] run with
  the host runtime (Device.attention); the cycles of each run go to `attention.json`.
"""

import cocotb
import torch
from cocotb.task import bridge

from celine.firmware.device import Device
from celine.sim.shell_host import start_shell as start

@cocotb.test()
async def replies_match_golden(dut):
    """Raw traffic (good frames, corrupted, cut off, oversized, garbage) vs the golden replies."""
    case, host, bit_s = await start(dut)
    timeout = (case.params["shell"]["timeout_bits"] + 200) * bit_s

    def host_thread():
        results = []
        for step in case.data["script"]:
            host.write(bytes.fromhex(step["send"]))
            want = bytes.fromhex(step["expect"])
            got = host.read(len(want), timeout=timeout + 12 * len(want) * bit_s)
            results.append((step.get("what", ""), want, got))
            # Nothing more may follow.
            extra = host.read(1, timeout=20 * bit_s)
            results[-1] += (extra,)
        return results

    for what, want, got, extra in await bridge(host_thread)():
        assert got == want, f"{what}: expected {want.hex()}, received {got.hex()}"
        assert extra == b"", f"{what}: unexpected extra bytes {extra.hex()}"


@cocotb.test()
async def attention_end_to_end(dut):
    """Host runtime -> UART -> shell -> Taylor engine, bit-exact against golden/taylor.py."""
    import dataclasses
    import json
    import os
    from pathlib import Path

    from celine.golden.taylor import TaylorRegisters
    from celine.sim.case import ENV_VAR

    case, host, bit_s = await start(dut)

    def host_thread():
        dev = Device.open("sim", transport=host, timeout=40_000 * bit_s)
        out = []
        for job in case.data["attention"]:
            registers = job.get("registers")
            result = dev.attention(
                torch.tensor(job["q"]), torch.tensor(job["k"]), torch.tensor(job["v"]),
                registers=TaylorRegisters(**registers) if registers else None,
                head_mask=job["head_mask"], scales=job.get("scales"),
                out_scale=job.get("out_scale"))
            out.append((job, result, dev.engine.last_registers, dev.status()))
        return dev.info, out

    info, results = await bridge(host_thread)()
    assert info == case.data["info"], "INFO differs from the shell's description"
    cycles = []
    for n, (job, result, registers, report) in enumerate(results):
        outs = [result] if isinstance(result, torch.Tensor) else result
        assert dataclasses.asdict(registers) == job["expected_registers"], f"job {n}"
        assert [o.tolist() for o in outs] == job["expected"], f"job {n}: outputs differ"
        assert not report.busy and report.engine_errors == 0
        assert report.cycles <= job["max_cycles"], f"job {n}: {report.cycles} cycles"
        cycles.append(report.cycles)
    out = Path(os.environ[ENV_VAR]).parent / "attention.json"
    out.write_text(json.dumps({"cycles": cycles}))


@cocotb.test()
async def link_throughput(dut):
    """Large WRITE and READ through the host runtime; writes link.json (simulated time)."""
    import json
    import os
    from pathlib import Path

    from celine.sim.case import ENV_VAR

    case, host, bit_s = await start(dut)
    size = case.data["bytes"]
    payload = bytes((k * 131 + 7) & 0xFF for k in range(size))

    def host_thread():
        dev = Device.open("sim", transport=host, timeout=40_000 * bit_s)
        buffer = case.data["buffer"]
        start = host.now()
        dev.write_buffer(buffer, 0, payload)
        written = host.now()
        back = dev.read_buffer(buffer, 0, size)
        done = host.now()
        return back, written - start, done - written

    back, write_s, read_s = await bridge(host_thread)()
    assert back == payload, "read back differs from what was written"
    out = Path(os.environ[ENV_VAR]).parent / "link.json"
    out.write_text(json.dumps({"bytes": size, "write_seconds": write_s, "read_seconds": read_s,
                               "baud": case.params["shell"]["baud"]}))
