"""`celine explore`: measure an engine's configurations (synthesis, place and route, the
cycle model) over a grid or an Optuna search, in parallel, cached, into the cost database."""

import argparse
import json
import sys

__all__ = ["add_parser", "run", "EPILOG"]

EPILOG = """\
The space, on the command line (one word per parameter):
  rows=1,2,4          values, comma-separated
  cols=1..8           integers 1 to 8;  cols=2..16/2  in steps of 2
  precisions=8,4+8    a tuple-valued parameter: one value's items joined by '+'
Without any, the engine's own space (celine/engines/<engine>/__init__.py) is explored.

The space in a TOML file (--space FILE; words on the command line replace its entries):
  board = "ulx3s-25f"          # optional, like --board
  seeds = [1, 2]               # optional, like --seeds
  clock_mhz = 100              # optional, like --clock-mhz

  [space]
  rows = [1, 2, 4]
  cols = "1..8"
  precisions = [[8], [4, 8]]   # tuple-valued: one list per value

  [constraints]                # what a result must meet (figures of the record)
  fits = true
  fmax_mhz = ">= 100"
  lut4 = "<= 20000"

  [objective]                  # or minimize = "cycles"
  maximize = "throughput"      # useful MACs per second at the achieved Fmax

  [workload]                   # the cycle model's workload (see `celine params`)
  m = 64

Figures: throughput, throughput_per_lut4, cycles, useful_macs, mac_units, lut4, ff,
mult18x18d, dp16kd, fmax_mhz, clock_mhz, sim_cycles, cycle_error, fits, meets_timing.

Examples:
  celine explore mac rows=1,2,4 cols=1..4 impl=dsp precisions=8 --board ulx3s-25f
  celine explore taylor --space taylor.toml --search --trials 40 --jobs 2
  celine explore mac --space mac.toml --scheduler tcp://10.0.0.5:8786

Every point is cached (build/explore/cache/<content key>.json): a repeated or interrupted
exploration rebuilds nothing. Records go to the cost database (--db; see `celine db`).
"""


def add_parser(subparsers):
    """Add `explore` to the `celine` command's subparsers; returns its parser."""
    p = subparsers.add_parser(
        "explore", help="measure an engine's configurations (grid or search) into the "
        "cost database", description=__doc__.strip().replace("\n", " "), epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("engine", help="engine name (see `celine list`)")
    p.add_argument("values", nargs="*", default=[], metavar="key=values",
                   help="space: key=v1,v2,... or key=lo..hi[/step]")
    p.add_argument("--space", metavar="FILE.toml", help="the space as a TOML file")
    p.add_argument("--board", help="board whose device is measured (default: the space "
                   "file's, else ulx3s-85f)")
    p.add_argument("--seeds", help="nextpnr seeds, e.g. 1,2 (default: the space file's, else 1)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--grid", action="store_true", help="measure every point (default)")
    mode.add_argument("--search", action="store_true",
                      help="Optuna TPE search with the constraints and the objective")
    p.add_argument("--trials", type=int, default=20, help="search budget (default 20)")
    p.add_argument("--search-seed", type=int, default=0,
                   help="the sampler's seed: the same seed, the same trials (default 0)")
    p.add_argument("--jobs", type=int, default=2,
                   help="parallel worker processes (default 2; 1 runs in this process)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run on this dask.distributed scheduler, e.g. tcp://host:8786")
    p.add_argument("--db", metavar="PATH", help="cost database the records go to "
                   "(default: the shipped data set, see `celine db`)")
    p.add_argument("--no-db", action="store_true", help="keep the records in the cache only")
    p.add_argument("--workload", action="append", metavar="key=value",
                   help="a cycle-model workload setting (repeatable), e.g. m=128")
    p.add_argument("--clock-mhz", type=float,
                   help="nextpnr's clock target (default: the space file's, else 125)")
    p.add_argument("--constraint", action="append", default=[], metavar="EXPR",
                   help="a constraint (repeatable), e.g. 'lut4<=20000', fits")
    goal = p.add_mutually_exclusive_group()
    goal.add_argument("--maximize", metavar="FIGURE", help="objective (default throughput)")
    goal.add_argument("--minimize", metavar="FIGURE", help="objective, e.g. cycles")
    p.add_argument("--check-sim", type=int, default=0, metavar="K",
                   help="run the workload in RTL simulation on K points (grid) and "
                   "compare with the cycle model")
    p.add_argument("--retry-failed", action="store_true",
                   help="build points whose cached record failed again")
    p.add_argument("--workdir", help="work directory (default build/explore; must lie "
                   "under the current directory)")
    p.add_argument("--dry-run", action="store_true",
                   help="show the space's points and skipped combinations; build nothing")
    p.set_defaults(func=run)
    return p


def _database(args):
    """The cost database the records go to (celine.explore.db.CostDB; --db, default the
    shipped data set) and its path; (None, None) with --no-db."""
    if args.no_db:
        return None, None
    try:
        from .db import CostDB
    except ImportError as error:
        print(f"celine explore: the cost database is not available ({error}); "
              f"the records stay in the cache", file=sys.stderr)
        return None, None
    database = CostDB(args.db)
    return database, database.path


def _format(record):
    if record is None:
        return "none"
    parts = [f"{record['lut4']} LUT4", f"{record['ff']} FF",
             f"{record['mult18x18d']} MULT18X18D", f"{record['dp16kd']} DP16KD",
             f"Fmax {record['fmax_mhz']:g} MHz (seed {record['seed']})"]
    if record["cycles"] is not None:
        parts.append(f"{record['cycles']} cycles")
    if record["throughput"] is not None:
        parts.append(f"{record['throughput'] / 1e9:.4g} GMAC/s")
    return ", ".join(parts)


def _params_text(values):
    return " ".join(f"{k}={'+'.join(map(str, v)) if isinstance(v, list) else v}"
                    for k, v in values.items())


def _settings(args, space):
    from ..boards.platforms import DEFAULT_BOARD
    from ..gen.cli import UsageError, parse_workload
    from .space import parse_seeds
    board = args.board or space.board or DEFAULT_BOARD
    try:
        seeds = parse_seeds(args.seeds) if args.seeds is not None else (space.seeds or (1,))
    except ValueError as error:
        raise UsageError(str(error)) from None
    workload = {**space.workload, **parse_workload(args.workload)}
    clock = args.clock_mhz if args.clock_mhz is not None else space.clock_mhz
    return board, seeds, workload, clock


def run(args):
    """`celine explore`: bad input raises celine.gen.cli.UsageError (one line, exit 2)."""
    from .. import registry
    from ..gen.cli import UsageError
    from ..sim.emit import build_root
    from ..spec.checks import check_int
    from .measure import check_workdir, model_figures, sim_supported, target
    from .space import Objective, parse_space

    try:
        engine = registry.get(args.engine)
        objective = None
        if args.maximize or args.minimize:
            objective = Objective("maximize" if args.maximize else "minimize",
                                  args.maximize or args.minimize)
        space = parse_space(engine, args.values, file=args.space,
                            constraints=args.constraint, objective=objective)
        board, seeds, workload, clock = _settings(args, space)
        target(board)
        check_int("jobs", args.jobs, minimum=1)
        check_int("trials", args.trials, minimum=1)
        check_int("search_seed", args.search_seed, minimum=0)
        check_int("check_sim", args.check_sim, minimum=0)
        if clock is not None and not 0 < clock < 1000:
            raise ValueError(f"clock_mhz must be a number of MHz between 0 and 1000, "
                             f"not {clock!r}")
        model_figures(engine, engine.params(), workload)     # the workload's names
        workdir = check_workdir(args.workdir or build_root() / "explore")
    except (ValueError, TypeError) as error:
        raise UsageError(str(error)) from None

    mode = "search" if args.search else "grid"
    rules = ", ".join(map(str, space.constraints)) or "no constraints"
    print(f"celine explore: {engine.name} on {board}, seeds {','.join(map(str, seeds))}, "
          f"{space.objective} ({rules}), {mode}", file=sys.stderr)
    grid = None
    if mode == "grid":
        grid = space.grid()
        skipped = grid.reasons()
        print(f"celine explore: {len(grid.points)} points of {space.size} combinations"
              + (f"; skipped {len(grid.skipped)}: " + "; ".join(
                  f"{reason} ({count})" for reason, count in skipped.items())
                 if skipped else ""), file=sys.stderr)
        if not grid.points:
            raise UsageError(f"space must hold at least one valid point, not none of "
                             f"{space.size} combinations")
    else:
        print(f"celine explore: search of {args.trials} trials in {space.size} "
              f"combinations (sampler seed {args.search_seed})", file=sys.stderr)
    if args.check_sim and not sim_supported(engine):
        print(f"celine explore: the {engine.name} engine has no RTL simulation of its "
              f"workload here (celine.explore.measure.SIMULATED); sim_cycles stay empty",
              file=sys.stderr)
    if args.dry_run:
        for params in (grid.points if grid else ()):
            print(_params_text(params.to_dict()))
        return

    try:
        database, db_path = _database(args)
    except (ValueError, TypeError) as error:
        raise UsageError(str(error)) from None
    store = None
    if database is not None:
        store = database.add
        # What the database already holds is not built again (a fresh clone resumes the
        # shipped data set): its records become cache entries of the same keys.
        seeded = database.seed_cache(workdir / "cache", engine=engine.name, board=board)
        if seeded:
            print(f"celine explore: {seeded} records of {db_path} copied into the cache",
                  file=sys.stderr)
    common = dict(board=board, seeds=seeds, workload=workload, clock_mhz=clock,
                  workdir=workdir, jobs=args.jobs, scheduler=args.scheduler,
                  on_record=store, retry_failed=args.retry_failed)
    try:
        if mode == "grid":
            from .runner import run_points
            result = run_points(engine, grid.points, check_sim=args.check_sim, **common)
            records = [r for r in result.records if r is not None]
        else:
            from .search import search
            result = search(space, trials=args.trials, seed=args.search_seed, **common)
            records = result.records
    except (ValueError, TypeError) as error:
        raise UsageError(str(error)) from None

    print(f"celine explore: {len(records)} records: {result.built} built, {result.hits} "
          f"cache hits, {result.failed} failed, {result.seconds:g} s"
          + (f"; in {db_path}" if db_path else ""), file=sys.stderr)
    for record in records:
        if record["status"] != "ok":
            print(f"  failed: {_params_text(record['params'])} seed {record['seed']}: "
                  f"{record['error']}", file=sys.stderr)
        if record["cycle_error"] is not None and record["cycle_error"] > 0.02:
            print(f"  cycle model off by {record['cycle_error']:.1%}: "
                  f"{_params_text(record['params'])}: model {record['cycles']}, RTL "
                  f"{record['sim_cycles']}", file=sys.stderr)
    for params, seed, message in result.errors:
        print(f"  worker crashed: {_params_text(params)} seed {seed}: {message}",
              file=sys.stderr)
    best = space.best(records)
    print(json.dumps({"engine": engine.name, "board": board, "objective": str(space.objective),
                      "constraints": [str(c) for c in space.constraints],
                      "records": len(records), "built": result.built, "cache_hits": result.hits,
                      "failed": result.failed,
                      "best": None if best is None else {
                          "params": best["params"], "key": best["key"],
                          "summary": _format(best),
                          space.objective.figure: space.objective.value(best)}}, indent=2))
