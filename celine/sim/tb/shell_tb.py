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


@cocotb.test()
async def fuzz_matches_golden(dut):
    """The link fuzzer's bursts (celine/sim/fuzz.py) against the golden shell model, live.

    Case params: `accel`, `params` (its generator parameters), `options` (its shell
    options) and `shell`; data: `seeds`, `bursts` and `faulty` (faulty steps a burst).
    Each step goes to the RTL (quiet gaps as pauses) and to the model; the RTL's reply
    bytes must equal the model's, with nothing after them. A step that made the model run
    the engine (a frame made valid by a corrupted byte) is waited out: STATUS until the
    RTL is idle, then the model takes the RTL's cycle count (the only figure a run leaves
    that the model estimates). Stops a seed at its first difference; writes fuzz.json
    beside the case: per seed the counts and the first difference."""
    import json
    import os
    from pathlib import Path

    from celine.golden.shell import shell_model
    from celine.registry import get
    from celine.sim.case import ENV_VAR
    from celine.sim.fuzz import LinkFuzzer, expected, settle_bits
    from celine.spec.protocol import (STATUS_BYTES, Command, FRAME_OVERHEAD, encode_request,
                                      parse_status)

    case, host, bit_s = await start(dut)
    p, shell = case.params, case.params["shell"]
    record = get(p["accel"])
    settle = settle_bits(shell["timeout_bits"])

    # one device for every seed, as the RTL keeps its buffers from one seed to the next
    model = shell_model(p["accel"], record.params.from_dict(p["params"]), **shell,
                        **p["options"])

    def fuzz_seed(seed):
        fuzz = LinkFuzzer(model.info(), seed, max_payload=shell["max_payload"],
                          timeout_bits=shell["timeout_bits"])
        counts = {"seed": seed, "steps": 0, "faulty_frames": 0, "valid_frames": 0,
                  "mismatches": 0, "hangs": 0, "corrupted_buffers": 0, "engine_runs": 0,
                  "first_difference": None}
        for burst in range(case.data["bursts"]):
            for step in fuzz.burst(case.data["faulty"]):
                want, ran = expected(model, step)
                for segment in step.segments:
                    if isinstance(segment, int):
                        host.pause(segment * bit_s)
                    else:
                        host.write(segment)
                # the replies' line time, a frame's timeout, and the shell's work on the
                # bytes sent (a WRITE's payload goes into its buffer after the CRC passes)
                budget = settle + 12 * len(want) + 2 * len(step.sent) + 40
                got = host.read(len(want), timeout=budget * bit_s)
                got += host.read(1, timeout=20 * bit_s)       # nothing may follow
                counts["steps"] += 1
                counts["valid_frames" if step.valid else "faulty_frames"] += 1
                if got != want:
                    counts["mismatches"] += 1
                    counts["hangs"] += len(got) < len(want)
                    counts["corrupted_buffers"] += step.kind == "read_back"
                    counts["first_difference"] = {"burst": burst, "step": repr(step),
                                                  "expected": want.hex(), "got": got.hex()}
                    return counts
                if ran:
                    counts["engine_runs"] += 1
                    while True:
                        host.write(encode_request(Command.STATUS, 0))
                        reply = host.read(FRAME_OVERHEAD + STATUS_BYTES, timeout=1000 * bit_s)
                        report = parse_status(reply[5:5 + STATUS_BYTES])
                        if not report.busy:
                            break
                        host.pause(1000 * bit_s)
                    model.cycles = report.cycles
        return counts

    def host_thread():
        return [fuzz_seed(seed) for seed in case.data["seeds"]]

    results = await bridge(host_thread)()
    Path(os.environ[ENV_VAR]).with_name("fuzz.json").write_text(json.dumps(results, indent=1))
    for result in results:
        assert result["first_difference"] is None, \
            f"seed {result['seed']}: {result['first_difference']}"
