"""cocotb testbench: the Taylor-attention pipeline's Verilog against golden/taylor.py.

Case parameters: the TaylorParams fields. Case data: `runs` (see sim/taylor_cases.py),
`idle_prob`, `backpressure_prob`. The `throughput` test runs the first run with no idle
cycles and no backpressure and writes `throughput.json` (cycles from the cycle `start` is
high to the cycle the last output beat is taken, inclusive: engines/taylor/cycles.py's count).
"""

import json
import os
from pathlib import Path

import cocotb
from cocotb.triggers import ClockCycles, RisingEdge
from cocotb.utils import get_sim_time

from celine.engines.taylor.spec import TaylorParams
from celine.rtl.taylor.row_loader import beat_layout
from celine.sim.case import ENV_VAR, load_case
from celine.sim.scoreboard import check_beats
from celine.sim.streams import StreamSink, StreamSource, start_clock_and_reset

PERIOD_NS = 10
FRAMING, TOKENS = 1, 2          # bits of `errors`


class TB:
    def __init__(self, dut, case, *, idle_prob=0.0, backpressure_prob=0.0):
        self.dut = dut
        self.params = p = TaylorParams.from_dict(case.params)
        layout = beat_layout(p.operand_width)
        self.source = StreamSource(dut, "i", layout, dut.clk, idle_prob=idle_prob,
                                   seed=case.seed + 1)
        self.sink = StreamSink(dut, "o", layout, dut.clk, backpressure_prob=backpressure_prob,
                               seed=case.seed + 2)
        dut.start.value = 0
        dut.tokens.value = 1
        dut.head_mask.value = 0

    async def launch(self, run):
        """Apply the run's settings and pulse `start` (returns after the sampling edge)."""
        dut = self.dut
        dut.tokens.value = run["tokens"]
        dut.head_mask.value = run["head_mask"]
        for name, value in run["registers"].items():
            getattr(dut, name).value = value
        dut.start.value = 1
        await RisingEdge(dut.clk)
        dut.start.value = 0

    def budget(self, run, slack):
        heads = len(run["expected"]) // max(1, run["tokens"] * self.params.row_beats)
        per_head = 2 * run["tokens"] * self.params.blocks + self.params.blocks * self.params.tile_rows
        return int(slack * (heads + 1) * (per_head + 200)) + 1000

    async def run(self, run, slack):
        received_before = len(self.sink.beats)
        await self.launch(run)
        self.source.send_nowait(run["beats"])
        count = received_before + len(run["expected"])
        received = await self.sink.receive(count, timeout_cycles=self.budget(run, slack))
        check_beats(run["expected"], received[received_before:],
                    name=f"o (tokens={run['tokens']}, head_mask={run['head_mask']:#b})")
        for _ in range(50):
            if not int(self.dut.busy.value):
                break
            await RisingEdge(self.dut.clk)
        assert not int(self.dut.busy.value), "busy after every output beat left"
        assert self.source.idle(), "input beats left over"
        assert int(self.dut.errors.value) == 0, f"error flags set: {int(self.dut.errors.value):#b}"


@cocotb.test()
async def runs_match_golden(dut):
    """Every run, back to back, under random idle cycles and backpressure."""
    case = load_case()
    idle, backpressure = case.data["idle_prob"], case.data["backpressure_prob"]
    tb = TB(dut, case, idle_prob=idle, backpressure_prob=backpressure)
    await start_clock_and_reset(dut)
    slack = 1 / (1 - idle) / (1 - backpressure) * 2
    for run in case.data["runs"]:
        await tb.run(run, slack)
    await ClockCycles(dut.clk, 20)
    assert len(tb.sink.beats) == sum(len(r["expected"]) for r in case.data["runs"]), \
        "extra output beats"


@cocotb.test()
async def throughput(dut):
    """The first run with no stalls: writes the cycle count for the cycle model."""
    case = load_case()
    tb = TB(dut, case)
    await start_clock_and_reset(dut)
    run = case.data["runs"][0]
    start = get_sim_time("ns")
    await tb.launch(run)
    tb.source.send_nowait(run["beats"])
    received = await tb.sink.receive(len(run["expected"]), timeout_cycles=tb.budget(run, 1.5))
    cycles = round((get_sim_time("ns") - start) / PERIOD_NS)
    check_beats(run["expected"], received)
    out = Path(os.environ[ENV_VAR]).parent / "throughput.json"
    out.write_text(json.dumps({"cycles": cycles, "tokens": run["tokens"],
                               "head_mask": run["head_mask"]}))


@cocotb.test()
async def bad_settings(dut):
    """N = 0 and N > max_tokens are refused (errors.tokens, no run); a wrong `last`
    flags errors.framing while the run still completes on the token count."""
    case = load_case()
    tb = TB(dut, case)
    await start_clock_and_reset(dut)
    p = tb.params
    run = case.data["runs"][0]
    for tokens in (0, p.max_tokens + 1):
        if tokens >= 1 << p.token_width:
            continue                          # not representable on the port
        await tb.launch(dict(run, tokens=tokens))
        await ClockCycles(dut.clk, 2)
        assert int(dut.errors.value) == TOKENS, f"tokens={tokens}: errors {int(dut.errors.value):#b}"
        assert not int(dut.busy.value), f"tokens={tokens}: ran anyway"
        assert int(dut.i__ready.value) == 0, f"tokens={tokens}: takes input"
    beats = [dict(beat) for beat in run["beats"]]
    beats[0]["last"] = 1 - beats[0]["last"]
    await tb.launch(run)
    tb.source.send_nowait(beats)
    received = await tb.sink.receive(len(run["expected"]), timeout_cycles=tb.budget(run, 2))
    check_beats(run["expected"], received)
    assert int(dut.errors.value) == FRAMING, f"errors {int(dut.errors.value):#b}"
    # The next start clears the flags.
    await tb.run(run, 2)
