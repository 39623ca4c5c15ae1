"""cocotb testbench: the activation engine's Verilog against golden/activation.py.

Case parameters: the ActivationParams fields (and `shell` for the shell test). Case data
per test:
- lookup_matches_golden, lookup_throughput (top: rtl/activation/lookup.py TableLookup):
  `batches` [{"table": 256 ints, "beats": [{"data", "last"}], "expected": beats}], each
  table written through the table port, then its beats streamed under `idle_prob` (input)
  and `backpressure_prob` (output). lookup_throughput streams the first batch with no
  stalls and writes `throughput.json` (cycles from the first beat offered to the last
  taken, inclusive).
- adapter_runs (top: ActivationShellAdapter, its buffers modelled here): `runs` [{"words",
  "load_table", "table" (written to the table buffer first, if given), "x" (words),
  "expected" (y words 0 .. words - 1), "errors", "cycles" (the cycle model's; null to skip
  the check)}] back to back; writes `adapter.json` with the measured cycles.
- shell_end_to_end (top: the shell with the engine): `jobs` [{"x", "table" or
  "in_scale"/"out_scale", "expected"}] through the host runtime (Device, dev.activation),
  checked == against the golden results; `info` the expected INFO; writes
  `activation.json` with each job's engine cycles.
"""

import json
import os
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.task import bridge
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge
from cocotb.utils import get_sim_time

from celine.engines.activation.spec import ELEMENT_BITS, ActivationParams, buffers
from celine.rtl.activation.lookup import beat_layout
from celine.sim.case import ENV_VAR, load_case
from celine.sim.scoreboard import check_beats
from celine.sim.streams import StreamSink, StreamSource, start_clock_and_reset

PERIOD_NS = 10


def _out_path(name):
    return Path(os.environ[ENV_VAR]).parent / name


# -- the lookup core ---------------------------------------------------------------------

class LookupTB:
    def __init__(self, dut, case, *, idle_prob=0.0, backpressure_prob=0.0):
        self.dut = dut
        self.params = ActivationParams.from_dict(case.params)
        layout = beat_layout(self.params.lanes)
        self.source = StreamSource(dut, "i", layout, dut.clk, idle_prob=idle_prob,
                                   seed=case.seed + 1)
        self.sink = StreamSink(dut, "o", layout, dut.clk, backpressure_prob=backpressure_prob,
                               seed=case.seed + 2)
        dut.table__en.value = 0
        dut.table__addr.value = 0
        dut.table__data.value = 0

    async def write_table(self, table, rng=None, idle_prob=0.0):
        """The 256 entries through the table port, in a shuffled order, with idle cycles."""
        dut = self.dut
        order = list(range(len(table)))
        if rng is not None:
            rng.shuffle(order)
        for addr in order:
            while rng is not None and rng.random() < idle_prob:
                dut.table__en.value = 0
                await RisingEdge(dut.clk)
            dut.table__addr.value = addr
            dut.table__data.value = table[addr] & ((1 << ELEMENT_BITS) - 1)
            dut.table__en.value = 1
            await RisingEdge(dut.clk)
        dut.table__en.value = 0


@cocotb.test()
async def lookup_matches_golden(dut):
    """Every batch: a table through the port, then its beats under idle and backpressure."""
    import random
    case = load_case()
    idle, backpressure = case.data["idle_prob"], case.data["backpressure_prob"]
    tb = LookupTB(dut, case, idle_prob=idle, backpressure_prob=backpressure)
    rng = random.Random(case.seed + 3)
    await start_clock_and_reset(dut)
    slack = 4 / (1 - idle) / (1 - backpressure)
    received = 0
    for n, batch in enumerate(case.data["batches"]):
        await tb.write_table(batch["table"], rng, idle)
        tb.source.send_nowait(batch["beats"])
        count = received + len(batch["expected"])
        beats = await tb.sink.receive(count, timeout_cycles=int(slack * count) + 100)
        check_beats(batch["expected"], beats[received:], name=f"o (batch {n})")
        received = count
        assert tb.source.idle(), f"batch {n}: input beats left over"
    await ClockCycles(dut.clk, 20)
    assert len(tb.sink.beats) == received, "extra output beats"


@cocotb.test()
async def lookup_throughput(dut):
    """The first batch with no stalls: one beat a cycle, after the lookup's latency."""
    case = load_case()
    tb = LookupTB(dut, case)
    await start_clock_and_reset(dut)
    batch = case.data["batches"][0]
    await tb.write_table(batch["table"])
    start = get_sim_time("ns")
    tb.source.send_nowait(batch["beats"])
    beats = await tb.sink.receive(len(batch["expected"]),
                                  timeout_cycles=2 * len(batch["expected"]) + 100)
    cycles = round((get_sim_time("ns") - start) / PERIOD_NS)
    check_beats(batch["expected"], beats)
    _out_path("throughput.json").write_text(json.dumps({"beats": len(beats),
                                                        "cycles": cycles}))


# -- the shell adapter, its buffers modelled here ---------------------------------------

def _address(port, depth):
    """The value of an address port; a one-word buffer's port is zero bits wide, which
    Yosys leaves undriven (X on Icarus): its address is 0."""
    return 0 if depth == 1 else int(port.value)


class Buffers:
    """The shell's buffers as the adapter sees them: a host-writable buffer shows the word
    of the address of its read latency's cycles before (BufferSpec.read_latency); a
    `write` lands at the end of its cycle."""

    def __init__(self, dut, params):
        self.dut = dut
        self.table = [0] * 256
        self.x = [0] * params.max_words
        self.y = [0] * params.max_words
        self.latency = {spec.name: spec.read_latency for spec in buffers(params)}
        self.running = True
        self._task = cocotb.start_soon(self._serve())

    async def _serve(self):
        dut = self.dut
        read = {"table": [0] * 3, "x": [0] * 3}    # each buffer's words read, newest last
        while self.running:
            await FallingEdge(dut.clk)
            table_addr = int(dut.mem__table__addr.value)
            x_addr = _address(dut.mem__x__addr, len(self.x))
            read["table"] = read["table"][1:] + [self.table[table_addr]]
            read["x"] = read["x"][1:] + [self.x[x_addr] if x_addr < len(self.x) else 0]
            if int(dut.mem__y__write.value):
                self.y[_address(dut.mem__y__addr, len(self.y))] = int(dut.mem__y__data.value)
            await RisingEdge(dut.clk)
            dut.mem__table__data.value = read["table"][-self.latency["table"]]
            dut.mem__x__data.value = read["x"][-self.latency["x"]]


@cocotb.test()
async def adapter_runs(dut):
    """Runs back to back: y, result_words, errors and cycles (the cycle model's)."""
    case = load_case()
    dut.start.value = 0
    dut.registers.value = 0
    dut.mem__table__data.value = 0
    dut.mem__x__data.value = 0
    Clock(dut.clk, PERIOD_NS, unit="ns").start(start_high=False)
    dut.rst.value = 1
    await ClockCycles(dut.clk, 2)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    params = ActivationParams.from_dict(case.params)
    buffers = Buffers(dut, params)
    measured = []
    for n, run in enumerate(case.data["runs"]):
        if run.get("table") is not None:
            buffers.table = [v & 0xFF for v in run["table"]]
        buffers.x[:len(run["x"])] = run["x"]
        dut.registers.value = (run["load_table"] << 32) | run["words"]
        await RisingEdge(dut.clk)
        dut.start.value = 1
        await RisingEdge(dut.clk)
        dut.start.value = 0
        limit = 2 * (256 + params.max_words) + 100
        for _ in range(limit):
            await FallingEdge(dut.clk)
            if not int(dut.busy.value):
                break
            await RisingEdge(dut.clk)
        else:
            raise AssertionError(f"run {n}: busy after {limit} cycles")
        await RisingEdge(dut.clk)
        cycles, errors = int(dut.cycles.value), int(dut.errors.value)
        result_words = int(dut.result_words.value)
        measured.append(cycles)
        assert errors == run["errors"], f"run {n}: errors {errors:#x}, not {run['errors']:#x}"
        if errors:
            assert result_words == 0, f"run {n}: wrote {result_words} words despite errors"
            continue
        assert result_words == run["words"], f"run {n}: result_words {result_words}"
        got = buffers.y[:run["words"]]
        bad = [i for i, (a, b) in enumerate(zip(got, run["expected"])) if a != b]
        assert not bad, (f"run {n}: {len(bad)} words of y differ, first word {bad[0]}: "
                         f"{got[bad[0]]:#x}, expected {run['expected'][bad[0]]:#x}")
        if run["cycles"] is not None:
            assert cycles == run["cycles"], f"run {n}: {cycles} cycles, model {run['cycles']}"
    buffers.running = False
    _out_path("adapter.json").write_text(json.dumps({"cycles": measured}))


# -- end to end through the shell --------------------------------------------------------

@cocotb.test()
async def shell_end_to_end(dut):
    """Host runtime -> UART -> shell -> activation engine, == against the golden results."""
    import numpy as np

    from celine.firmware.device import Device
    from celine.sim.shell_host import start_shell

    case, host, bit_s = await start_shell(dut)

    def host_thread():
        dev = Device.open("sim", transport=host, timeout=40_000 * bit_s)
        out = []
        for job in case.data["jobs"]:
            x = np.array(job["x"], dtype=np.int64)
            if "table" in job:
                result = dev.activation.apply(x, job["table"])
            else:
                result = dev.gelu(x, job["in_scale"], job.get("out_scale"))
            out.append((result, dev.activation.last_cycles, dev.status()))
        return dev.info, out

    info, results = await bridge(host_thread)()
    assert info == case.data["info"], "INFO differs from the shell's description"
    cycles = []
    for n, (job, (result, engine_cycles, report)) in enumerate(zip(case.data["jobs"],
                                                                    results)):
        assert result.tolist() == job["expected"], f"job {n}: results differ"
        assert not report.busy and report.engine_errors == 0, f"job {n}: {report}"
        if job.get("cycles") is not None:
            assert engine_cycles == job["cycles"], \
                f"job {n}: {engine_cycles} cycles, model {job['cycles']}"
        cycles.append(engine_cycles)
    _out_path("activation.json").write_text(json.dumps({"cycles": cycles}))
