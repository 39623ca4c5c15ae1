"""The cost data set: measured configurations in one SQLite file, and the queries on it.

Why SQLite: one file that can live in the repository, be copied between machines and be
merged (`CostDB.merge`), read by the Python standard library with no server, and
queried by any SQL tool. Each row is one record (celine/explore/record.py), unique by its
content `key`; the record's fields are columns, its dicts (`params`, `tools`, `workload`,
`seconds`) JSON text. Parameters are also kept one per row in a side table `params` so
that parameter ranges are plain indexed SQL (`rows BETWEEN 4 AND 16`) whatever the engine.

Layout versions. The table `meta` holds `schema_version`; MIGRATIONS[n] takes a file from
version n to n + 1 inside one transaction. Opening a file runs the migrations it lacks;
a file newer than this Celine is refused with a clear error. Version 0 is the first
layout, a table `records(key, record)` of whole records as JSON, without `meta`; a new
file is created as an empty version 0 and migrated, so that every file goes through the
same path.

Filters (`where`, `constraints`): {name: (lo, hi)} keeps rows with lo <= value <= hi
(either bound None: open); {name: value} keeps rows equal to `value` (a list for a
list-valued parameter such as the MAC array's precisions: a tuple is always a range). A
name is a figure (FILTER_FIGURES: lut4, fmax_mhz, fits, ...) or, if it is not one, a
generator parameter; "params.NAME" always means the parameter (Taylor's `mac_units` is
both a parameter and a figure).

`cost()` answers "what does this configuration cost": the measured records of exactly
that engine, parameters (resolved by the engine's parameter class, so defaults count)
and board, or "not measured" with the nearest measured points. The distance between two
configurations of one engine is the root mean square over the parameters, plus the
board, of a per-dimension distance in [0, 1]: for numbers |f(a) - f(b)| / (max f - min
f), with f = log2 when every value of that parameter (among the candidates and the
query) is positive (generator parameters mostly double from one step to the next) and
the identity otherwise, and 0 when all values are equal; for anything else (strings,
lists, booleans, None, the board) 0 when equal and 1 when not. So a distance is in
[0, 1], 0 only for the same configuration on the same board.
"""

import csv
import json
import math
import os
import sqlite3
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from .record import FIELDS, STATUS, check_record, new_record

__all__ = ["SCHEMA_VERSION", "DEFAULT_DB", "REPO_ROOT", "default_db_path", "MIGRATIONS",
           "FIGURES", "FILTER_FIGURES", "OBJECTIVES", "DERIVED",
           "board_capacity", "figure_value", "pareto_front", "Cost", "CostDB"]

SCHEMA_VERSION = 1      # the layout of the file (record.SCHEMA_VERSION is the record's)

# The shipped data set, relative to the repository root.
DEFAULT_DB = "data/cost/celine-cost.sqlite"
REPO_ROOT = Path(__file__).resolve().parents[2]


def default_db_path():
    """The shipped data set's path: DEFAULT_DB under the repository root."""
    return REPO_ROOT / DEFAULT_DB


# Columns of the records table by storage kind.
JSON_COLUMNS = ("params", "tools", "workload", "seconds")
BOOL_COLUMNS = ("fits", "meets_timing")
_SQL_TYPES = {"seed": "INTEGER", "cycles": "INTEGER", "useful_macs": "INTEGER",
              "mac_units": "",   # int or float: no affinity keeps the type stored
              "sim_cycles": "INTEGER", "cycle_error": "REAL", "lut4": "INTEGER",
              "ff": "INTEGER", "mult18x18d": "INTEGER", "dp16kd": "INTEGER",
              "clock_mhz": "REAL", "fmax_mhz": "REAL", "fits": "INTEGER",
              "meets_timing": "INTEGER", "throughput": "REAL"}

# Numeric figures of a record (objectives, Pareto axes, ranges).
FIGURES = ("lut4", "ff", "mult18x18d", "dp16kd", "fmax_mhz", "throughput", "cycles",
           "useful_macs", "mac_units", "clock_mhz", "sim_cycles", "cycle_error", "seed")
# Figures computed from others: name -> (SQL expression, meaning).
DERIVED = {"throughput_per_lut4": ("(throughput * 1.0 / NULLIF(lut4, 0))",
                                   "useful MACs per second per LUT4")}
OBJECTIVES = FIGURES + tuple(DERIVED)
# What `where` and `constraints` may name besides parameters.
FILTER_FIGURES = OBJECTIVES + BOOL_COLUMNS + ("device",)



def _boards():
    from ..boards.platforms import BOARDS
    return BOARDS


def board_capacity(board):
    """{lut4, mult18x18d, dp16kd} of board `board`'s device; ValueError for an unknown board."""
    boards = _boards()
    if not isinstance(board, str) or board not in boards:
        raise ValueError(f"board must be one of {', '.join(boards)}, not {board!r}")
    return boards[board].resources


def _engines():
    from .. import registry
    return registry.BY_NAME


def figure_value(record, name):
    """The value of figure `name` (a FIELDS figure or a DERIVED one) in `record`, or None."""
    if name == "throughput_per_lut4":
        throughput, lut4 = record.get("throughput"), record.get("lut4")
        return None if throughput is None or not lut4 else throughput / lut4
    return record.get(name)


def pareto_front(records, x, y, *, minimize_x=True, maximize_y=True):
    """The records of `records` that no other record dominates on (x, y), sorted by x
    ascending (then y). A record is dominated when another is at least as good on both
    figures and better on one; equal points are all kept. Records without x or y are
    left out."""
    points = [(figure_value(r, x), figure_value(r, y), r) for r in records]
    points = [(a, b, r) for a, b, r in points if a is not None and b is not None]
    sx = 1 if minimize_x else -1
    sy = -1 if maximize_y else 1
    # Best x first; among equal x, best y first.
    points.sort(key=lambda p: (sx * p[0], sy * p[1], p[2]["key"]))
    front, best, last = [], None, None
    for a, b, r in points:
        if best is None or sy * b < sy * best:
            front.append(r)
            best, last = b, (a, b)
        elif (a, b) == last:
            front.append(r)
    front.sort(key=lambda r: (figure_value(r, x), figure_value(r, y), r["key"]))
    return front


def _param_key(params):
    """Canonical JSON text of a parameter dict: the exact-match key of a configuration."""
    return json.dumps(params, sort_keys=True, separators=(",", ":"))


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# -- layout versions -------------------------------------------------------------------

_V0 = "CREATE TABLE records (key TEXT PRIMARY KEY, record TEXT NOT NULL)"


def _columns_sql():
    parts = []
    for name in FIELDS:
        kind = "TEXT" if name not in _SQL_TYPES else _SQL_TYPES[name]
        extra = " PRIMARY KEY" if name == "key" else ""
        if name in ("engine", "board", "device", "status", "params", "tools", "seconds",
                    "created") or name == "seed":
            extra += " NOT NULL"
        parts.append(f"{name} {kind}{extra}".replace("  ", " "))
    return ", ".join(parts)


def _migrate_0_to_1(conn):
    """Version 0 (whole records as JSON in `records(key, record)`) to version 1 (one column
    per field, the `params` side table, `meta`). Fields a version-0 record lacks get
    new_record's defaults; fields it has that FIELDS no longer names are dropped."""
    conn.execute("ALTER TABLE records RENAME TO records_v0")
    conn.execute(f"CREATE TABLE records ({_columns_sql()})")
    conn.execute("CREATE INDEX records_engine ON records (engine, board, status)")
    conn.execute("CREATE INDEX records_config ON records (engine, params)")
    conn.execute("CREATE TABLE params (key TEXT NOT NULL REFERENCES records (key) "
                 "ON DELETE CASCADE, name TEXT NOT NULL, num REAL, value TEXT NOT NULL, "
                 "PRIMARY KEY (key, name))")
    conn.execute("CREATE INDEX params_name ON params (name, num, value)")
    conn.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
    for key, text in conn.execute("SELECT key, record FROM records_v0").fetchall():
        old = json.loads(text)
        record = new_record(**{k: v for k, v in old.items() if k in FIELDS})
        try:
            check_record(record)
        except (ValueError, TypeError) as error:
            raise ValueError(f"version 0 record {key!r} cannot be migrated: {error}") from None
        _insert(conn, record)
    conn.execute("DROP TABLE records_v0")


# MIGRATIONS[n]: a function (connection) taking the file from version n to n + 1.
MIGRATIONS = [_migrate_0_to_1]
assert len(MIGRATIONS) == SCHEMA_VERSION


def _insert(conn, record):
    """Upsert `record` (checked) and its parameter rows."""
    values = []
    for name in FIELDS:
        value = record[name]
        if name in JSON_COLUMNS:
            value = None if value is None else json.dumps(
                value, sort_keys=True, separators=(",", ":"))
        elif name in BOOL_COLUMNS and value is not None:
            value = int(value)
        values.append(value)
    names = ", ".join(FIELDS)
    updates = ", ".join(f"{name} = excluded.{name}" for name in FIELDS if name != "key")
    conn.execute(f"INSERT INTO records ({names}) VALUES ({', '.join('?' * len(FIELDS))}) "
                 f"ON CONFLICT (key) DO UPDATE SET {updates}", values)
    conn.execute("DELETE FROM params WHERE key = ?", (record["key"],))
    conn.executemany(
        "INSERT INTO params (key, name, num, value) VALUES (?, ?, ?, ?)",
        [(record["key"], name, float(value) if _is_number(value) else None,
          json.dumps(value, sort_keys=True, separators=(",", ":")))
         for name, value in record["params"].items()])


def _row_to_record(row):
    record = {}
    for name in FIELDS:
        value = row[name]
        if name in JSON_COLUMNS:
            value = json.loads(value) if value is not None else (
                None if name == "workload" else {})
        elif name in BOOL_COLUMNS and value is not None:
            value = bool(value)
        record[name] = value
    return record


# -- the answer of cost() --------------------------------------------------------------

@dataclass
class Cost:
    """What `CostDB.cost` found for one configuration (engine, resolved params, board).

    records: every measured record of exactly this configuration (all seeds, tool
      versions and statuses); empty when it was not measured.
    nearest: when not measured, [(distance, record)] of the closest measured (status
      "ok") configurations of the engine, closest first (the module docstring defines
      the distance); empty when measured.
    """
    engine: str
    board: str
    params: dict
    records: list = field(default_factory=list)
    nearest: list = field(default_factory=list)

    SUMMARY = ("lut4", "ff", "mult18x18d", "dp16kd", "fmax_mhz", "throughput", "cycles",
               "mac_units", "fits", "meets_timing")

    @property
    def measured(self):
        """True when at least one record of exactly this configuration exists."""
        return bool(self.records)

    @property
    def figures(self):
        """The median over the successful ("ok") records of each SUMMARY figure (None when
        no such record has it; `fits` and `meets_timing` are True only if true for all),
        plus `measurements` and `failed` counts. The median, because place-and-route
        figures vary with the seed and one seed should not decide them."""
        ok = [r for r in self.records if r["status"] == "ok"]
        out = {"measurements": len(self.records), "failed": len(self.records) - len(ok)}
        for name in self.SUMMARY:
            values = [r[name] for r in ok if r[name] is not None]
            if not values:
                out[name] = None
            elif name in BOOL_COLUMNS:
                out[name] = all(values)
            else:
                out[name] = statistics.median(values)
        return out

    def to_dict(self):
        """JSON-ready: the configuration, `measured`, `figures` or the nearest points."""
        out = {"engine": self.engine, "board": self.board, "params": self.params,
               "measured": self.measured}
        if self.measured:
            out["figures"] = self.figures
            out["keys"] = [r["key"] for r in self.records]
        else:
            out["nearest"] = [{"distance": round(d, 6), **r} for d, r in self.nearest]
        return out


# -- the database ----------------------------------------------------------------------

class CostDB:
    """The cost data set in the SQLite file `path` (module docstring): a context manager.

    create: make the file (and its directory) if it does not exist; with create=False a
      missing file is a ValueError (a query on a mistyped path should not answer "no
      records").
    """

    def __init__(self, path=None, *, create=True):
        if path is None:
            path = default_db_path()
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"db must be a path, not {path!r}")
        if not isinstance(create, bool):
            raise TypeError(f"create must be True or False, not {create!r}")
        self.path = Path(path)
        if self.path.is_dir():
            raise ValueError(f"db must be a file, not {str(self.path)!r} (a directory)")
        if not self.path.exists():
            if not create:
                raise ValueError(f"db must be an existing cost database, "
                                 f"not {str(self.path)!r} (no such file)")
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                raise ValueError(f"db must be a path that can be created, "
                                 f"not {str(self.path)!r} ({error.strerror})") from None
        try:
            self._conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        except sqlite3.Error as error:
            raise ValueError(f"db must be a path that can be opened, "
                             f"not {str(self.path)!r} ({error})") from None
        self._conn.row_factory = sqlite3.Row
        try:
            self.version = self._open()
        except sqlite3.DatabaseError as error:
            self._conn.close()
            raise ValueError(f"db must be a Celine cost database (SQLite), "
                             f"not {str(self.path)!r} ({error})") from None
        except Exception:
            self._conn.close()
            raise

    def _open(self):
        """Read the layout version; migrate an older file; refuse a newer one. Reading
        takes no write lock (a read-only file of the current version opens); migrating
        does, and checks the version again under it (another process may have migrated)."""
        conn = self._conn
        conn.execute("PRAGMA foreign_keys = ON")
        version = self._version()
        if version == SCHEMA_VERSION:
            return version
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = self._version(create=True)
            for step in MIGRATIONS[version:]:
                step(conn)
            if version < SCHEMA_VERSION:
                conn.execute("INSERT INTO meta (name, value) VALUES ('schema_version', ?) "
                             "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                             (str(SCHEMA_VERSION),))
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return SCHEMA_VERSION

    def _version(self, create=False):
        """The file's layout version (0 for an empty file, made an empty version 0 when
        `create`); ValueError for a file that is not a cost database or is too new."""
        conn = self._conn
        tables = {name for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "meta" in tables:
            row = conn.execute("SELECT value FROM meta WHERE name = 'schema_version'"
                               ).fetchone()
            if row is None or not str(row[0]).isdigit():
                raise ValueError(f"db must be a Celine cost database, not "
                                 f"{str(self.path)!r} (no schema_version in its meta table)")
            version = int(row[0])
        elif tables == {"records"}:
            version = 0
        elif not tables:
            if create:
                conn.execute(_V0)
            version = 0
        else:
            raise ValueError(f"db must be a Celine cost database, not "
                             f"{str(self.path)!r} (tables {', '.join(sorted(tables))})")
        if version > SCHEMA_VERSION:
            raise ValueError(
                f"db schema version must be at most {SCHEMA_VERSION} (this Celine's), "
                f"not {version} in {str(self.path)!r}: update Celine to read it")
        return version

    # -- lifetime ----------------------------------------------------------------------

    def close(self):
        """Close the file (idempotent)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        conn = getattr(self, "_conn", None)
        if conn is not None:
            conn.close()

    def _c(self):
        if self._conn is None:
            raise ValueError(f"db must be open, not closed ({str(self.path)!r})")
        return self._conn

    # -- writing -----------------------------------------------------------------------

    def add(self, record):
        """Store `record` (check_record first); a record with the same key is replaced.
        Returns its key."""
        return self.add_many([record])[0]

    def add_many(self, records):
        """Store every record of `records` in one transaction (all or none); their keys."""
        if isinstance(records, dict) or not hasattr(records, "__iter__"):
            raise TypeError(f"records must be an iterable of records, not {records!r}")
        records = [check_record(record) for record in records]
        for record in records:
            for name in ("key", "engine", "board", "device"):
                if not record[name]:
                    raise ValueError(f"record field {name} must be a non-empty string, "
                                     f"not {record[name]!r}")
        conn = self._c()
        conn.execute("BEGIN IMMEDIATE")
        try:
            for record in records:
                _insert(conn, record)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return [record["key"] for record in records]

    def merge(self, path):
        """Add every record of the cost database at `path` (upserts by key); their count.
        How results measured on several machines become one data set."""
        with CostDB(path, create=False) as other:
            return len(self.add_many(other.query(status=None)))

    def seed_cache(self, cache_dir, *, engine=None, board=None):
        """Write every record of the database (filtered like `query`) that a build would
        reproduce into `cache_dir` as `<key>.json`, unless that file exists: successful
        records and the tools' own failures (an error line starting "ERROR"), not crashes.
        So an exploration resumed on another machine, or on a fresh clone with the shipped
        data set, rebuilds nothing the data set already holds. Returns the count written."""
        from .measure import cache_path, write_cache
        written = 0
        for record in self.query(engine=engine, board=board, status=None):
            if record["status"] != "ok" and not (record["error"] or "").startswith("ERROR"):
                continue
            path = cache_path(cache_dir, record["key"])
            if not path.exists():
                write_cache(path, record)
                written += 1
        return written

    # -- reading -----------------------------------------------------------------------

    def get(self, key):
        """The record with key `key`, or None."""
        if not isinstance(key, str):
            raise TypeError(f"key must be a string, not {key!r}")
        row = self._c().execute("SELECT * FROM records WHERE key = ?", (key,)).fetchone()
        return None if row is None else _row_to_record(row)

    def __contains__(self, key):
        return isinstance(key, str) and self._c().execute(
            "SELECT 1 FROM records WHERE key = ?", (key,)).fetchone() is not None

    def __len__(self):
        return self._c().execute("SELECT COUNT(*) FROM records").fetchone()[0]

    def engines(self):
        """The engine names present, sorted."""
        return [e for (e,) in self._c().execute(
            "SELECT DISTINCT engine FROM records ORDER BY engine")]

    def boards(self):
        """The board names present, sorted."""
        return [b for (b,) in self._c().execute(
            "SELECT DISTINCT board FROM records ORDER BY board")]

    def _check_engine(self, engine):
        known = sorted(set(_engines()) | set(self.engines()))
        if not isinstance(engine, str) or engine not in known:
            raise ValueError(f"engine must be one of {', '.join(known)}, not {engine!r}")
        return engine

    def _check_board(self, board):
        known = list(_boards()) + [b for b in self.boards() if b not in _boards()]
        if not isinstance(board, str) or board not in known:
            raise ValueError(f"board must be one of {', '.join(known)}, not {board!r}")
        return board

    def _param_names(self, engine):
        names = set()
        engines = _engines()
        from dataclasses import fields
        for name, record in engines.items():
            if engine in (None, name):
                names |= {f.name for f in fields(record.params) if f.init}
        sql = "SELECT DISTINCT p.name FROM params p"
        args = ()
        if engine is not None:
            sql += " JOIN records r ON r.key = p.key WHERE r.engine = ?"
            args = (engine,)
        names |= {n for (n,) in self._c().execute(sql, args)}
        return sorted(names)

    def _filters(self, engine, board, status, where, constraints=None):
        """SQL WHERE text and arguments for the common filters; ValueError on bad ones."""
        clauses, args = [], []
        if engine is not None:
            clauses.append("engine = ?")
            args.append(self._check_engine(engine))
        if board is not None:
            clauses.append("board = ?")
            args.append(self._check_board(board))
        if status is not None:
            if status not in STATUS:
                rule = " or ".join(repr(s) for s in (*STATUS, None))
                raise ValueError(f"status must be {rule}, not {status!r}")
            clauses.append("status = ?")
            args.append(status)
        for label, items, figures_only in (("where", where, False),
                                           ("constraints", constraints, True)):
            if items is None:
                continue
            if not isinstance(items, dict):
                raise TypeError(f"{label} must be a dict {{name: (lo, hi) or value}}, "
                                f"not {items!r}")
            for name, spec in items.items():
                clause, more = self._condition(label, name, spec, engine, figures_only)
                clauses.append(clause)
                args.extend(more)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", args

    def _condition(self, label, name, spec, engine, figures_only):
        if not isinstance(name, str):
            raise TypeError(f"{label} key must be a string, not {name!r}")
        forced = name.startswith("params.")
        pname = name[len("params."):] if forced else name
        if not forced and name in FILTER_FIGURES:
            column = DERIVED[name][0] if name in DERIVED else name
            return self._figure_condition(label, name, column, spec)
        if figures_only:
            raise ValueError(f"{label} key must be a figure ({', '.join(FILTER_FIGURES)}), "
                             f"not {name!r}")
        known = self._param_names(engine)
        if pname not in known:
            owner = f"the {engine} engine" if engine else "an engine"
            raise ValueError(f"{label} key must be a figure ({', '.join(FILTER_FIGURES)}) "
                             f"or a parameter of {owner} ({', '.join(known)}), not {name!r}")
        if isinstance(spec, tuple):
            lo, hi = self._range(label, name, spec)
            sql, args = "name = ?", [pname]
            if lo is not None:
                sql += " AND num >= ?"
                args.append(lo)
            if hi is not None:
                sql += " AND num <= ?"
                args.append(hi)
            if lo is None and hi is None:
                sql += " AND num IS NOT NULL"
        elif _is_number(spec):
            sql, args = "name = ? AND num = ?", [pname, float(spec)]
        else:
            self._check_value(label, name, spec)
            sql, args = "name = ? AND value = ?", [
                pname, json.dumps(spec, sort_keys=True, separators=(",", ":"))]
        return f"key IN (SELECT key FROM params WHERE {sql})", args

    @staticmethod
    def _check_value(label, name, spec):
        if isinstance(spec, list):
            if not all(v is None or isinstance(v, (str, int, float)) for v in spec):
                raise TypeError(f"{label} value of {name} must be a number, string, bool, "
                                f"None, list or (lo, hi), not {spec!r}")
        elif not (spec is None or isinstance(spec, (str, int, float))):
            raise TypeError(f"{label} value of {name} must be a number, string, bool, None, "
                            f"list or (lo, hi), not {spec!r}")

    @staticmethod
    def _range(label, name, spec):
        ok = len(spec) == 2 and all(v is None or (_is_number(v) and not math.isnan(v))
                                   for v in spec)
        if not ok:
            raise ValueError(f"{label} range of {name} must be (lo, hi) with numbers or "
                             f"None, not {spec!r}")
        lo, hi = spec
        if lo is not None and hi is not None and lo > hi:
            raise ValueError(f"{label} range of {name} must have lo <= hi, not {spec!r}")
        return lo, hi

    def _figure_condition(self, label, name, column, spec):
        if isinstance(spec, tuple):
            if name in BOOL_COLUMNS or name == "device":
                raise ValueError(f"{label} value of {name} must be a single value, "
                                 f"not a range {spec!r}")
            lo, hi = self._range(label, name, spec)
            parts, args = [f"{column} IS NOT NULL"], []
            if lo is not None:
                parts.append(f"{column} >= ?")
                args.append(lo)
            if hi is not None:
                parts.append(f"{column} <= ?")
                args.append(hi)
            return "(" + " AND ".join(parts) + ")", args
        if spec is None:
            return f"{column} IS NULL", []
        if name in BOOL_COLUMNS:
            if not isinstance(spec, bool):
                raise TypeError(f"{label} value of {name} must be True or False, "
                                f"not {spec!r}")
            return f"{column} = ?", [int(spec)]
        if name == "device":
            if not isinstance(spec, str):
                raise TypeError(f"{label} value of device must be a string, not {spec!r}")
            return "device = ?", [spec]
        if not _is_number(spec):
            raise TypeError(f"{label} value of {name} must be a number or (lo, hi), "
                            f"not {spec!r}")
        return f"{column} = ?", [spec]

    def query(self, engine=None, board=None, status="ok", where=None):
        """The records matching every filter, ordered by engine, board and key.

        engine, board: names (None: any). status: "ok" (default), "failed" or None (any).
        where: {figure or parameter: (lo, hi) or value} (module docstring).
        """
        sql, args = self._filters(engine, board, status, where)
        rows = self._c().execute(f"SELECT * FROM records{sql} ORDER BY engine, board, key",
                                 args)
        return [_row_to_record(row) for row in rows]

    @staticmethod
    def _check_figure(label, name, allowed=OBJECTIVES):
        if not isinstance(name, str) or name not in allowed:
            raise ValueError(f"{label} must be one of {', '.join(allowed)}, not {name!r}")
        return name

    def best(self, objective, *, maximize=True, constraints=None, engine=None, board=None,
             status="ok", where=None):
        """The record with the highest (maximize) or lowest `objective` among those
        matching the filters and `constraints` ({figure: (lo, hi) or value}, e.g.
        {"fmax_mhz": (100, None), "fits": True}); None if no record matches. Ties go to
        the smallest key, so the answer does not depend on insertion order."""
        self._check_figure("objective", objective)
        if not isinstance(maximize, bool):
            raise TypeError(f"maximize must be True or False, not {maximize!r}")
        sql, args = self._filters(engine, board, status, where, constraints)
        column = DERIVED[objective][0] if objective in DERIVED else objective
        sql += (" AND " if sql else " WHERE ") + f"{column} IS NOT NULL"
        order = "DESC" if maximize else "ASC"
        row = self._c().execute(f"SELECT * FROM records{sql} ORDER BY {column} {order}, "
                                f"key LIMIT 1", args).fetchone()
        return None if row is None else _row_to_record(row)

    def pareto(self, x, y, *, minimize_x=True, maximize_y=True, engine=None, board=None,
               status="ok", where=None, constraints=None):
        """The Pareto front of figures x and y among the matching records (pareto_front:
        non-dominated records, sorted by x ascending). By default less x and more y are
        better (e.g. x="lut4", y="throughput")."""
        self._check_figure("x", x)
        self._check_figure("y", y)
        for name, value in (("minimize_x", minimize_x), ("maximize_y", maximize_y)):
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be True or False, not {value!r}")
        sql, args = self._filters(engine, board, status, where, constraints)
        rows = self._c().execute(f"SELECT * FROM records{sql}", args)
        return pareto_front([_row_to_record(r) for r in rows], x, y,
                            minimize_x=minimize_x, maximize_y=maximize_y)

    # -- cost of one configuration -----------------------------------------------------

    def cost(self, engine, params, board, *, nearest=5):
        """The measured cost of one configuration: a Cost with the records of exactly
        `engine`, `params` (the engine's Params, or a dict of its constructor arguments;
        defaults fill the rest, so {"rows": 4} is the default array with 4 rows) and
        `board`, or, when there is none, Cost.measured False and Cost.nearest the
        `nearest` closest measured configurations of the engine (module docstring)."""
        engines = _engines()
        if not isinstance(engine, str) or engine not in engines:
            raise ValueError(f"engine must be one of {', '.join(engines)}, not {engine!r}")
        record = engines[engine]
        if isinstance(params, dict):
            params = record.params.from_dict(params)
        elif not isinstance(params, record.params):
            raise TypeError(f"params must be a dict or a {record.params.__name__}, "
                            f"not {params!r}")
        if not isinstance(board, str) or board not in _boards():
            raise ValueError(f"board must be one of {', '.join(_boards())}, not {board!r}")
        if isinstance(nearest, bool) or not isinstance(nearest, int) or nearest < 0:
            raise ValueError(f"nearest must be a non-negative integer, not {nearest!r}")
        resolved = json.loads(_param_key(params.to_dict()))
        rows = self._c().execute(
            "SELECT * FROM records WHERE engine = ? AND board = ? AND params = ? "
            "ORDER BY seed, key", (engine, board, _param_key(resolved)))
        found = Cost(engine, board, resolved, [_row_to_record(r) for r in rows])
        if not found.measured and nearest:
            candidates = self.query(engine=engine, status="ok")
            found.nearest = nearest_records(resolved, board, candidates)[:nearest]
        return found

    # -- export and counts -------------------------------------------------------------

    def export(self, path, *, engine=None, board=None, status=None, where=None):
        """Write the matching records (all statuses by default) to `path`: CSV or Parquet
        by its suffix (.csv, .parquet). Columns: FIELDS in order (dicts as JSON text),
        then one `param.NAME` column per parameter (lists as JSON text). Returns the
        number of rows written."""
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"export path must be a path, not {path!r}")
        path = Path(path)
        if path.suffix not in (".csv", ".parquet"):
            raise ValueError(f"export path must end in .csv or .parquet, not {str(path)!r}")
        if path.is_dir():
            raise ValueError(f"export path must be a file, not {str(path)!r} (a directory)")
        records = self.query(engine=engine, board=board, status=status, where=where)
        names = sorted({name for r in records for name in r["params"]})
        table = {name: [] for name in FIELDS}
        table.update({f"param.{name}": [] for name in names})
        for r in records:
            for name in FIELDS:
                value = r[name]
                if name in JSON_COLUMNS and value is not None:
                    value = json.dumps(value, sort_keys=True)
                table[name].append(value)
            for name in names:
                value = r["params"].get(name)
                if isinstance(value, (list, dict)):
                    value = json.dumps(value)
                table[f"param.{name}"].append(value)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.suffix == ".csv":
                with open(path, "w", newline="") as f:
                    writer = csv.writer(f)
                    writer.writerow(table)
                    for i in range(len(records)):
                        writer.writerow(["" if table[c][i] is None else table[c][i]
                                         for c in table])
            else:
                import pyarrow as pa
                import pyarrow.parquet as pq
                pq.write_table(pa.table({c: _arrow_column(pa, v) for c, v in table.items()}),
                               path)
        except OSError as error:
            raise ValueError(f"export path must be writable, not {str(path)!r} "
                             f"({error.strerror})") from None
        return len(records)

    def stats(self):
        """Counts: records, ok, failed, configurations (distinct engine, params, board),
        and per engine and per board; the path and the schema version."""
        c = self._c()

        def counts(where="", args=()):
            row = c.execute(
                "SELECT COUNT(*), SUM(status = 'ok'), SUM(status = 'failed'), "
                "COUNT(DISTINCT engine || char(0) || board || char(0) || params) "
                f"FROM records{where}", args).fetchone()
            return {"records": row[0], "ok": row[1] or 0, "failed": row[2] or 0,
                    "configurations": row[3]}

        return {"path": str(self.path), "schema_version": self.version, **counts(),
                "engines": {e: counts(" WHERE engine = ?", (e,)) for e in self.engines()},
                "boards": {b: counts(" WHERE board = ?", (b,)) for b in self.boards()}}


def _arrow_column(pa, values):
    """A pyarrow array of one export column: the values' own type when they share one
    (ints, floats, bools, strings), else strings (JSON text)."""
    present = [v for v in values if v is not None]
    kinds = {type(v) for v in present}
    if kinds <= {bool}:
        return pa.array(values, type=pa.bool_())
    if kinds <= {int}:
        return pa.array(values, type=pa.int64())
    if kinds <= {int, float}:
        return pa.array([None if v is None else float(v) for v in values], type=pa.float64())
    if kinds <= {str}:
        return pa.array(values, type=pa.string())
    return pa.array([None if v is None else (v if isinstance(v, str) else json.dumps(v))
                     for v in values], type=pa.string())


def nearest_records(params, board, candidates):
    """[(distance, record)] of `candidates` (records of one engine), closest first, ties by
    key: the distance of the module docstring from the configuration (params, board)."""
    names = sorted(set(params).union(*(r["params"] for r in candidates)))
    scales = {}
    for name in names:
        values = [params.get(name)] + [r["params"].get(name) for r in candidates]
        if all(_is_number(v) for v in values):
            log = all(v > 0 for v in values)
            f = [math.log2(v) if log else float(v) for v in values]
            scales[name] = (log, max(f) - min(f))
    out = []
    for r in candidates:
        total = 0.0
        for name in names:
            a, b = params.get(name), r["params"].get(name)
            if name in scales:
                log, span = scales[name]
                if span:
                    fa, fb = (math.log2(a), math.log2(b)) if log else (a, b)
                    total += (abs(fa - fb) / span) ** 2
            elif name not in params or name not in r["params"] or a != b:
                total += 1.0
        total += 0.0 if r["board"] == board else 1.0
        out.append((math.sqrt(total / (len(names) + 1)), r))
    out.sort(key=lambda p: (p[0], p[1]["key"]))
    return out
