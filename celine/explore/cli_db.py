"""`celine db`: query the cost data set from the command line (docs/explore.md).

    celine db query [--engine E] [--board B] [--where key=lo..hi | key=value ...] [--json]
    celine db best OBJECTIVE [--min] [--constraint fig=lo..hi ...] [filters] [--json]
    celine db pareto X Y [--max-x] [--min-y] [filters] [--json]
    celine db export PATH.csv|PATH.parquet [filters]
    celine db cost ENGINE key=value ... [--board B] [--json]     (exit 1: not measured)
    celine db estimate ENGINE key=value ... [--board B] [--model FILE] [--save FILE]
    celine db evaluate [--test-fraction F] [--seed S] [--json]
    celine db plot --out DIR [--engine E] [--board B]
    celine db stats [--json]

Every sub-command takes `--db PATH` (default: the shipped data set, db.DEFAULT_DB under
the repository root). Ranges are `lo..hi`, `lo..` or `..hi` (bounds included); a value
is a number, a string, true/false, none, or a comma list (`precisions=4,8`).

Bad input raises ValueError/TypeError from `run` with a one-line message; the `command`
wrapper registered by `add_parser` prints it as `celine: error: <message>` and exits
with status 2 (the convention of celine/gen/cli.py), so there is never a traceback.
"""

import argparse
import json
import sys
import time

from .db import DEFAULT_DB, FILTER_FIGURES, OBJECTIVES, CostDB, default_db_path

__all__ = ["add_parser", "run", "command", "main", "parse_where"]

_FIGURE_COLUMNS = ("lut4", "ff", "mult18x18d", "dp16kd", "fmax_mhz", "throughput")


# -- argument parsing ------------------------------------------------------------------

def _number(text):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return None


def _value(text):
    """A `key=value` value: none, true/false, a number, a comma list (a list), or text."""
    from ..gen.params_cli import parse_value
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    number = _number(text)
    if number is not None:
        return number
    value = parse_value(text)
    return list(value) if isinstance(value, tuple) else value


def parse_where(items, label="where"):
    """['rows=4..16', 'impl=dsp', 'fmax_mhz=100..'] as {name: (lo, hi) or value};
    ValueError for an item that is not key=value or key=lo..hi, or a repeated key."""
    out = {}
    for item in items or []:
        key, sep, text = item.partition("=")
        if not sep or not key or not text:
            raise ValueError(f"{label} must be key=value or key=lo..hi, not {item!r}")
        if key in out:
            raise ValueError(f"{label} key must be given once, not {key!r} twice")
        if ".." in text:
            lo_text, _, hi_text = text.partition("..")
            lo = _number(lo_text) if lo_text else None
            hi = _number(hi_text) if hi_text else None
            if (lo_text and lo is None) or (hi_text and hi is None) or (lo is None and hi is None):
                raise ValueError(f"{label} range must be numbers lo..hi (either may be left "
                                 f"out, not both), not {item!r}")
            out[key] = (lo, hi)
        else:
            out[key] = _value(text)
    return out


def _status(text):
    return None if text == "all" else text


def _add_common(p, json_flag=True):
    p.add_argument("--db", default=None, metavar="PATH",
                   help=f"the cost database (default: {DEFAULT_DB} in the repository)")
    if json_flag:
        p.add_argument("--json", action="store_true", help="print JSON")


def _add_filters(p, status="ok"):
    p.add_argument("--engine", help="only this engine (celine list)")
    p.add_argument("--board", help="only this board")
    p.add_argument("--where", action="append", metavar="KEY=LO..HI",
                   help="a parameter or figure range (lo..hi, lo.., ..hi) or value; "
                        "repeatable; params.NAME forces the parameter")
    p.add_argument("--status", choices=("ok", "failed", "all"), default=status,
                   help=f"builds that succeeded, failed, or all (default {status})")


def add_parser(subparsers):
    """Add the `db` command and its sub-commands to `subparsers` (an argparse
    subparsers action); returns the `db` parser. Its `func` default is `command`."""
    p = subparsers.add_parser("db", help="query the hardware-cost data set",
                              description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="db_command", required=True, metavar="SUBCOMMAND")

    q = sub.add_parser("query", help="list measured configurations matching filters")
    _add_common(q)
    _add_filters(q)
    q.add_argument("--limit", type=int, help="print at most this many")

    q = sub.add_parser("best", help="the best configuration under constraints")
    q.add_argument("objective", help=f"a figure: {', '.join(OBJECTIVES)}")
    _add_common(q)
    _add_filters(q)
    q.add_argument("--min", action="store_true", help="minimize (default: maximize)")
    q.add_argument("--constraint", action="append", metavar="FIG=LO..HI",
                   help=f"a figure range or value ({', '.join(FILTER_FIGURES)}); repeatable")

    q = sub.add_parser("pareto",
                       help="the Pareto front of two figures (less X, more Y by default)")
    q.add_argument("x", help="figure on the x axis (minimized unless --max-x)")
    q.add_argument("y", help="figure on the y axis (maximized unless --min-y)")
    _add_common(q)
    _add_filters(q)
    q.add_argument("--max-x", action="store_true", help="more x is better")
    q.add_argument("--min-y", action="store_true", help="less y is better")

    q = sub.add_parser("export", help="write records to CSV or Parquet (by the suffix)")
    q.add_argument("path", help="output file, .csv or .parquet")
    _add_common(q, json_flag=False)
    _add_filters(q, status="all")

    for name, text in (("cost", "measured figures of one configuration, or the nearest "
                                "measured ones (exit status 1 when not measured)"),
                       ("estimate", "predicted figures of one configuration (the estimator "
                                    "trained on the data set)")):
        q = sub.add_parser(name, help=text)
        q.add_argument("engine", help="engine name (celine list)")
        q.add_argument("params", nargs="*", default=[], metavar="key=value",
                       help="generator parameters (defaults fill the rest)")
        _add_common(q)
        q.add_argument("--board", default=None, help="board (default ulx3s-85f)")
        if name == "cost":
            q.add_argument("--nearest", type=int, default=5,
                           help="nearest measured points to show when not measured")
        else:
            q.add_argument("--model", metavar="FILE", help="a saved estimator "
                           "(default: train on the data set now)")
            q.add_argument("--save", metavar="FILE", help="save the trained estimator")

    q = sub.add_parser("evaluate",
                       help="the estimator's error on held-out configurations (MAPE)")
    _add_common(q)
    q.add_argument("--test-fraction", type=float, default=0.2,
                   help="fraction of each engine's configurations held out (default 0.2)")
    q.add_argument("--seed", type=int, default=0, help="the split's seed (default 0)")

    q = sub.add_parser("plot",
                       help="PNG plots: Pareto front of throughput against LUT4, Fmax")
    _add_common(q, json_flag=False)
    q.add_argument("--out", required=True, metavar="DIR", help="output directory")
    q.add_argument("--engine", help="only this engine")
    q.add_argument("--board", help="only this board")

    q = sub.add_parser("stats", help="counts of the data set")
    _add_common(q)
    p.set_defaults(func=command)
    return p


# -- output ----------------------------------------------------------------------------

def _table(headers, rows):
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in r]
                                           for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()
                     for row in cells)


def _compact_params(record):
    """The parameters that differ from the engine's defaults, as key=value words."""
    from .. import registry
    params = record["params"]
    engine = registry.BY_NAME.get(record["engine"])
    defaults = {}
    if engine is not None:
        defaults = json.loads(json.dumps(engine.params().to_dict()))
    words = []
    for name, value in params.items():
        if name in defaults and defaults[name] == value:
            continue
        text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
        words.append(f"{name}={text}")
    return " ".join(words) or "(defaults)"


def _format(figure, value):
    if value is None:
        return None
    if figure == "throughput":
        return f"{value / 1e9:.3g}G"
    if isinstance(value, float):
        return f"{value:.4g}"
    return value


def _records_table(records, extra=()):
    headers = ["key", "engine", "board", "seed", "status", *_FIGURE_COLUMNS, *extra, "params"]
    rows = [[r["key"][:10], r["engine"], r["board"], r["seed"], r["status"],
             *(_format(f, r[f]) for f in _FIGURE_COLUMNS),
             *(_format(f, r.get(f)) for f in extra), _compact_params(r)] for r in records]
    return _table(headers, rows)


def _open(args):
    return CostDB(args.db if args.db is not None else default_db_path(), create=False)


def _filters(args):
    return {"engine": args.engine, "board": args.board, "status": _status(args.status),
            "where": parse_where(args.where)}


def _config(args):
    """(engine record, Params, board) of `cost` and `estimate`."""
    from .. import registry
    from ..boards.platforms import BOARDS, DEFAULT_BOARD
    from ..gen.params_cli import parse_params
    engine = registry.get(args.engine)
    params = parse_params(engine.params, args.params)
    board = DEFAULT_BOARD if args.board is None else args.board
    if board not in BOARDS:
        raise ValueError(f"board must be one of {', '.join(BOARDS)}, not {board!r}")
    return engine, params, board


# -- sub-commands ----------------------------------------------------------------------

def run(args):
    """Execute a parsed `celine db ...` command; returns the exit status (0, or 1 when
    `cost` finds the configuration not measured or `best` finds no record). Bad input
    raises ValueError/TypeError with a one-line message."""
    handler = _COMMANDS.get(getattr(args, "db_command", None))
    if handler is None:
        raise ValueError(f"db command must be one of {', '.join(_COMMANDS)}, "
                         f"not {getattr(args, 'db_command', None)!r}")
    return handler(args)


def command(args):
    """`run`, with bad input as one line on stderr and exit status 2 (SystemExit), and a
    non-zero status of `run` as SystemExit too: the `func` the `db` parser sets."""
    try:
        status = run(args)
    except (ValueError, TypeError) as error:
        print(f"celine: error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    if status:
        raise SystemExit(status)


def _query(args):
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"limit must be a positive integer, not {args.limit!r}")
    with _open(args) as db:
        records = db.query(**_filters(args))
    shown = records[:args.limit] if args.limit else records
    if args.json:
        print(json.dumps(shown, indent=2))
    else:
        print(_records_table(shown))
        print(f"({len(records)} records{f', {len(shown)} shown' if len(shown) < len(records) else ''})")
    return 0


def _best(args):
    constraints = parse_where(args.constraint, "constraint")
    with _open(args) as db:
        record = db.best(args.objective, maximize=not args.min, constraints=constraints,
                         **_filters(args))
    if record is None:
        print("no record matches the filters and constraints")
        return 1
    if args.json:
        print(json.dumps(record, indent=2))
    else:
        extra = (args.objective,) if args.objective not in _FIGURE_COLUMNS else ()
        from .db import figure_value
        print(_records_table([{**record, args.objective: figure_value(record, args.objective)}],
                             extra))
    return 0


def _pareto(args):
    with _open(args) as db:
        front = db.pareto(args.x, args.y, minimize_x=not args.max_x,
                          maximize_y=not args.min_y, **_filters(args))
    if args.json:
        print(json.dumps(front, indent=2))
    else:
        from .db import figure_value
        extra = tuple(f for f in (args.x, args.y) if f not in _FIGURE_COLUMNS)
        print(_records_table([{**r, **{f: figure_value(r, f) for f in extra}} for r in front],
                             extra))
        print(f"({len(front)} points on the front)")
    return 0


def _export(args):
    with _open(args) as db:
        count = db.export(args.path, **_filters(args))
    print(f"wrote {count} records to {args.path}")
    return 0


def _cost(args):
    engine, params, board = _config(args)
    with _open(args) as db:
        found = db.cost(engine.name, params, board, nearest=args.nearest)
    label = f"{engine.name} {_compact_params({'engine': engine.name, 'params': found.params})}"
    if args.json:
        print(json.dumps(found.to_dict(), indent=2))
    elif found.measured:
        n = len(found.records)
        print(f"{label} on {board}: measured ({n} record{'s' if n != 1 else ''})")
        print(_table(["figure", "value"], [[k, _format(k, v)]
                                           for k, v in found.figures.items()]))
    else:
        print(f"{label} on {board}: not measured; nearest measured points:")
        rows = [{**r, "distance": round(d, 3)} for d, r in found.nearest]
        print(_records_table(rows, ("distance",)) if rows else "(none: no measured "
              f"configuration of {engine.name})")
    return 0 if found.measured else 1


def _estimate(args):
    from .estimator import Estimator
    engine, params, board = _config(args)
    if args.model:
        estimator = Estimator.load(args.model)
        source = f"model {args.model}"
    else:
        with _open(args) as db:
            records = db.query(status=None)
        estimator = Estimator().fit(records)
        source = f"trained on {len(records)} records"
    if args.save:
        estimator.save(args.save)
    start = time.perf_counter()
    predicted = estimator.predict(engine.name, params, board)
    ms = (time.perf_counter() - start) * 1e3
    outside = estimator.extrapolation(engine.name, params, board)
    if args.json:
        print(json.dumps({"engine": engine.name, "board": board, "params": params.to_dict(),
                          "estimate": predicted, "extrapolated": outside,
                          "milliseconds": ms}, indent=2))
    else:
        label = _compact_params({"engine": engine.name, "params": params.to_dict()})
        print(f"{engine.name} {label} on {board}: estimated ({ms:.1f} ms; {source})")
        if outside:
            print(f"outside the training range ({', '.join(outside)}): a power-law "
                  f"extrapolation")
        print(_table(["figure", "estimate"], [[k, _format(k, v)] for k, v in predicted.items()]))
    return 0


def _evaluate(args):
    from .estimator import Estimator
    with _open(args) as db:
        records = db.query(status=None)
    result = Estimator.evaluate(records, args.test_fraction, args.seed)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"held out {result['test_points']} records, trained on "
              f"{result['train_points']}; {result['seconds_per_prediction'] * 1e3:.2f} ms "
              f"per prediction")
        print(_table(["figure", "MAPE"], [[k, "-" if v is None else f"{v:.1%}"]
                                          for k, v in result["mape"].items()]))
    return 0


def _plot(args):
    from .plot import plot
    with _open(args) as db:
        paths = plot(db, args.out, engine=args.engine, board=args.board)
    for path in paths:
        print(path)
    return 0


def _stats(args):
    with _open(args) as db:
        stats = db.stats()
    if args.json:
        print(json.dumps(stats, indent=2))
        return 0
    print(f"{stats['path']} (schema version {stats['schema_version']}): "
          f"{stats['records']} records, {stats['ok']} ok, {stats['failed']} failed, "
          f"{stats['configurations']} configurations")
    for group in ("engines", "boards"):
        rows = [[name, c["records"], c["ok"], c["failed"], c["configurations"]]
                for name, c in stats[group].items()]
        if rows:
            print(_table([group[:-1], "records", "ok", "failed", "configurations"], rows))
    return 0


_COMMANDS = {"query": _query, "best": _best, "pareto": _pareto, "export": _export,
             "cost": _cost, "estimate": _estimate, "evaluate": _evaluate, "plot": _plot,
             "stats": _stats}


class _Parser(argparse.ArgumentParser):
    """argparse with usage errors as one line (`celine: error: ...`, status 2)."""

    def error(self, message):
        self.exit(2, f"celine: error: {message}\n")


def main(argv=None):
    """`celine db ...` on its own (argv starts with "db"): the exit status."""
    parser = _Parser(prog="celine")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return run(args)
    except (ValueError, TypeError) as error:
        print(f"celine: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
