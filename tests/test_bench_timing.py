"""The timing benchmark's bookkeeping (celine/gen/bench_timing.py) and nextpnr's critical
paths summed up (celine.gen.bitstream.critical_paths), without the tools: the builds are
stubbed. The real builds run in `celine bench --only timing`. Its call times: the link
bytes weighed, and every engine's sample calls on the golden model."""

import json

import pytest

from celine import registry
from celine.gen import bench_timing
from celine.gen.bitstream import ToolError, critical_paths, slowest_endpoints


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


def _ends(net, *ends):
    return {"net": net, "endpoints": [{"cell": cell, "port": port, "delay": [0.5, delay]}
                                      for cell, port, delay in ends]}


def test_slowest_endpoints_one_per_register_and_port():
    report = {"detailed_net_timings": [
        _ends("n1", ("design.a.count_TRELLIS_FF_Q", "DI", 7.0),
              ("design.a.count_TRELLIS_FF_Q_12", "DI", 7.95), ("design.b.x", "A", 3.0)),
        _ends("n2", ("design.a.count_TRELLIS_FF_Q_3", "DI", 8.0),
              ("design.a.count_TRELLIS_FF_Q_3", "CE", 6.0), ("design.ram", "ADA4", 5.0)),
    ]}
    assert slowest_endpoints(report, count=3) == [
        {"endpoint": "design.a.count", "port": "DI", "arrival_ns": 8.0, "bits": 2},
        {"endpoint": "design.a.count", "port": "CE", "arrival_ns": 6.0, "bits": 1},
        {"endpoint": "design.ram", "port": "ADA4", "arrival_ns": 5.0, "bits": 1}]
    assert slowest_endpoints({}) == []


def _fake_build(fmax_by_seed, failing=()):
    def bench_build(board, accel, params=None, *, seed, constraint_mhz, time_limit, out, log):
        assert (board, params, constraint_mhz, time_limit) == ("ulx3s-85f", None, 125, 1800)
        if seed in failing:
            raise ToolError("pnr failed\nERROR: pnr stopped after 1800 s without finishing")
        fmax = fmax_by_seed[seed]
        return {"params": {"p": 1}, "seed": seed, "fmax_mhz": fmax, "timing_met": fmax >= 125,
                "critical_paths": [{"from": f"seed{seed}"}],
                "utilization": {"TRELLIS_COMB": {"used": 100 * seed},
                                "MULT18X18D": {"used": 4}},
                "step_seconds": {"pnr": 10.0 * seed}}
    return bench_build


def _stub_call_time(monkeypatch):
    """Replace call_time by a stub that records its arguments; the list of them."""
    calls = []

    def call_time(accel, clock_hz, board, *, clock_from=None):
        calls.append((accel, clock_hz, board, clock_from))
        return [{"accel": accel, "clock_from": clock_from}]
    monkeypatch.setattr(bench_timing, "call_time", call_time)
    return calls


def test_timing_bench_median_seed_and_failures(tmp_path, monkeypatch):
    import celine.gen.bitstream as bitstream
    monkeypatch.setattr(bitstream, "bench_build", _fake_build({1: 130.0, 2: 120.0, 3: 140.0}))
    monkeypatch.chdir(tmp_path)
    calls = _stub_call_time(monkeypatch)
    result = bench_timing.run(tmp_path / "out", only=["mac"])
    # every engine's call times: the measured one at its median Fmax, the others at the
    # clock of their board builds
    from celine.boards.designs import get_design
    assert calls == [(record.name, 130.0e6 if record.name == "mac"
                      else get_design(record.name).clock_hz,
                      "ulx3s-85f", "fmax_median" if record.name == "mac" else "board_default")
                     for record in registry.ENGINES]
    assert result["call_time"][0] == {"accel": "mac", "clock_from": "fmax_median"}
    (entry,) = result["designs"]
    assert entry["seeds"] == [{"seed": 1, "fmax_mhz": 130.0, "timing_met": True},
                              {"seed": 2, "fmax_mhz": 120.0, "timing_met": False},
                              {"seed": 3, "fmax_mhz": 140.0, "timing_met": True}]
    assert entry["fmax_median_mhz"] == 130.0
    assert entry["critical_path"] == [{"from": "seed1"}]        # the median seed's
    assert (entry["lut4"], entry["mult18x18d"], entry["ff"]) == (100, 4, None)
    assert json.loads((tmp_path / "out" / "timing.json").read_text()) == result

    # a build's placer and router, when its report names them, go with its seed
    def named(*args, **kwargs):
        return {**_fake_build({1: 130.0, 2: 120.0, 3: 140.0})(*args, **kwargs),
                "placer": "static", "router": "router1"}
    monkeypatch.setattr(bitstream, "bench_build", named)
    (entry,) = bench_timing.run(tmp_path / "out", only=["mac"])["designs"]
    assert entry["seeds"][0] == {"seed": 1, "fmax_mhz": 130.0, "timing_met": True,
                                 "placer": "static", "router": "router1"}

    monkeypatch.setattr(bitstream, "bench_build", _fake_build({1: 130.0}, failing={2, 3}))
    (entry,) = bench_timing.run(tmp_path / "out", only=["mac"])["designs"]
    assert entry["seeds"][1] == {"seed": 2, "fmax_mhz": None, "timing_met": False,
                                 "error": "ERROR: pnr stopped after 1800 s without finishing"}
    assert entry["fmax_median_mhz"] == 130.0


def test_timing_bench_without_synthesis_times_calls_only(tmp_path, monkeypatch):
    import celine.gen.bitstream as bitstream
    from celine.boards.designs import get_design

    def no_build(*args, **kwargs):
        raise AssertionError("no build without synthesis")
    monkeypatch.setattr(bitstream, "bench_build", no_build)
    calls = _stub_call_time(monkeypatch)
    result = bench_timing.run(tmp_path, fpga=False)
    assert result["designs"] == []
    assert calls == [(record.name, get_design(record.name).clock_hz, "ulx3s-85f",
                      "board_default") for record in registry.ENGINES]
    assert json.loads((tmp_path / "timing.json").read_text()) == result


def test_timing_bench_keeps_the_entries_it_did_not_build(tmp_path, monkeypatch):
    """A run replaces the entries of the designs it builds and keeps the others of an
    earlier timing.json (in the order of designs()); one without synthesis keeps all, and
    times the calls at their Fmax."""
    import celine.gen.bitstream as bitstream
    monkeypatch.chdir(tmp_path)
    calls = _stub_call_time(monkeypatch)
    earlier = [{"accel": "taylor", "fmax_median_mhz": 101.0},
               {"accel": "mac", "fmax_median_mhz": 90.0}]
    (tmp_path / "timing.json").write_text(json.dumps({"designs": earlier}))
    monkeypatch.setattr(bitstream, "bench_build", _fake_build({1: 130.0}))
    result = bench_timing.run(tmp_path, quick=True, only=["mac"])
    assert [(e["accel"], e["fmax_median_mhz"]) for e in result["designs"]] == [
        ("mac", 130.0), ("taylor", 101.0)]
    calls.clear()
    again = bench_timing.run(tmp_path, fpga=False)
    assert again["designs"] == result["designs"]
    assert dict((name, clock) for name, clock, _, _ in calls)["taylor"] == 101.0e6
    (tmp_path / "timing.json").write_text("not json")
    assert bench_timing.run(tmp_path, fpga=False)["designs"] == []


class _Calls:
    """A stand-in for a record's sample_calls Ref: two tiny calls (a buffer written, then
    read back) whose link bytes are known."""

    def __init__(self, counted):
        self.counted = counted

    def load(self):
        def sample_calls(params):
            def call(device):
                name = next(n for n, b in device.buffers.items() if b.writable)
                device.write_buffer(name, 0, bytes(10))
                assert device.read_buffer(name, 0, 10) == bytes(10)
                self.counted.append(device.transport.bytes_written
                                    + device.transport.bytes_read)
                return 1000
            return [("tiny", call), ("tiny again", call)]
        return sample_calls


def test_call_time_weighs_the_bytes_the_transport_counted(monkeypatch):
    import dataclasses
    from celine.boards.baud import default_baud
    from celine.spec.protocol import ADDRESS_BYTES, FRAME_OVERHEAD
    counted = []
    record = dataclasses.replace(registry.ENGINES[0], sample_calls=_Calls(counted))
    monkeypatch.setattr(registry, "get", lambda name: record)
    entries = bench_timing.call_time(record.name, 45e6, "ulx3s-85f", clock_from="given")
    # WRITE of 10 bytes and its reply, READ of 10 bytes (buffer, offset, count) and its reply
    link = 4 * FRAME_OVERHEAD + (ADDRESS_BYTES + 10) + (ADDRESS_BYTES + 2) + 10
    assert counted == [link, link]          # each call's count starts at 0
    baud = default_baud(45_000_000, 3_000_000)
    assert baud == 3_000_000
    assert [e["workload"] for e in entries] == ["tiny", "tiny again"]
    for entry in entries:
        assert entry == {"accel": record.name, "workload": entry["workload"],
                         "clock_mhz": 45.0, "clock_from": "given", "baud": baud,
                         "cycles": 1000, "link_bytes": link,
                         "link_s": pytest.approx(link * 10 / baud, rel=1e-5),
                         "compute_s": pytest.approx(1000 / 45e6, rel=1e-5),
                         "link_share": pytest.approx(link * 10 / baud
                                                     / (link * 10 / baud + 1000 / 45e6),
                                                     abs=1e-4)}
        assert entry["link_s"] > 0 and entry["compute_s"] > 0


def test_call_time_checks_its_settings(monkeypatch):
    import dataclasses
    name = registry.ENGINES[0].name
    with pytest.raises(ValueError, match=r"^clock_hz must be a positive number of Hz, not 0$"):
        bench_timing.call_time(name, 0, "ulx3s-85f")
    with pytest.raises(TypeError, match=r"^clock_hz must be a number, not '45'$"):
        bench_timing.call_time(name, "45", "ulx3s-85f")
    with pytest.raises(ValueError, match=r"^board must be one of "):
        bench_timing.call_time(name, 45e6, "nope")
    with pytest.raises(ValueError, match=r"^accelerator must be one of "):
        bench_timing.call_time("nope", 45e6, "ulx3s-85f")

    class Bad:
        def load(self):
            return lambda params: [("bad", lambda device: 1.5)]
    record = dataclasses.replace(registry.ENGINES[0], sample_calls=Bad())
    monkeypatch.setattr(registry, "get", lambda name: record)
    with pytest.raises(TypeError, match=r"sample call of .* must return a non-negative "
                                        r"integer of cycles, not 1\.5$"):
        bench_timing.call_time(name, 45e6, "ulx3s-85f")


@pytest.mark.parametrize("record", registry.ENGINES, ids=lambda r: r.name)
def test_sample_calls_run_on_the_model(record):
    """Every engine's sample calls, in order on one model device: each runs the engine and
    returns its cycles (the MAC array's default matmul takes the longest, about 8 s)."""
    from celine.firmware.device import Device
    from celine.firmware.protocol import Command
    params = record.params()
    calls = record.sample_calls.load()(params)
    names = [name for name, _ in calls]
    assert calls and all(isinstance(n, str) and n for n in names)
    assert len(set(names)) == len(names)
    with Device.open("model", accel=record.name, params=params) as device:
        for name, call in calls:
            runs = device.transport.commands.count(Command.RUN)
            cycles = call(device)
            assert isinstance(cycles, int) and cycles > 0, name
            assert device.transport.commands.count(Command.RUN) > runs, name


def test_timing_bench_designs():
    assert bench_timing.designs()[0] == "echo"
    assert {"mac", "taylor", "vitcod", "smartdeal"} <= set(bench_timing.designs())


def test_largest_halves_the_scale_to_the_largest_that_passes(tmp_path, monkeypatch):
    """largest_of builds by halving the engine's `scale` (each build in the shell on the
    board at LARGEST_MHZ) and reports the largest that meets it, with its throughput by the
    cycle model and its shares of the device; run_largest merges into timing.json."""
    import dataclasses
    import celine.gen.bitstream as bitstream
    record = registry.get("mac")
    ladder = record.scale
    assert len(ladder) >= 3
    limit = 2                      # scales 0 .. 2 pass; 3 misses timing; beyond do not fit
    built = []

    def bench_build(board, accel, params, *, seed, constraint_mhz, time_limit, out, log):
        assert (accel, seed, constraint_mhz) == ("mac", 1, bench_timing.LARGEST_MHZ)
        assert time_limit == bench_timing.LARGEST_PNR_TIME_LIMIT
        k = next(k for k, over in enumerate(ladder)
                 if dataclasses.replace(record.params(), **over) == params)
        built.append((board, k))
        if k > limit + 1:
            raise ToolError("pnr failed\nERROR: Unable to place cell 'x', no BELs remaining")
        return {"params": params.to_dict(), "seed": 1, "fmax_mhz": 110.0 - 10 * k,
                "timing_met": k <= limit, "critical_paths": [],
                "utilization": {"MULT18X18D": {"used": 10 * (k + 1), "available": 156},
                                "TRELLIS_COMB": {"used": 1000, "available": 83640},
                                "DP16KD": {"used": 4, "available": 208}}}
    monkeypatch.setattr(bitstream, "bench_build", bench_build)
    monkeypatch.chdir(tmp_path)
    _stub_call_time(monkeypatch)
    entry = bench_timing.largest_of(record, "ulx3s-85f", tmp_path)
    assert entry["params"] == dataclasses.replace(record.params(), **ladder[limit]).to_dict()
    assert entry["fmax_mhz"] == 110.0 - 10 * limit
    assert entry["mult18x18d"] == 10 * (limit + 1)
    assert entry["mult18x18d_share"] == round(10 * (limit + 1) / 156, 4)
    estimate = record.cycles.load()(dataclasses.replace(record.params(), **ladder[limit]),
                                    **record.workload)
    assert entry["useful_macs_per_s"] == round(estimate.useful_macs / estimate.cycles
                                               * entry["fmax_mhz"] * 1e6)
    # halving: far fewer builds than the ladder has rungs, each failure recorded
    assert len(built) == len(entry["tried"]) < len(ladder)
    assert any("no BELs remaining" in t.get("error", "") for t in entry["tried"])

    built.clear()
    result = bench_timing.run_largest(tmp_path / "out", boards=("ulx3s-25f",), only=["mac"])
    assert [(e["board"], e["accel"]) for e in result["largest"]] == [("ulx3s-25f", "mac")]
    assert {board for board, _ in built} == {"ulx3s-25f"}
    again = bench_timing.run_largest(tmp_path / "out", fpga=False)
    assert again["largest"] == result["largest"]


def test_largest_reports_none_when_even_the_smallest_fails(tmp_path, monkeypatch):
    import celine.gen.bitstream as bitstream

    def bench_build(board, accel, params, *, seed, constraint_mhz, time_limit, out, log):
        raise ToolError("pnr failed\nERROR: Unable to place cell 'x', no BELs remaining")
    monkeypatch.setattr(bitstream, "bench_build", bench_build)
    entry = bench_timing.largest_of(registry.get("taylor"), "ulx3s-25f", tmp_path)
    assert entry["params"] is None and "fmax_mhz" not in entry
    ladder = registry.get("taylor").scale
    # halving down to the smallest, which is tried last
    assert entry["tried"][-1]["scale"] == ladder[0]
    assert 1 < len(entry["tried"]) <= len(ladder).bit_length() < len(ladder)
