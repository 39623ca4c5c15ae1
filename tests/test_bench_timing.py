"""The timing benchmark's bookkeeping (celine/gen/bench_timing.py) and nextpnr's critical
paths summed up (celine.gen.bitstream.critical_paths), without the tools: the builds are
stubbed. The real builds run in `celine bench --only timing`."""

import json

import pytest

from celine.gen import bench_timing
from celine.gen.bitstream import ToolError, critical_paths


def _step(kind, delay, src, dst, net=""):
    return {"type": kind, "net": net, "delay": delay, "from": {"cell": src}, "to": {"cell": dst}}


PNR_REPORT = {"critical_paths": [
    {"from": "posedge clk", "to": "posedge clk", "path": [
        _step("clk-to-q", 0.5, "a_ff", "a_ff"),
        _step("routing", 2.0, "a_ff", "lut1", net="n1"),
        _step("logic", 0.25, "lut1", "lut1"),
        _step("routing", 1.0, "lut1", "b_ff", net="n2"),
        _step("setup", 0.1, "b_ff", "b_ff")]},
    {"from": "posedge clk", "to": "negedge clk", "path": [
        _step("clk-to-q", 0.5, "c_ff", "c_ff"), _step("routing", 0.4, "c_ff", "d_ff", net="n3")]},
    {"from": "posedge x", "to": "posedge x", "path": []},
]}


def test_critical_paths_summed_up():
    paths = critical_paths(PNR_REPORT, segments=1)
    assert [p["from"] for p in paths] == ["a_ff", "c_ff"]       # slowest first; empty dropped
    first = paths[0]
    assert (first["to"], first["delay_ns"], first["logic_ns"], first["routing_ns"],
            first["logic_levels"]) == ("b_ff", 3.85, 0.85, 3.0, 1)
    assert first["slowest_nets"] == [{"net": "n1", "delay_ns": 2.0}]
    assert first["clock"] == "posedge clk -> posedge clk"
    assert critical_paths({}) == []


def _fake_build(fmax_by_seed, failing=()):
    def bench_build(board, accel, *, seed, constraint_mhz, time_limit, out, log):
        assert (board, constraint_mhz, time_limit) == ("ulx3s-85f", 125, 1800)
        if seed in failing:
            raise ToolError("pnr failed\nERROR: pnr stopped after 1800 s without finishing")
        fmax = fmax_by_seed[seed]
        return {"params": {"p": 1}, "seed": seed, "fmax_mhz": fmax, "timing_met": fmax >= 125,
                "critical_paths": [{"from": f"seed{seed}"}],
                "utilization": {"TRELLIS_COMB": {"used": 100 * seed},
                                "MULT18X18D": {"used": 4}},
                "step_seconds": {"pnr": 10.0 * seed}}
    return bench_build


def test_timing_bench_median_seed_and_failures(tmp_path, monkeypatch):
    import celine.gen.bitstream as bitstream
    monkeypatch.setattr(bitstream, "bench_build", _fake_build({1: 130.0, 2: 120.0, 3: 140.0}))
    monkeypatch.chdir(tmp_path)
    result = bench_timing.run(tmp_path / "out", only=["mac"])
    (entry,) = result["designs"]
    assert entry["seeds"] == [{"seed": 1, "fmax_mhz": 130.0, "timing_met": True},
                              {"seed": 2, "fmax_mhz": 120.0, "timing_met": False},
                              {"seed": 3, "fmax_mhz": 140.0, "timing_met": True}]
    assert entry["fmax_median_mhz"] == 130.0
    assert entry["critical_path"] == [{"from": "seed1"}]        # the median seed's
    assert (entry["lut4"], entry["mult18x18d"], entry["ff"]) == (100, 4, None)
    assert json.loads((tmp_path / "out" / "timing.json").read_text()) == result

    monkeypatch.setattr(bitstream, "bench_build", _fake_build({1: 130.0}, failing={2, 3}))
    (entry,) = bench_timing.run(tmp_path / "out", only=["mac"])["designs"]
    assert entry["seeds"][1] == {"seed": 2, "fmax_mhz": None, "timing_met": False,
                                 "error": "ERROR: pnr stopped after 1800 s without finishing"}
    assert entry["fmax_median_mhz"] == 130.0


def test_timing_bench_needs_synthesis(tmp_path):
    assert bench_timing.run(tmp_path, fpga=False) is None
    assert not (tmp_path / "timing.json").exists()


def test_timing_bench_designs():
    assert bench_timing.designs()[0] == "echo"
    assert {"mac", "taylor", "vitcod", "smartdeal"} <= set(bench_timing.designs())
