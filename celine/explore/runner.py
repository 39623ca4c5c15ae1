"""Run many points: worker processes on this machine, or a dask.distributed cluster.

`run_points(engine, points, board=..., workdir=...)` measures every (point, seed) with
celine.explore.measure.measure_point, `jobs` at a time in worker processes (default 2;
`jobs=1` runs them in this process), or on an existing dask.distributed cluster with
`scheduler="tcp://host:8786"` (its workers need Celine installed, the same file system and
a current directory that holds `workdir`, as here). Every record is cached by its content
key, so a repeated or interrupted run redoes nothing: its points come back as cache hits.
Each finished record goes to `on_record(record)` (the CLI stores it in the cost database)
as it arrives; a failed build is a record too and does not stop the rest.

Progress goes to the terminal with rich: points done, running, failed, cache hits and an
estimate of the time left (from the seconds the built points took); when stderr is not a
terminal, one line per finished point instead.
"""

import concurrent.futures
import multiprocessing
import time
from dataclasses import dataclass, field

from ..spec.checks import check_int
from .measure import (_check_clock, _check_workload, _params, check_workdir, measure_point,
                      target)
from .space import parse_seeds, resolve_engine

__all__ = ["run_points", "RunResult", "Workers", "Reporter", "sample", "describe"]

POLL_SECONDS = 0.2
CONNECT_SECONDS = 10      # how long to try to reach a dask scheduler


@dataclass
class RunResult:
    """What a run produced: the records in task order (point-major, then seed; None for a
    task whose worker crashed), the counts, the crashes [(params dict, seed, message)] and
    the seconds the run took."""
    records: list = field(default_factory=list)
    built: int = 0
    hits: int = 0
    failed: int = 0
    errors: list = field(default_factory=list)
    seconds: float = 0.0


def sample(count, k):
    """Indices of `k` of `count` items spread evenly (the first and the last included)."""
    if k >= count:
        return list(range(count))
    if k <= 0:
        return []
    if k == 1:
        return [0]
    return sorted({round(i * (count - 1) / (k - 1)) for i in range(k)})


def describe(params):
    """'rows=1 cols=2 ...': a point's parameters that differ from the defaults."""
    values = params.to_dict()
    defaults = type(params)().to_dict() if _has_defaults(type(params)) else {}
    shown = {k: v for k, v in values.items() if defaults.get(k, object()) != v} or values
    return " ".join(f"{k}={'+'.join(map(str, v)) if isinstance(v, list) else v}"
                    for k, v in shown.items())


def _has_defaults(cls):
    try:
        cls()
        return True
    except Exception:
        return False


class _Done(concurrent.futures.Future):
    """A future already resolved (jobs=1 runs the task in this process)."""

    def __init__(self, fn, args, kwargs):
        super().__init__()
        try:
            self.set_result(fn(*args, **kwargs))
        except Exception as error:
            self.set_exception(error)


class Workers:
    """Where tasks run: this process (jobs=1), `jobs` worker processes, or the dask cluster
    at `scheduler`. A context manager; `submit` returns a future (`.done()`, `.result()`)."""

    def __init__(self, jobs=2, scheduler=None):
        check_int("jobs", jobs, minimum=1)
        if scheduler is not None and (not isinstance(scheduler, str) or not scheduler.strip()):
            raise ValueError(f"scheduler must be a dask scheduler address such as "
                             f"'tcp://127.0.0.1:8786', not {scheduler!r}")
        self.jobs, self.scheduler = jobs, scheduler
        self._pool = self._client = None
        if scheduler is not None:
            import distributed
            try:
                self._client = distributed.Client(scheduler, timeout=f"{CONNECT_SECONDS}s")
            except (OSError, TimeoutError, ValueError) as error:
                raise ValueError(f"scheduler must be the address of a running dask "
                                 f"scheduler, not {scheduler!r} ({error})") from None
            self.parallel = max(1, sum(self._client.nthreads().values()))
            self.capacity = 2 * self.parallel
        elif jobs > 1:
            self._pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=jobs, mp_context=multiprocessing.get_context("spawn"))
            self.parallel = self.capacity = jobs
        else:
            self.parallel = self.capacity = 1

    def submit(self, fn, *args, **kwargs):
        if self._client is not None:
            return self._client.submit(fn, *args, pure=False, **kwargs)
        if self._pool is not None:
            return self._pool.submit(fn, *args, **kwargs)
        return _Done(fn, args, kwargs)

    def running(self, in_flight):
        return min(in_flight, self.parallel)

    def cancel(self, futures):
        for future in futures:
            future.cancel()

    def close(self, *, cancel=False):
        if self._pool is not None:
            self._pool.shutdown(wait=not cancel, cancel_futures=cancel)
        if self._client is not None:
            self._client.close()

    def __enter__(self):
        return self

    def __exit__(self, kind, value, traceback):
        self.close(cancel=kind is not None)
        return False


class Reporter:
    """Progress of a run on stderr: a rich progress bar on a terminal (done/total, running,
    failed, cache hits, time left), else a line per finished point. `enabled` False (or a
    rich Console given as `console`) for tests and quiet runs."""

    def __init__(self, total, *, label="explore", enabled=True, console=None):
        from rich.console import Console
        self.total, self.label, self.enabled = total, label, enabled
        self.console = console or Console(stderr=True, highlight=False)
        self.done = self.running = self.failed = self.hits = 0
        self._seconds = []            # per finished task: its own seconds
        self._parallel = 1
        self._progress = self._task = None

    def start(self, parallel=1):
        self._parallel = parallel
        if not self.enabled or not self.console.is_terminal:
            return self
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                                   TimeElapsedColumn)
        self._progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                                  MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
                                  TimeElapsedColumn(), console=self.console,
                                  refresh_per_second=4)
        self._progress.start()
        self._task = self._progress.add_task(self.label, total=self.total,
                                             status=self.status())
        return self

    def eta(self):
        """Seconds left: the mean seconds of a finished task times the tasks left, over
        the parallel workers; None before the first task is done."""
        if not self._seconds:
            return None
        return sum(self._seconds) / len(self._seconds) * (self.total - self.done) \
            / self._parallel

    def status(self):
        eta = self.eta()
        left = "?" if eta is None else time.strftime("%H:%M:%S", time.gmtime(eta))
        return (f"running {self.running}, failed {self.failed}, cache hits {self.hits}, "
                f"time left {left}")

    def set_running(self, running):
        self.running = running
        self._refresh()

    def finished(self, record, hit, seconds, text=None):
        """One task finished (record None: its worker crashed)."""
        self.done += 1
        self.hits += bool(hit)
        self.failed += record is None or record.get("status") != "ok"
        self._seconds.append(seconds)
        if text and self.enabled and self._progress is None:
            self.console.print(f"[{self.done}/{self.total}] {text}", markup=False,
                               highlight=False)
        elif text and self._progress is not None and (record is None or
                                                      record.get("status") != "ok"):
            self._progress.console.print(text, markup=False, highlight=False)
        self._refresh()

    def skip(self, count=1):
        """`count` tasks that need no measuring (an invalid combination a search drew)."""
        self.done += count
        self._refresh()

    def _refresh(self):
        if self._progress is not None:
            self._progress.update(self._task, completed=self.done, status=self.status())

    def stop(self):
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        return False


def summary_line(engine_name, params, seed, record, hit):
    """One line about a finished point."""
    what = f"{engine_name} {describe(params)} seed {seed}"
    if record is None:
        return f"{what}: worker crashed"
    if record["status"] != "ok":
        return f"{what}: FAILED: {record['error']}" + (" (cache hit)" if hit else "")
    parts = [f"{record['lut4']} LUT4", f"{record['mult18x18d']} MULT18X18D",
             f"{record['dp16kd']} DP16KD", f"Fmax {record['fmax_mhz']:g} MHz"]
    if record["throughput"] is not None:
        parts.append(f"{record['throughput'] / 1e9:.3g} GMAC/s")
    return f"{what}: {', '.join(parts)}" + (" (cache hit)" if hit else "")


def _seconds_of(record, hit, wall):
    if hit or record is None:
        return 0.0 if record is not None else wall
    return float(record.get("seconds", {}).get("total", wall))


def run_points(engine, points, *, board, seeds=(1,), workload=None, clock_mhz=None, workdir,
               cache_dir=None, jobs=2, scheduler=None, on_record=None, progress=True,
               check_sim=0, retry_failed=False, measure=measure_point, console=None):
    """Measure every point (parameter objects or their to_dict()) with every seed.

    `measure` is called as measure(engine_name, params, board, seed, workload=...,
    clock_mhz=..., workdir=..., cache_dir=..., check_sim=..., retry_failed=...) and returns
    (record, cache_hit); `check_sim` is the number of points (spread over the list) whose
    workload also runs in RTL simulation (first seed only). Returns a RunResult.
    """
    engine = resolve_engine(engine)
    if isinstance(points, (str, bytes)) or not hasattr(points, "__iter__"):
        raise TypeError(f"points must be a list of {engine.params.__name__}, not {points!r}")
    points = [_params(engine, p) for p in points]
    seeds = parse_seeds(seeds)
    board_name = target(board)[0]
    workload = _check_workload(workload)
    clock_mhz = _check_clock(clock_mhz) if clock_mhz is not None else None
    workdir = check_workdir(workdir)
    check_int("check_sim", check_sim, minimum=0)
    for name, value in (("on_record", on_record), ("measure", measure)):
        if value is not None and not callable(value):
            raise TypeError(f"{name} must be a callable, not {value!r}")
    checked = set(sample(len(points), check_sim))
    tasks = [(index, params, seed, index in checked and seed == seeds[0])
             for index, params in enumerate(points) for seed in seeds]

    result = RunResult(records=[None] * len(tasks))
    start = time.monotonic()
    with Workers(jobs, scheduler) as workers, \
            Reporter(len(tasks), label=f"explore {engine.name}",
                     enabled=bool(progress), console=console) as reporter:
        reporter.start(workers.parallel)
        queue = list(enumerate(tasks))[::-1]
        in_flight = {}
        try:
            while queue or in_flight:
                while queue and len(in_flight) < workers.capacity:
                    number, (index, params, seed, sim) = queue.pop()
                    reporter.set_running(workers.running(len(in_flight) + 1))
                    future = workers.submit(
                        measure, engine.name, params, board_name, seed, workload=workload,
                        clock_mhz=clock_mhz, workdir=str(workdir),
                        cache_dir=None if cache_dir is None else str(cache_dir),
                        check_sim=sim, retry_failed=retry_failed)
                    in_flight[future] = (number, params, seed, time.monotonic())
                done = [future for future in in_flight if future.done()]
                if not done:
                    time.sleep(POLL_SECONDS)
                    continue
                for future in done:
                    number, params, seed, submitted = in_flight.pop(future)
                    wall = time.monotonic() - submitted
                    try:
                        record, hit = future.result()
                    except Exception as error:     # a crashed worker, not a failed build
                        record, hit = None, False
                        result.errors.append((params.to_dict(), seed,
                                              f"{type(error).__name__}: {error}"))
                    result.records[number] = record
                    if record is not None:
                        result.hits += bool(hit)
                        result.built += not hit
                        if record["status"] != "ok":
                            result.failed += 1
                        if on_record is not None:
                            on_record(record)
                    else:
                        result.failed += 1
                    reporter.finished(record, hit, _seconds_of(record, hit, wall),
                                      summary_line(engine.name, params, seed, record, hit))
                reporter.set_running(workers.running(len(in_flight)))
        except BaseException:
            workers.cancel(in_flight)
            raise
    result.seconds = round(time.monotonic() - start, 2)
    return result

