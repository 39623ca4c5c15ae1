"""cocotb testbench: the MAC array's Verilog against golden/mac.py.

Case parameters: the MacArrayParams fields. Case data: `tiles` (see sim/mac_cases.py),
`idle_prob`, `backpressure_prob`; the `throughput` test also writes `throughput.json`
(cycles from the first input beat to the last output beat) into the case directory.
"""

import json
import os
from pathlib import Path

import cocotb
from cocotb.triggers import ClockCycles, RisingEdge
from cocotb.utils import get_sim_time

from celine.rtl.mac.array import operand_layout
from celine.engines.mac.spec import MacArrayParams
from celine.rtl.mac.result_drain import REQUANT_LAYOUT, output_layout
from celine.sim.case import ENV_VAR, load_case
from celine.sim.payload import pack
from celine.sim.scoreboard import Scoreboard
from celine.sim.streams import StreamSink, StreamSource, start_clock_and_reset

PERIOD_NS = 10


class TB:
    def __init__(self, dut, case, *, idle_prob=0.0, backpressure_prob=0.0):
        self.dut = dut
        self.params = p = MacArrayParams.from_dict(case.params)
        self.act = StreamSource(dut, "act", operand_layout(p.act_lanes, p.operand_width),
                                dut.clk, idle_prob=idle_prob, seed=case.seed + 1)
        self.weight = StreamSource(dut, "weight", operand_layout(p.weight_lanes, p.operand_width),
                                   dut.clk, idle_prob=idle_prob, seed=case.seed + 2)
        self.sink = StreamSink(dut, "o", output_layout(p), dut.clk,
                               backpressure_prob=backpressure_prob, seed=case.seed + 3)
        self.scoreboard = Scoreboard()
        dut.precision.value = p.precisions[0]
        dut.rps_enable.value = 0
        self.settings = (p.precisions[0], 0)      # (precision, rps_enable) as driven
        dut.requant.value = 0
        dut.clear_errors.value = 0

    def apply(self, tile):
        """Drive the tile's settings; returns whether the precision or RPS switch changed."""
        settings = (tile["request"], tile["rps"])
        changed, self.settings = settings != self.settings, settings
        self.dut.precision.value, self.dut.rps_enable.value = settings
        self.dut.requant.value = pack(REQUANT_LAYOUT, tile["requant"])
        return changed

    async def configure(self, tile):
        """Apply the tile's settings; a changed precision or RPS switch is held a cycle
        before the tile's first beat, as the array requires."""
        if self.apply(tile):
            await RisingEdge(self.dut.clk)

    @staticmethod
    def beats(rows):
        return [{"data": row, "last": int(k == len(rows) - 1)} for k, row in enumerate(rows)]

    def expect(self, tile):
        rows = tile["expected"]
        self.scoreboard.add_expected("o", [
            {"data": row, "last": int(k == len(rows) - 1), "precision": tile["precision"]}
            for k, row in enumerate(rows)])

    async def send_tile(self, tile):
        """Apply the tile's settings, then send its beats; returns when both are taken."""
        await self.configure(tile)
        sends = [cocotb.start_soon(self.act.send(self.beats(tile["act"]))),
                 cocotb.start_soon(self.weight.send(self.beats(tile["weight"])))]
        for task in sends:
            await task

    def budget(self, tiles, slack):
        beats = sum(len(t["act"]) * 4 + len(t["expected"]) for t in tiles)
        return int(beats * slack) + 200

    async def finish(self, count, timeout):
        received = await self.sink.receive(count, timeout_cycles=timeout)
        self.scoreboard.check("o", received)
        await ClockCycles(self.dut.clk, 20)
        self.scoreboard.check("o", self.sink.beats)          # nothing extra arrived
        assert int(self.dut.errors.value) == 0, f"error flags set: {int(self.dut.errors.value):#b}"
        assert int(self.dut.busy.value) == 0, "busy after all results left"


@cocotb.test()
async def tiles_match_golden(dut):
    """Every tile, precision switched between tiles, under random idle and backpressure."""
    case = load_case()
    await start_clock_and_reset(dut)
    tb = TB(dut, case, idle_prob=case.data["idle_prob"],
            backpressure_prob=case.data["backpressure_prob"])
    tiles = case.data["tiles"]
    for tile in tiles:
        tb.expect(tile)
        await tb.send_tile(tile)
    slack = 1 / (1 - case.data["idle_prob"]) / (1 - case.data["backpressure_prob"]) * 2
    await tb.finish(sum(len(t["expected"]) for t in tiles), tb.budget(tiles, slack))


@cocotb.test()
async def throughput(dut):
    """Back-to-back tiles at one precision, no stalls: cycles from first beat to last row."""
    case = load_case()
    await start_clock_and_reset(dut)
    tb = TB(dut, case)
    tiles = case.data["tiles"]
    # Sources made now offer their first beat at the next edge: the settings lead it.
    tb.apply(tiles[0])
    for tile in tiles:
        tb.expect(tile)
        tb.act.send_nowait(tb.beats(tile["act"]))
        tb.weight.send_nowait(tb.beats(tile["weight"]))
    start = get_sim_time("ns")
    count = sum(len(t["expected"]) for t in tiles)
    received = await tb.sink.receive(count, timeout_cycles=tb.budget(tiles, 2))
    cycles = round((get_sim_time("ns") - start) / PERIOD_NS)
    tb.scoreboard.check("o", received)
    out = Path(os.environ[ENV_VAR]).parent / "throughput.json"
    out.write_text(json.dumps({"cycles": cycles, "tiles": len(tiles),
                               "beats": sum(len(t["act"]) for t in tiles)}))


@cocotb.test()
async def error_flags(dut):
    """Disagreeing `last` flags and an unsupported precision raise the sticky flags."""
    case = load_case()
    await start_clock_and_reset(dut)
    tb = TB(dut, case)
    p = tb.params
    dut.precision.value = p.precisions[-1]
    await RisingEdge(dut.clk)                  # settings lead a tile's first beat
    await cocotb.triggers.Combine(
        cocotb.start_soon(tb.act.send([{"data": [0] * p.act_lanes, "last": 1}])),
        cocotb.start_soon(tb.weight.send([{"data": [0] * p.weight_lanes, "last": 0}])))
    await ClockCycles(dut.clk, 2)
    assert int(dut.errors.value) & 1, "framing error not flagged"
    assert not int(dut.errors.value) & 2, "precision error flagged for a supported precision"
    dut.precision.value = 3
    await RisingEdge(dut.clk)
    await cocotb.triggers.Combine(
        cocotb.start_soon(tb.act.send([{"data": [0] * p.act_lanes, "last": 1}])),
        cocotb.start_soon(tb.weight.send([{"data": [0] * p.weight_lanes, "last": 1}])))
    await ClockCycles(dut.clk, 2)
    assert int(dut.errors.value) & 2, "unsupported precision not flagged"
    # Both tiles still produce their rows (at the largest precision for the bad one).
    await tb.sink.receive(2 * p.tile_rows(p.precisions[-1]), timeout_cycles=200)
