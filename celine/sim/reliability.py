"""Long runs of engine calls over one device, on a clean or a noisy line (issue 13,
docs/reliability.md): an engine's random calls (its record's `random_call`), each result
held bit for bit against the engine's reference, the device's runs counted against the
host's, and the bytes the host wrote checked after every call.

`CallRun(record, params, options, device, model=None, seed=...)` makes calls on an open
device and counts (`counts`):
- `calls`; `wrong_results`: a result that differs from the reference (never allowed);
  `errors_raised`: a CelineError (allowed on a noisy line; by class name in `errors`);
- `double_runs`: RUNs the device executed beyond those the host made (needs the golden
  `model` behind the device: its `runs` counts what it executed);
- `corrupted_buffers`: after a call that returned, a buffer holding a byte other than
  the one the host wrote there during the call (buffers the engine writes too skipped).
`noisy_line` and `soak` run them over every engine's golden model and return the figures
of build/bench/reliability.json (celine/gen/bench_reliability.py); `soak_rtl` makes calls
on the RTL under Verilator.
"""

import resource
import sys
import time
from collections import Counter

from .. import registry
from ..firmware.device import Device
from ..firmware.errors import CelineError
from ..firmware.transport import LoopbackTransport
from .calls import calls, same
from .noise import NoisyTransport

__all__ = ["CallRun", "WatchedDevice", "model_device", "noisy_line", "soak", "soak_rtl",
           "rss_mb"]

# The golden model's device for these runs: a board's line rate, replies of up to 256
# bytes, and runs that keep the engine busy for 500 bit times (so that STATUS polls, and
# repeated RUNs, meet a busy engine).
LINE = {"baud": 3_000_000, "max_payload": 256, "run_bit_times": 500}


def rss_mb():
    """This process's resident set size now, in MB (Linux /proc; the peak elsewhere)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class WatchedDevice(Device):
    """A Device that remembers the bytes it wrote (whole write_buffer calls that returned)
    since `watch()`: {buffer name: {byte offset: byte}}."""

    written = None

    def watch(self):
        self.written = {}

    def write_buffer(self, name, offset, data):
        super().write_buffer(name, offset, data)
        if self.written is not None:
            buffer = self.written.setdefault(name, {})
            for k, byte in enumerate(bytes(data)):
                buffer[offset + k] = byte


class CallRun:
    """Random calls of `record`'s engine (generator `params`, shell `options`) on `device`,
    with `model` the golden ShellModel behind it (None for the RTL)."""

    def __init__(self, record, params, options, device, model=None, *, seed=1):
        self.record, self.device, self.model = record, device, model
        self.calls = calls(record, params, options, seed)
        self.counts = Counter(calls=0, wrong_results=0, errors_raised=0, double_runs=0,
                              corrupted_buffers=0)
        self.errors = Counter()
        self.first_wrong = None

    def step(self):
        """Make one call; False if it returned a wrong result."""
        description, run, want = next(self.calls)
        dev, model = self.device, self.model
        runs_made = dev.stats["runs"]
        runs_executed = model.runs if model is not None else 0
        if isinstance(dev, WatchedDevice):
            dev.watch()
        self.counts["calls"] += 1
        ok = True
        try:
            got = run(dev)
        except CelineError as error:
            self.counts["errors_raised"] += 1
            self.errors[type(error).__name__] += 1
        else:
            if not same(got, want):
                ok = False
                self.counts["wrong_results"] += 1
                self.first_wrong = self.first_wrong or description
            if model is not None and isinstance(dev, WatchedDevice):
                self.counts["corrupted_buffers"] += self._corrupted(dev.written)
        if model is not None:
            self.counts["double_runs"] += max(0, (model.runs - runs_executed)
                                              - (dev.stats["runs"] - runs_made))
        return ok

    def _corrupted(self, written):
        bad = 0
        for name, data in written.items():
            buffer = self.model.buffer(name)
            if buffer.spec.engine_writes:
                continue
            bad += any(buffer.read(offset, 1)[0] != byte for offset, byte in data.items())
        return bad


def progress(message):
    print(f"[reliability] {message}", file=sys.stderr, flush=True)


def model_device(name, *, ber=0.0, drop=0.0, seed=1, retries=3, timeout=0.05):
    """(device, model, line): a WatchedDevice on engine `name`'s golden shell model at its
    small configuration (Accelerator.small), behind a NoisyTransport that is clean while
    the device opens (INFO) and then flips bits at `ber` and loses bytes at `drop`.
    `timeout` is in the model's time (the reply of a 256-byte READ takes 0.9 ms)."""
    from ..golden.shell import shell_model
    record = registry.get(name)
    params, options = record.small_point()
    model = shell_model(name, params, **LINE, **options)
    line = NoisyTransport(LoopbackTransport(model), ber=0.0, seed=seed)
    device = WatchedDevice(line, retries=retries, timeout=timeout)
    line.set_noise(ber=ber, drop=drop)
    return device, model, line


def _run_engines(calls_each, make_device, label, *, seed):
    """CallRun of `calls_each` calls on every engine; ({engine: figures}, totals)."""
    per_engine, totals = {}, Counter()
    for record in registry.ENGINES:
        device, model, line = make_device(record.name)
        params, options = record.small_point()
        run = CallRun(record, params, options, device, model, seed=seed)
        start = time.monotonic()
        for k in range(calls_each):
            run.step()
            if (k + 1) % max(1, calls_each // 4) == 0:
                progress(f"{label} {record.name}: {k + 1} of {calls_each} calls "
                         f"({time.monotonic() - start:.0f} s)")
        figures = {**run.counts, "retries": device.stats["retries"],
                   "errors": dict(run.errors), "first_wrong": run.first_wrong,
                   "line": dict(line.stats), "seconds": round(time.monotonic() - start, 1)}
        per_engine[record.name] = figures
        totals.update({key: value for key, value in figures.items()
                       if key in run.counts or key == "retries"})
    return per_engine, totals


def noisy_line(calls_each, *, ber=1e-4, drop=0.0, seed=1, retries=3):
    """`calls_each` random calls on every engine over a line with bit-error rate `ber`."""
    per_engine, totals = _run_engines(
        calls_each, lambda name: model_device(name, ber=ber, drop=drop, seed=seed,
                                              retries=retries),
        f"noisy line (BER {ber:g})", seed=seed)
    return {"ber": ber, "drop": drop, "retries_allowed": retries, "calls": totals["calls"],
            "wrong_results": totals["wrong_results"], "double_runs": totals["double_runs"],
            "errors_raised": totals["errors_raised"], "retries": totals["retries"],
            "corrupted_buffers": totals["corrupted_buffers"], "engines": per_engine}


def soak(calls_each, *, seed=2):
    """`calls_each` random calls on every engine's golden model, clean line, with the
    host's memory (RSS) before the calls, after the first tenth and at the end."""
    rss = {"start_mb": round(rss_mb(), 1)}
    per_engine, totals = {}, Counter()
    warm = max(1, calls_each // 10)
    # one warm-up tenth on every engine first, so that RSS counts growth, not imports
    devices = {record.name: model_device(record.name, seed=seed)
               for record in registry.ENGINES}
    runs = {}
    for record in registry.ENGINES:
        device, model, _ = devices[record.name]
        params, options = record.small_point()
        runs[record.name] = CallRun(record, params, options, device, model, seed=seed)
    for name, run in runs.items():
        for _ in range(warm):
            run.step()
    rss["warm_mb"] = round(rss_mb(), 1)
    for name, run in runs.items():
        start = time.monotonic()
        for k in range(calls_each - warm):
            run.step()
        progress(f"soak {name}: {calls_each} calls ({time.monotonic() - start:.0f} s, "
                 f"RSS {rss_mb():.0f} MB)")
        per_engine[name] = dict(run.counts)
        totals.update(run.counts)
    rss["end_mb"] = round(rss_mb(), 1)
    return {"calls": totals["calls"], "mismatches": totals["wrong_results"],
            "errors_raised": totals["errors_raised"], "double_runs": totals["double_runs"],
            "corrupted_buffers": totals["corrupted_buffers"],
            "host_rss_growth_mb": round(rss["end_mb"] - rss["warm_mb"], 1), "rss": rss,
            "engines": per_engine}


def soak_rtl(name, calls_each, *, seed=3):
    """`calls_each` random calls of engine `name` on its shell's RTL (small configuration)
    under Verilator through Device.open("sim"); the counts (no model: runs and buffers are
    not checked here, results are)."""
    record = registry.get(name)
    params, options = record.small_point()
    start = time.monotonic()
    with Device.open("sim", accel=name, params=params, **options) as device:
        run = CallRun(record, params, options, device, seed=seed)
        for k in range(calls_each):
            run.step()
            if (k + 1) % max(1, calls_each // 4) == 0:
                progress(f"RTL soak {name}: {k + 1} of {calls_each} calls "
                         f"({time.monotonic() - start:.0f} s)")
    return {**run.counts, "errors": dict(run.errors), "first_wrong": run.first_wrong,
            "seconds": round(time.monotonic() - start, 1)}


FUZZ_CLOCK_HZ = 100_000_000         # the fuzz testbench's clock (10 ns), 4 cycles a bit


def fuzz_rtl(name, *, seeds, bursts, faulty, case_id, top=None, max_payload=64,
             timeout_bits=64):
    """The link fuzzer (celine/sim/fuzz.py) on engine `name`'s shell at its small
    configuration (Accelerator.small) in Verilator, against the golden model live
    (celine.sim.tb.shell_tb.fuzz_matches_golden, which asserts every reply): `bursts`
    bursts of `faulty` faulty steps for each seed of `seeds`. `top` names the Verilog top
    (a build shared with other tests of the same design; default fuzz_<name>). Returns the
    testbench's fuzz.json: per seed, the counts."""
    import json

    from ..rtl.shell.shell import build_shell
    from .runner import run_cocotb
    record = registry.get(name)
    params, options = record.small_point()
    shell = dict(clock_hz=FUZZ_CLOCK_HZ, baud=FUZZ_CLOCK_HZ // 4, max_payload=max_payload,
                 timeout_bits=timeout_bits)
    design = build_shell(accel=name, accel_params=params, **shell, **options)
    directory = run_cocotb(design, toplevel=top or f"fuzz_{name}",
                           test_module="celine.sim.tb.shell_tb", case_id=case_id,
                           testcase="fuzz_matches_golden",
                           params={"accel": name, "params": params.to_dict(),
                                   "options": options, "shell": shell},
                           data={"seeds": seeds, "bursts": bursts, "faulty": faulty},
                           optimize=True)
    return json.loads((directory / "fuzz.json").read_text())
