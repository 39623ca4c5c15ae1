"""`celine bench` for the shell: ECP5 Fmax over seeds, and the host link's payload rate.

fpga: the default design (the registry's first engine, default parameters) inside the
shell on ULX3S-85F, placed and routed with three nextpnr seeds. link: in RTL simulation
(Verilator), the host runtime writes and reads back LINK_BYTES of the default design's
largest host-writable buffer through the simulated UART; payload bytes per second of
simulated time against the line's byte rate (baud / 10). Writes <out>/shell.json.
"""

import json
import sys
from pathlib import Path

from .. import registry
from ..rtl.shell.shell import build_shell
from ..sim.emit import write_if_changed
from ..sim.runner import run_cocotb

LINK_CLOCK_HZ = 100_000_000     # the testbench clock
LINK_DIVISOR = 8                # clock cycles per bit in the link measurement
LINK_BYTES = 8192


def log(message):
    print(f"[bench shell] {message}", file=sys.stderr, flush=True)


def measure_link():
    baud = LINK_CLOCK_HZ // LINK_DIVISOR
    shell = dict(clock_hz=LINK_CLOCK_HZ, baud=baud)
    design = build_shell(**shell)
    buffer = max((b for b in design.buffers if b.writable), key=lambda b: b.size)
    size = min(LINK_BYTES, buffer.size)
    log(f"link: writing and reading {size} bytes of buffer {buffer.name!r} at {baud} baud "
        f"in simulation ...")
    case = run_cocotb(design, toplevel="bench_shell_link",
                      test_module="celine.sim.tb.shell_tb", case_id="bench_shell_link",
                      testcase="link_throughput", params={"shell": shell},
                      data={"bytes": size, "buffer": buffer.name}, optimize=True)
    result = json.loads((case / "link.json").read_text())
    write_rate = result["bytes"] / result["write_seconds"]
    read_rate = result["bytes"] / result["read_seconds"]
    line = baud / 10
    link = {
        "line_rate_baud": baud,
        "payload_bytes_per_s_write": round(write_rate),
        "payload_bytes_per_s_read": round(read_rate),
        "payload_fraction_of_line_rate": round(min(write_rate, read_rate) / line, 4),
        "bytes": result["bytes"],
        "clock_cycles_per_bit": LINK_DIVISOR,
    }
    log(f"link: write {write_rate:.0f} B/s, read {read_rate:.0f} B/s, "
        f"{link['payload_fraction_of_line_rate']:.1%} of {line:.0f} B/s")
    return link


def measure_fpga(board, seeds):
    from .bitstream import bench_build
    builds = [bench_build(board, registry.DEFAULT, seed=seed, log=log,
                          out=Path("build/bench/fpga") / f"seed{seed}") for seed in seeds]
    return {"board": board, "seeds": list(seeds), "fmax_mhz": [b["fmax_mhz"] for b in builds],
            "clock_mhz": builds[0]["clock_mhz"], "utilization": builds[0]["utilization"],
            "step_seconds": [b["step_seconds"] for b in builds]}


def run(out, *, quick=False, fpga=True, board="ulx3s-85f", seeds=(1, 2, 3)):
    """The shell benchmark (`celine bench --only shell`); `quick` has no effect."""
    result = {"link": measure_link()}
    if fpga:
        result["fpga"] = measure_fpga(board, seeds)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "shell.json"
    write_if_changed(path, json.dumps(result, indent=2) + "\n")
    log(f"wrote {path}")
    return result
