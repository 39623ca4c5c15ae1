"""Measure one configuration: cycle model, synthesis, place and route -> a record.

`measure(engine, params, board, seed, workdir=...)` generates the engine's core (its
`core` component) as Verilog, computes the content key of the measurement
(celine.explore.record.content_key: the Verilog, the tool versions, the board's device and
package, the seed and the flow's options, which name the board too), and returns the
cached record of that key if there is one. Otherwise it synthesizes and places and routes the core out of context on
the board's device (celine.gen.synth.place_and_route: yosys synth_ecp5, nextpnr-ecp5
router2 with the seed and a clock target), and writes the record to the cache,
`<cache>/<key>.json` (default `<workdir>/cache`).

A build that fails is a record too: status "failed", `error` the tool's own error line
(nextpnr's "ERROR: Unable to place cell ..., no BELs remaining ..." for a design that does
not fit the device, with the resources nextpnr counted before it gave up and `fits`
False). Failures of the tools and of the generator are cached like results (they are
determined by the same inputs); `retry_failed` measures them again.

The cycle-model figures (cycles, useful MACs, MAC units, throughput) depend on the
workload, not on the build: a cached record asked for another workload gets them
recomputed (they take microseconds) and keeps its key.

`check_sim=True` also runs the workload in RTL simulation, for the engines that have a
simulation of their workload here (SIMULATED: the MAC array's square matmul, the Taylor
pipeline's run, the activation engine's runs, ViTCoD's run over the cycle model's random
mask, SmartDeal's runs of its random layer); for the others `sim_cycles` stays None.
"""

import json
import re
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from ..spec.checks import check_int
from .record import check_record, content_key, new_record
from .space import resolve_engine
from ..gen.synth import check_workdir

__all__ = ["measure", "measure_point", "point_key", "model_figures", "target", "cache_path",
           "write_cache", "check_workdir", "error_line", "PNR_TIME_LIMIT", "SIMULATED",
           "sim_supported", "FLOW", "TOP"]

# The top module's name (part of the Verilog, hence of the key) and the flow's options.
TOP = "celine_core"
FLOW = {"flow": "ooc", "synth": "synth_ecp5 -noflatten", "router": "router2"}
# Place and route still running after this long is stopped and the point recorded as
# failed ("ERROR: ... stopped after 1200 s without finishing"): router2 on a design that
# congests a small device can iterate for hours without converging. Not part of the key
# (the records measured before it are the same builds); --retry-failed builds such a
# point again.
PNR_TIME_LIMIT = 1200
# nextpnr's utilization cell types behind the record's resources.
_CELLS = {"lut4": "TRELLIS_COMB", "ff": "TRELLIS_FF", "mult18x18d": "MULT18X18D",
          "dp16kd": "DP16KD"}
_UTILISATION = re.compile(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%")
_DOES_NOT_FIT = ("no BELs remaining", "not enough", "exceeds")


def _say(text):
    print(f"celine explore: {text}", file=sys.stderr, flush=True)


def target(board):
    """(board name, device, nextpnr device option, package, speed) of `board`."""
    from ..boards.platforms import get_board
    board = get_board(board)
    option, _, package, _, speed = board.nextpnr_options
    return board.name, board.device, option.removeprefix("--"), package, int(speed)


def _params(engine, params):
    if isinstance(params, dict):
        return engine.params.from_dict(params)
    if not isinstance(params, engine.params):
        raise TypeError(f"params must be a {engine.params.__name__} or its to_dict(), "
                        f"not {params!r}")
    return params


def _check_clock(clock_mhz):
    from ..gen.synth import OOC_CLOCK_MHZ
    if clock_mhz is None:
        return float(OOC_CLOCK_MHZ)
    if isinstance(clock_mhz, bool) or not isinstance(clock_mhz, (int, float)) \
            or not 0 < clock_mhz < 1000:
        raise ValueError(f"clock_mhz must be a number of MHz between 0 and 1000, "
                         f"not {clock_mhz!r}")
    return float(clock_mhz)


def _check_workload(workload):
    if workload is None:
        return {}
    if not isinstance(workload, dict) or not all(isinstance(k, str) for k in workload):
        raise TypeError(f"workload must be a dict of cycle-model arguments, not {workload!r}")
    return dict(workload)


def cache_path(cache_dir, key):
    return Path(cache_dir) / f"{key}.json"


def model_figures(engine, params, workload=None):
    """The cycle model's figures for the workload (the engine's default workload updated
    by `workload`): {"workload", "cycles", "useful_macs", "mac_units"}; the figures are
    None if the workload does not fit the parameters (the model's ValueError). A workload
    naming an argument the model does not take raises TypeError."""
    engine = resolve_engine(engine)
    load = {**engine.workload, **_check_workload(workload)}
    out = {"workload": load, "cycles": None, "useful_macs": None, "mac_units": None}
    try:
        estimate = engine.cycles.load()(params, **load)
    except ValueError:
        return out
    except TypeError as error:
        raise TypeError(f"workload must name the {engine.name} cycle model's arguments, "
                        f"not {sorted(load)!r} ({error})") from None
    mac_units = estimate.mac_units
    if isinstance(mac_units, float) and mac_units.is_integer():
        mac_units = int(mac_units)
    out.update(cycles=int(estimate.cycles), useful_macs=int(estimate.useful_macs),
               mac_units=mac_units)
    return out


def _throughput(record):
    cycles, macs, fmax = record["cycles"], record["useful_macs"], record["fmax_mhz"]
    if not cycles or macs is None or fmax is None:
        return None
    return macs / cycles * fmax * 1e6


def _verilog(engine, params):
    # The Verilog that synthesis reads (ECP5 primitives where the design instantiates
    # them), so that the key changes whenever the synthesized hardware does.
    from ..rtl.common.multiplier import ECP5_TARGET
    from ..sim.emit import verilog_text
    component = engine.core.load()(params)
    return component, verilog_text(component, name=TOP, platform=ECP5_TARGET)


def _key(verilog, tools, board, device, package, speed, nextpnr_device, seed, clock_mhz):
    # The board is part of the key (with its device and package): the data set has one
    # row per (engine, parameters, board, seed, tools), even if two boards shared a device.
    flow = {**FLOW, "board": board, "top": TOP, "speed": speed,
            "nextpnr_device": nextpnr_device, "clock_mhz": clock_mhz}
    return content_key(verilog=verilog, tools=tools, device=device, package=package,
                       seed=seed, flow=flow)


def point_key(engine, params, board, seed, *, clock_mhz=None):
    """The content key `measure` would give this point (generates the Verilog)."""
    from ..gen.bitstream import tool_versions
    engine = resolve_engine(engine)
    params = _params(engine, params)
    check_int("seed", seed, minimum=0)
    board_name, device, nextpnr_device, package, speed = target(board)
    _, verilog = _verilog(engine, params)
    return _key(verilog, tool_versions(), board_name, device, package, speed, nextpnr_device,
                seed, _check_clock(clock_mhz))


def error_line(text):
    """The tool's own error line in `text` (a ToolError's message): its last line that
    starts with ERROR, else its last non-empty line."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    if errors:
        return errors[-1]
    lines = [line for line in lines if not re.fullmatch(r"\d+ warnings?, \d+ errors?", line)]
    return lines[-1] if lines else str(text)


def _utilisation_from_log(path):
    """{cell: (used, available)} from nextpnr's 'Device utilisation' lines in its log."""
    found = {}
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return found
    for line in text.splitlines():
        match = _UTILISATION.match(line.strip("\n"))
        if match:
            found[match.group(1)] = (int(match.group(2)), int(match.group(3)))
    return found


def _resources(record, utilisation):
    """Fill the record's resources and `fits` from {cell: (used, available)}."""
    if not all(cell in utilisation for cell in _CELLS.values()):
        return
    for name, cell in _CELLS.items():
        record[name] = utilisation[cell][0]
    record["fits"] = all(used <= available for used, available in utilisation.values())


# -- RTL simulation of a workload ---------------------------------------------------------

def _sim_mac(params, workload, tag):
    from ..engines.mac.bench import measure as simulate
    m, k, n = workload.get("m", 64), workload.get("k", 64), workload.get("n", 64)
    if not m == k == n:
        raise ValueError(f"the MAC array's simulation runs square matmuls, not {m}x{k}x{n}")
    precision = workload.get("precision") or max(params.precisions)
    cycles, _ = simulate(params, precision, m, case_id=f"explore_mac_{tag}")
    return cycles


def _sim_taylor(params, workload, tag):
    from ..rtl.taylor.pipeline import TaylorPipeline
    from ..sim.runner import run_cocotb
    from ..sim.taylor_cases import make_run
    tokens, head_mask = workload["tokens"], workload.get("head_mask", 0)
    run = make_run(params, tokens, seed=1, head_mask=head_mask)
    case = run_cocotb(TaylorPipeline(params), toplevel=f"explore_taylor_{tag}",
                      test_module="celine.sim.tb.taylor_tb", case_id=f"explore_taylor_{tag}",
                      testcase="throughput", params=params.to_dict(), seed=1,
                      data={"runs": [run], "idle_prob": 0.0, "backpressure_prob": 0.0},
                      optimize=True)
    return json.loads((case / "throughput.json").read_text())["cycles"]


def _sim_activation(params, workload, tag):
    from ..engines.activation.bench import measure_workload
    return measure_workload(params, workload.get("elements", 197 * 768),
                            f"explore_{tag}")["cycles"]


def _check_adapter_run(case, status, words, buffer):
    """Raise AssertionError unless every run of `case` in the shell adapter's simulation
    (run_adapter's `status` and `words`) left the golden model's error flags and result
    count, and `buffer` as it writes it."""
    expected = case.expected
    want = list(case.contents[buffer])
    for address, word in expected.writes.get(buffer, {}).items():
        want[address] = word
    for errors, _, count in status:
        if (errors, count) != (expected.errors, expected.result_words):
            raise AssertionError(f"the RTL's errors and result words ({errors}, {count}) "
                                 f"differ from the golden model's ({expected.errors}, "
                                 f"{expected.result_words})")
    if words[buffer] != want:
        raise AssertionError(f"the RTL's {buffer} buffer differs from the golden model's")


def _sim_vitcod(params, workload, tag):
    """One run of the shell adapter over `heads` heads of the random mask the cycle model
    (engines.vitcod.cycles.estimate) is evaluated on: random_mask(tokens, sparsity,
    seed=seed), polarized with the same threshold and balanced by the host
    (plan_head(balance=True): cycles.dense_columns, as the model's `balanced`); the
    engine's other heads skipped (head_mask). Checked bit-exactly against the golden model."""
    from ..golden.vitcod.mask import random_mask
    from ..rtl.vitcod.shell_adapter import VitcodShellAdapter
    from ..sim.adapter_bench import run_adapter
    from ..sim.vitcod_cases import make_case
    if workload.get("mask") is not None:
        raise ValueError(f"mask must be None for the ViTCoD simulation (a random mask of "
                         f"tokens and sparsity), not {workload['mask']!r}")
    # The engine's default workload fills in what `workload` leaves out (model_figures).
    workload = {**resolve_engine("vitcod").workload, **workload}
    tokens, sparsity = workload["tokens"], workload["sparsity"]
    seed = workload.get("seed", 0)
    heads = check_int("heads", workload.get("heads", 1), minimum=1, maximum=params.heads)
    check_int("tokens", tokens, minimum=1, maximum=params.max_tokens)
    kept = random_mask(tokens, sparsity, seed=seed)
    masks = [kept] * heads + [None] * (params.heads - heads)
    head_mask = ((1 << params.heads) - 1) & ~((1 << heads) - 1)
    case = make_case(params, tokens, masks, seed=seed, head_mask=head_mask, balance=True)
    if case.expected.errors:
        raise ValueError(f"workload must fit the engine, not {workload!r} (errors "
                         f"{case.expected.errors!r})")
    status, words = run_adapter(VitcodShellAdapter(params), case.contents, case.settings,
                                limit=10_000_000)
    _check_adapter_run(case, status, words, "out")
    return status[0][1]


def _sim_smartdeal(params, workload, tag):
    """The layer the cycle model (engines.smartdeal.cycles.estimate) is evaluated on
    (random_layer(outputs, inputs, seed=seed)) over `tokens` rows of random int8
    activations, run twice in the shell adapter (the first run checks the layer; the
    second, the model's default `checked`, does not); checked bit-exactly against the
    golden model. The cycles of the second run, or of the first with checked False."""
    import torch
    from ..rtl.smartdeal.shell_adapter import SmartDealShellAdapter
    from ..sim.adapter_bench import run_adapter
    from ..sim.smartdeal_cases import make_case, random_layer
    outputs, inputs = workload.get("outputs", 96), workload.get("inputs", 48)
    tokens, seed = workload.get("tokens", 17), workload.get("seed", 0)
    checked = workload.get("checked", True)
    if not isinstance(checked, bool):
        raise TypeError(f"checked must be True or False, not {checked!r}")
    check_int("tokens", tokens, minimum=1, maximum=params.max_tokens)
    sd = random_layer(outputs, inputs, seed=seed, exponent_bits=params.exponent_bits)
    x = torch.randint(-128, 128, (tokens, inputs), generator=torch.Generator().manual_seed(seed))
    case = make_case(params, sd.pack(), x)
    if case.expected.errors:
        raise ValueError(f"workload must fit the engine, not {workload!r} (errors "
                         f"{case.expected.errors!r})")
    status, words = run_adapter(SmartDealShellAdapter(params), case.contents, case.settings,
                                runs=2 if checked else 1, limit=10_000_000)
    _check_adapter_run(case, status, words, "result")
    return status[-1][1]


# engine name -> (params, workload, tag) -> RTL cycles of the workload (checked bit-exactly
# against the golden model): the MAC array's square matmul, the Taylor pipeline's run, the
# activation engine's runs, ViTCoD's run over the cycle model's random mask, SmartDeal's
# runs of the model's random layer. Other engines keep sim_cycles None.
SIMULATED = {"mac": _sim_mac, "taylor": _sim_taylor, "activation": _sim_activation,
             "vitcod": _sim_vitcod, "smartdeal": _sim_smartdeal}


def sim_supported(engine):
    return resolve_engine(engine).name in SIMULATED


def _check_sim(engine, params, record, log):
    """Run the workload in RTL simulation: sim_cycles and cycle_error, or None with a
    line on `log` saying why not."""
    simulate = SIMULATED.get(engine.name)
    if simulate is None:
        log(f"{engine.name}: no RTL simulation of its workload here; sim_cycles left empty")
        return
    if record["cycles"] is None:
        log(f"{engine.name}: the workload does not fit {params}; not simulated")
        return
    start = time.monotonic()
    try:
        sim = int(simulate(params, record["workload"], record["key"][:16]))
    except Exception as error:        # the simulator's failure is reported, not hidden
        log(f"{engine.name}: RTL simulation of {record['workload']} failed: "
            f"{error_line(error)}")
        return
    record["seconds"]["sim"] = round(time.monotonic() - start, 2)
    record["sim_cycles"] = sim
    record["cycle_error"] = abs(record["cycles"] - sim) / sim if sim else None
    if record["cycle_error"] is not None and record["cycle_error"] > 0.02:
        log(f"{engine.name} {params.to_dict()}: cycle model {record['cycles']} vs RTL "
            f"{sim} ({record['cycle_error']:.1%} apart, over 2%)")


# -- measuring ------------------------------------------------------------------------------

def _read_cache(path):
    try:
        return check_record(json.loads(Path(path).read_text()))
    except (OSError, ValueError, TypeError):
        return None


def write_cache(path, record):
    from ..sim.emit import write_if_changed
    write_if_changed(path, json.dumps(record, indent=1, sort_keys=True) + "\n")


def _now():
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def measure_point(engine, params, board, seed, *, workload=None, clock_mhz=None, workdir,
                  cache_dir=None, check_sim=False, retry_failed=False, log=_say):
    """`measure`, and whether the record came from the cache: (record, cache_hit)."""
    from ..gen.bitstream import tool_versions
    from ..gen.synth import ToolError, place_and_route

    engine = resolve_engine(engine)
    params = _params(engine, params)
    board_name, device, nextpnr_device, package, speed = target(board)
    check_int("seed", seed, minimum=0)
    workload = _check_workload(workload)
    clock = _check_clock(clock_mhz)
    workdir = check_workdir(workdir)
    cache_dir = workdir / "cache" if cache_dir is None else Path(cache_dir)
    if not isinstance(check_sim, bool):
        raise TypeError(f"check_sim must be True or False, not {check_sim!r}")
    say = log if log is not None else (lambda text: None)

    tools = tool_versions()
    figures = model_figures(engine, params, workload)
    start = time.monotonic()
    seconds = {}
    component = None
    try:
        component, verilog = _verilog(engine, params)
        elaboration_error = None
    except Exception as error:       # the generator's own failure, e.g. a bad point
        verilog = f"generation failed: {engine.name} {json.dumps(params.to_dict())}"
        elaboration_error = f"{type(error).__name__}: {error_line(error)}"
    seconds["verilog"] = round(time.monotonic() - start, 2)
    key = _key(verilog, tools, board_name, device, package, speed, nextpnr_device, seed, clock)
    path = cache_path(cache_dir, key)

    cached = _read_cache(path)
    if cached is not None and not (retry_failed and cached["status"] == "failed"):
        record = dict(cached)
        if record["workload"] != figures["workload"]:
            record.update(figures, sim_cycles=None, cycle_error=None)
            record["throughput"] = _throughput(record)
        if check_sim and record["sim_cycles"] is None and record["status"] == "ok":
            record["seconds"] = dict(record["seconds"])
            _check_sim(engine, params, record, say)
            if record["sim_cycles"] is not None and record["workload"] == cached["workload"]:
                write_cache(path, record)
        return record, True

    record = new_record(key=key, engine=engine.name, params=params.to_dict(), board=board_name,
                        device=device, seed=seed, tools=tools, status="ok", clock_mhz=clock,
                        seconds=seconds, created=_now(), **figures)
    cacheable = True
    if elaboration_error is not None:
        record.update(status="failed", error=elaboration_error)
    else:
        point_dir = workdir / "points" / f"{engine.name}-{key[:16]}"
        lines = []
        try:
            result = place_and_route(component, top=TOP, workdir=point_dir, seed=seed,
                                     device=nextpnr_device, package=package, speed=speed,
                                     clock_mhz=clock, log=lines.append,
                                     time_limit=PNR_TIME_LIMIT)
        except ToolError as error:
            record.update(status="failed", error=error_line(error))
            _resources(record, _utilisation_from_log(point_dir / f"{TOP}.pnr.log"))
            if record["fits"] is None and any(s in record["error"] for s in _DOES_NOT_FIT):
                record["fits"] = False
        except Exception as error:       # not the tools' verdict: reported, not cached
            record.update(status="failed", error=f"{type(error).__name__}: {error_line(error)}")
            cacheable = False
        else:
            record.update({name: result[name] for name in _CELLS})
            record["fmax_mhz"] = float(result["fmax_mhz"])
            record["meets_timing"] = record["fmax_mhz"] >= clock
            report = point_dir / f"{TOP}.report.json"
            try:
                utilization = json.loads(report.read_text()).get("utilization", {})
                record["fits"] = all(value["used"] <= value["available"]
                                     for value in utilization.values())
            except (OSError, ValueError, KeyError, TypeError):
                record["fits"] = None
            record["throughput"] = _throughput(record)
        for line in lines:
            for step, pattern in (("synth", r"synthesis done in ([\d.]+) s"),
                                  ("pnr", r"pnr: done in ([\d.]+) s")):
                match = re.search(pattern, line)
                if match:
                    seconds[step] = float(match.group(1))
    if check_sim and record["status"] == "ok":
        _check_sim(engine, params, record, say)
    seconds["total"] = round(time.monotonic() - start, 2)
    check_record(record)
    if cacheable:
        write_cache(path, record)
    return record, False


def measure(engine, params, board, seed, *, workload=None, clock_mhz=None, workdir,
            cache_dir=None, check_sim=False, retry_failed=False, log=_say):
    """The record (celine.explore.record) of one configuration on `board` with `seed`.

    engine: a registry name or record; params: its parameter object or to_dict();
    board: a board name (celine.boards); seed: nextpnr's seed; workload: cycle-model
    arguments over the engine's default workload; clock_mhz: nextpnr's clock target
    (default celine.gen.synth.OOC_CLOCK_MHZ); workdir: the work directory, under the
    current directory (the tools' sandbox), with the builds in `points/` and the cache in
    `cache/` unless `cache_dir` is given; check_sim: also run the workload in RTL
    simulation (engines in SIMULATED); retry_failed: build a point whose cached record
    failed again; log: a callable taking a line (warnings, simulation reports).

    Raises TypeError/ValueError for bad arguments; a failing build is a record with
    status "failed" and the tool's error line.
    """
    return measure_point(engine, params, board, seed, workload=workload, clock_mhz=clock_mhz,
                         workdir=workdir, cache_dir=cache_dir, check_sim=check_sim,
                         retry_failed=retry_failed, log=log)[0]
