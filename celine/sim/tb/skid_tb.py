"""cocotb testbench: SkidBuffer Verilog under random idle and backpressure.

Case parameters (``load_case().params``): ``lanes``, ``width`` (and ``registered_output``,
which the testbench need not read: both forms keep every beat); data: ``beats``,
``idle_prob``, ``backpressure_prob``.
"""

import random

import cocotb
from amaranth.hdl import signed
from amaranth.lib import data

from celine.sim.case import load_case
from celine.sim.scoreboard import Scoreboard
from celine.sim.streams import StreamSink, StreamSource, start_clock_and_reset


def frame_layout(lanes, width):
    return data.StructLayout({"data": data.ArrayLayout(signed(width), lanes), "last": 1})


class TB:
    def __init__(self, dut, case):
        self.dut = dut
        self.case = case
        self.layout = frame_layout(case.params["lanes"], case.params["width"])
        self.rng = random.Random(case.seed)
        self.source = StreamSource(dut, "i", self.layout, dut.clk,
                                   idle_prob=case.data["idle_prob"], seed=case.seed + 1)
        self.sink = StreamSink(dut, "o", self.layout, dut.clk,
                               backpressure_prob=case.data["backpressure_prob"], seed=case.seed + 2)
        self.scoreboard = Scoreboard()

    def random_beats(self, count):
        width, lanes = self.case.params["width"], self.case.params["lanes"]
        lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
        beats = [{"data": [self.rng.randint(lo, hi) for _ in range(lanes)],
                  "last": int(self.rng.random() < 0.2)} for _ in range(count)]
        beats[0]["data"] = [lo, hi] * (lanes // 2) + [lo] * (lanes % 2)
        return beats


@cocotb.test()
async def random_idle_and_backpressure(dut):
    case = load_case()
    tb = TB(dut, case)   # drives valid/ready low from time 0 (Icarus has Z otherwise)
    await start_clock_and_reset(dut)
    beats = tb.random_beats(case.data["beats"])
    tb.scoreboard.add_expected("o", beats)
    tb.source.send_nowait(beats)
    received = await tb.sink.receive(len(beats), timeout_cycles=20 * len(beats) + 100)
    await tb.source.wait_idle(timeout_cycles=10)
    tb.scoreboard.check("o", received)
    # Nothing extra arrives afterwards.
    for _ in range(10):
        await cocotb.triggers.RisingEdge(dut.clk)
    tb.scoreboard.check("o", tb.sink.beats)


@cocotb.test()
async def full_throughput_without_stalls(dut):
    case = load_case()
    layout = frame_layout(case.params["lanes"], case.params["width"])
    source = StreamSource(dut, "i", layout, dut.clk)
    sink = StreamSink(dut, "o", layout, dut.clk)
    await start_clock_and_reset(dut)
    beats = [{"data": [i % 8] * case.params["lanes"], "last": 0} for i in range(32)]
    start = cocotb.utils.get_sim_time("ns")
    source.send_nowait(beats)
    received = await sink.receive(len(beats), timeout_cycles=200)
    cycles = (cocotb.utils.get_sim_time("ns") - start) / 10
    assert received == beats
    assert cycles <= len(beats) + 4, f"{len(beats)} beats took {cycles} cycles"
