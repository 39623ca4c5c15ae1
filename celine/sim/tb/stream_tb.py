"""cocotb testbench: any component with one input stream `i` and one output stream `o`
(amaranth.lib.stream: ports i__payload/i__valid/i__ready, o__payload/o__valid/o__ready),
its payloads as plain integers (the bits of the Verilog ports), checked `==` against
expected output beats under random idle cycles on `i` and random backpressure on `o`.

Case data (sim/case.py, written by sim/runner.py run_cocotb):
- `runs`: [{"beats": [int], "expected": [int], and optionally "pulse", "final",
  "idle_prob", "backpressure_prob"}], one after another: the run's `pulse` ports are
  driven to their values for one cycle (then back to 0), its input beats are queued, exactly
  len(expected) output beats are collected and compared (`==`, the first differing index
  reported), every input beat must have been taken, and after `settle_cycles` more cycles
  no extra output beat may have arrived and each port of `final` must hold its value.
  `idle_prob`/`backpressure_prob` of a run override the case's for that run.
- `idle_prob`, `backpressure_prob`: the probability of an idle cycle before each input
  beat and of `o__ready` low in a cycle.
- `inputs` (optional): {port: int} constant inputs, driven from time 0 (before reset).
  Every input port besides clk, rst and the streams' should be here or in a run's `pulse`
  (Icarus leaves undriven inputs Z); a `pulse` port not in `inputs` rests at 0.
- `final` (optional): {port: int} checked after the last run (as a run's `final`).
- `settle_cycles` (optional, default 8), `timeout_cycles` (optional: the budget of a run,
  default from its beats and the stall probabilities).
Port values are unsigned integers (the port's bits).
"""

import cocotb
from amaranth.hdl import unsigned
from cocotb.triggers import ClockCycles, RisingEdge

from celine.sim.case import load_case
from celine.sim.streams import StreamSink, StreamSource, start_clock_and_reset

__all__ = ["first_difference_index"]

SETTLE_CYCLES = 8


def first_difference_index(expected, received):
    """The first index where the lists differ (the shorter one's length if one is a
    prefix of the other), or None when they are equal."""
    for n, (want, got) in enumerate(zip(expected, received)):
        if want != got:
            return n
    return None if len(expected) == len(received) else min(len(expected), len(received))


def _port(dut, name):
    try:
        return getattr(dut, name)
    except AttributeError:
        raise AssertionError(f"the design has no port {name!r}") from None


def _check_ports(dut, values, where):
    """Each port of `values` holds its value (as an unsigned integer)."""
    for name, want in values.items():
        handle = _port(dut, name)
        try:
            got = int(handle.value)
        except ValueError:
            raise AssertionError(f"{where}: port {name} is {handle.value} (not 0/1 only), "
                                 f"expected {want:#x}") from None
        assert got == want, f"{where}: port {name} is {got:#x}, expected {want:#x}"


def _budget(run, idle_prob, backpressure_prob, override):
    if override is not None:
        return override
    slack = 4 / max(1 - idle_prob, 0.05) / max(1 - backpressure_prob, 0.05)
    return int(slack * (len(run["beats"]) + len(run["expected"]))) + 500


@cocotb.test()
async def runs_match_expected(dut):
    """Every run: its input beats in, exactly its expected output beats out (==)."""
    case = load_case()
    data = case.data
    idle, backpressure = data["idle_prob"], data["backpressure_prob"]
    settle = data.get("settle_cycles", SETTLE_CYCLES)
    inputs = dict(data.get("inputs", {}))
    for run in data["runs"]:
        for name in run.get("pulse", {}):
            inputs.setdefault(name, 0)
    for name, value in inputs.items():
        _port(dut, name).value = value
    source = StreamSource(dut, "i", unsigned(len(dut.i__payload)), dut.clk,
                          idle_prob=idle, seed=case.seed + 1)
    sink = StreamSink(dut, "o", unsigned(len(dut.o__payload)), dut.clk,
                      backpressure_prob=backpressure, seed=case.seed + 2)
    await start_clock_and_reset(dut)

    received = 0
    for n, run in enumerate(data["runs"]):
        source.idle_prob = run.get("idle_prob", idle)
        sink.backpressure_prob = run.get("backpressure_prob", backpressure)
        timeout = _budget(run, source.idle_prob, sink.backpressure_prob,
                          data.get("timeout_cycles"))
        pulse = run.get("pulse", {})
        if pulse:
            for name, value in pulse.items():
                _port(dut, name).value = value
            await RisingEdge(dut.clk)
            for name in pulse:
                _port(dut, name).value = inputs[name]
        expected = run["expected"]
        source.send_nowait(run["beats"])
        count = received + len(expected)
        beats = (await sink.receive(count, timeout_cycles=timeout))[received:]
        index = first_difference_index(expected, beats)
        assert index is None, (
            f"run {n}: output beat {index} of {len(expected)} is {beats[index]:#x}, "
            f"expected {expected[index]:#x} "
            f"({sum(a != b for a, b in zip(expected, beats))} beats differ)")
        await source.wait_idle(timeout_cycles=timeout)
        await ClockCycles(dut.clk, settle)
        assert len(sink.beats) == count, (
            f"run {n}: {len(sink.beats) - count} extra output beats, the first "
            f"{sink.beats[count]:#x}")
        _check_ports(dut, run.get("final", {}), f"run {n}")
        received = count
    _check_ports(dut, data.get("final", {}), "at the end")
    source.stop()
    sink.stop()
