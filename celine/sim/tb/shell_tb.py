"""cocotb testbench: the shell's Verilog through its UART pins.

Case parameters: `shell` (clock_hz, baud, and the shell's other settings). Case data per
test:
- `script`: steps {"send": hex, "expect": hex}; the bytes the golden model
  (golden/shell.py) replied to the same traffic. Replies must match byte for byte.
- `bytes`, `buffer`: the link throughput measurement (link.json).
"""

import cocotb
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
