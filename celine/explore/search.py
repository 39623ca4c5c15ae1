"""Search a space too large for a grid: Optuna's TPE sampler with constraints.

Each trial draws one value per parameter of the space (an evenly spaced integer range as
an integer distribution, anything else as a categorical one), builds the parameter object
(an invalid combination is told to the study as infeasible without measuring it), measures
the point with every seed through the same `measure_point` and cache as the grid, and tells
the study the objective of the point's best seed with its constraint violations, set with
Trial.set_constraint (values <= 0 mean feasible; the first is "the build succeeded"), which
Optuna's TPE sampler reads to rank infeasible trials below feasible ones (Optuna 5's
replacement of the deprecated TPESampler(constraints_func=...)). The search is
reproducible with its `seed`: trials are asked in batches of the parallel workers and told
in trial order, whatever order they finish in.
"""

import time
from dataclasses import dataclass, field

from ..spec.checks import check_int
from .measure import _check_clock, _check_workload, check_workdir, measure_point, target
from .runner import Reporter, Workers, POLL_SECONDS, summary_line
from .space import Space, parse_seeds

__all__ = ["search", "SearchResult", "suggest"]


@dataclass
class SearchResult:
    """The Optuna study, every record measured (trial order, then seed), the best
    feasible record (None if no trial was feasible), the trials that drew an invalid
    combination [(values, reason)], and the counts."""
    study: object
    records: list = field(default_factory=list)
    best: dict | None = None
    skipped: list = field(default_factory=list)
    built: int = 0
    hits: int = 0
    failed: int = 0
    errors: list = field(default_factory=list)
    seconds: float = 0.0


def _encode(value):
    if isinstance(value, tuple):
        return "+".join(map(str, value))
    return value


def _int_range(values):
    """(lo, hi, step) if `values` are integers lo, lo+step, ..., hi; else None."""
    if len(values) < 2 or any(isinstance(v, bool) or not isinstance(v, int) for v in values):
        return None
    step = values[1] - values[0]
    if step < 1 or any(b - a != step for a, b in zip(values, values[1:])):
        return None
    return values[0], values[-1], step


def suggest(trial, space):
    """One value per parameter of `space`, drawn by `trial`: {parameter: value}."""
    out = {}
    for name, values in space.values.items():
        values = tuple(values)
        span = _int_range(values)
        if span is not None:
            lo, hi, step = span
            out[name] = trial.suggest_int(name, lo, hi, step=step)
        else:
            choices = [_encode(v) for v in values]
            out[name] = values[choices.index(trial.suggest_categorical(name, choices))]
    return out


def _tell(study, trial, space, violations, value):
    """Set the trial's constraint values (named "ok", then one per constraint) and tell
    the study its value."""
    names = ["ok"] + [f"{i}: {c}" for i, c in enumerate(space.constraints, 1)]
    for name, violation in zip(names, violations):
        trial.set_constraint(name, violation)
    study.tell(trial, value)


def _violations(space, record):
    if record is None:
        return [1.0] * (1 + len(space.constraints))
    ok = 0.0 if record["status"] == "ok" else 1.0
    return [ok] + [c.violation(record) for c in space.constraints]


def _representative(space, records):
    """The record of a point that speaks for it: the feasible seed with the best objective,
    else the seed nearest to feasible."""
    measured = [r for r in records if r is not None]
    if not measured:
        return None
    feasible = [r for r in measured if space.feasible(r)
                and space.objective.value(r) is not None]
    if feasible:
        best = feasible[0]
        for record in feasible[1:]:
            if space.objective.better(space.objective.value(record),
                                      space.objective.value(best)):
                best = record
        return best
    return min(measured, key=lambda r: sum(max(v, 0.0) for v in _violations(space, r)))


def search(space, *, trials, seed=0, board, seeds=(1,), workload=None, clock_mhz=None,
           workdir, cache_dir=None, jobs=1, scheduler=None, on_record=None, progress=True,
           retry_failed=False, measure=measure_point, console=None):
    """Run `trials` trials of an Optuna TPE search over `space` (a Space); see the module
    docstring. `measure` is called like celine.explore.measure.measure_point. Returns a
    SearchResult."""
    import optuna

    if not isinstance(space, Space):
        raise TypeError(f"space must be a Space, not {space!r}")
    check_int("trials", trials, minimum=1)
    check_int("seed", seed, minimum=0)
    seeds = parse_seeds(seeds)
    board_name = target(board)[0]
    workload = _check_workload(workload)
    clock_mhz = _check_clock(clock_mhz) if clock_mhz is not None else None
    workdir = check_workdir(workdir)
    for name, value in (("on_record", on_record), ("measure", measure)):
        if value is not None and not callable(value):
            raise TypeError(f"{name} must be a callable, not {value!r}")

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed)
    study = optuna.create_study(direction=space.objective.direction, sampler=sampler)
    worst = float("-inf") if space.objective.direction == "maximize" else float("inf")
    result = SearchResult(study=study)
    engine = space.engine
    start = time.monotonic()

    with Workers(jobs, scheduler) as workers, \
            Reporter(trials * len(seeds), label=f"search {engine.name}",
                     enabled=bool(progress), console=console) as reporter:
        reporter.start(workers.parallel)
        asked, batch = 0, []
        try:
            while asked < trials:
                batch = []
                while asked < trials and sum(len(b[2]) for b in batch) < workers.parallel:
                    trial = study.ask()
                    asked += 1
                    values = suggest(trial, space)
                    try:
                        params = space.make(values)
                    except (ValueError, TypeError) as error:
                        result.skipped.append((values, str(error)))
                        trial.set_user_attr("skipped", str(error))
                        _tell(study, trial, space, _violations(space, None), worst)
                        reporter.skip(len(seeds))
                        continue
                    futures = [(s, workers.submit(
                        measure, engine.name, params, board_name, s, workload=workload,
                        clock_mhz=clock_mhz, workdir=str(workdir),
                        cache_dir=None if cache_dir is None else str(cache_dir),
                        check_sim=False, retry_failed=retry_failed,
                    ), time.monotonic()) for s in seeds]
                    batch.append((trial, params, futures))
                    reporter.set_running(workers.running(sum(len(b[2]) for b in batch)))
                while not all(f.done() for _, _, futures in batch for _, f, _ in futures):
                    time.sleep(POLL_SECONDS)
                for trial, params, futures in batch:
                    records = []
                    for s, future, submitted in futures:
                        try:
                            record, hit = future.result()
                        except Exception as error:    # a crashed worker
                            record, hit = None, False
                            result.errors.append((params.to_dict(), s,
                                                  f"{type(error).__name__}: {error}"))
                            result.failed += 1
                        if record is not None:
                            result.records.append(record)
                            result.hits += bool(hit)
                            result.built += not hit
                            result.failed += record["status"] != "ok"
                            if on_record is not None:
                                on_record(record)
                        records.append(record)
                        seconds = 0.0 if hit or record is None else \
                            float(record["seconds"].get("total", time.monotonic() - submitted))
                        reporter.finished(record, hit, seconds,
                                          summary_line(engine.name, params, s, record, hit))
                    chosen = _representative(space, records)
                    value = None if chosen is None else space.objective.value(chosen)
                    trial.set_user_attr("params", params.to_dict())
                    if chosen is not None:
                        trial.set_user_attr("key", chosen["key"])
                    _tell(study, trial, space, _violations(space, chosen),
                          worst if value is None else float(value))
                reporter.set_running(0)
        except BaseException:
            workers.cancel([f for _, _, futures in batch for _, f, _ in futures])
            raise
    result.best = space.best(result.records)
    result.seconds = round(time.monotonic() - start, 2)
    return result
