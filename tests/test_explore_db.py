"""The cost data set (celine/explore/db.py), its estimator, plots and `celine db` command,
on a small fixed synthetic data set: 30 MAC-array configurations with made-up but
plausible figures (a power law in the array size, DSPs only for impl="dsp"), generated
deterministically here. No synthesis runs."""

import argparse
import csv
import hashlib
import io
import itertools
import json
import math
import sqlite3
import subprocess
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from celine.engines.mac.cycles import estimate as mac_estimate
from celine.engines.mac.spec import MacArrayParams
from celine.explore import cli_db, db as dbmod
from celine.explore.db import (DEFAULT_DB, SCHEMA_VERSION, CostDB, board_capacity,
                               default_db_path, figure_value, pareto_front)
from celine.explore.estimator import Estimator, features
from celine.explore.plot import plot
from celine.explore.record import new_record

ROOT = Path(__file__).resolve().parents[1]
BOARDS = ("ulx3s-85f", "ulx3s-25f")
DEVICES = {"ulx3s-85f": "LFE5U-85F", "ulx3s-25f": "LFE5U-25F"}
TOOLS = {"yosys": "0.40", "nextpnr": "0.7"}


def _noise(*parts):
    """A deterministic number in [-1, 1) from `parts` (no random state)."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:4], "big") / 2 ** 31 - 1


def mac_configs():
    """The 30 MAC-array configurations of the synthetic data set: a fixed sample (seed 11)
    of the valid rows x cols x impl x brick_width x precisions points, in a fixed order."""
    import random
    points = []
    for rows, cols, impl, bw, precisions in itertools.product(
            (1, 2, 4, 8), (1, 2, 4, 8), ("bricks", "dsp"), (1, 2, 4),
            ((8,), (4, 8), (2, 4, 8, 16))):
        if any(p % bw for p in precisions) or (impl == "dsp" and bw != 2):
            continue
        points.append((rows, cols, impl, bw, precisions))
    chosen = sorted(random.Random(11).sample(points, 30))
    return [MacArrayParams(rows=rows, cols=cols, impl=impl, brick_width=bw,
                           precisions=precisions)
            for rows, cols, impl, bw, precisions in chosen]


def synthetic_record(params, board, seed=1):
    """A plausible record of `params` on `board`: LUT4 grows with the PEs and the bricks
    per PE, DSPs with the PEs for impl="dsp", Fmax falls with the array's size. A
    configuration that does not fit the device is a failed build (no Fmax)."""
    pes = params.rows * params.cols
    bricks = (8 // params.brick_width) ** 2
    per_pe = 9 * bricks + 60 if params.impl == "bricks" else 70
    lut4 = round((450 + pes * per_pe * (1 + 0.15 * len(params.precisions)))
                 * (1 + 0.03 * _noise(params, board, seed, "lut")))
    mult = pes if params.impl == "dsp" else 0
    dp16kd = 4 + (params.rows + params.cols) // 2
    fmax = round((135 - 7 * math.log2(pes) - (8 if params.impl == "bricks" else 0))
                 * (1 + 0.02 * _noise(params, board, seed, "fmax")), 2)
    if board == "ulx3s-25f":
        fmax = round(fmax * 0.97, 2)
    model = mac_estimate(params, m=64, k=64, n=64)
    capacity = board_capacity(board)
    fits = lut4 <= capacity["lut4"] and mult <= capacity["mult18x18d"]
    key = hashlib.sha256(json.dumps([params.to_dict(), board, seed]).encode()).hexdigest()
    measured = dict(fmax_mhz=fmax, meets_timing=fmax >= 50.0,
                    throughput=model.useful_macs / model.cycles * fmax * 1e6)
    if not fits:
        measured = {}
    return new_record(
        key=key, engine="mac", params=params.to_dict(), board=board, device=DEVICES[board],
        seed=seed, tools=dict(TOOLS), status="ok" if fits else "failed",
        error=None if fits else "ERROR: Unable to place cell 'mac', no BELs remaining",
        workload={"m": 64, "k": 64, "n": 64}, cycles=model.cycles,
        useful_macs=model.useful_macs, mac_units=model.mac_units, lut4=lut4,
        ff=round(lut4 * 0.7), mult18x18d=mult, dp16kd=dp16kd, clock_mhz=50.0, fits=fits,
        seconds={"synth": 10.0, "pnr": 20.0}, created="2025-01-01T00:00:00Z", **measured)


def synthetic_records():
    """36 records: the 30 configurations, even ones on the 85F, odd ones on the 25F, every
    fifth on both boards."""
    out = []
    for i, params in enumerate(mac_configs()):
        out.append(synthetic_record(params, BOARDS[i % 2]))
        if i % 5 == 0:
            out.append(synthetic_record(params, BOARDS[1 - i % 2]))
    return out


@pytest.fixture
def records():
    return synthetic_records()


@pytest.fixture
def db(tmp_path, records):
    with CostDB(tmp_path / "cost.sqlite") as db:
        db.add_many(records)
        yield db


def test_synthetic_data_set_is_fixed():
    assert len(mac_configs()) == 30
    assert len(synthetic_records()) == 36
    assert synthetic_records() == synthetic_records()


def test_default_db_path_is_in_the_repository():
    assert DEFAULT_DB == "data/cost/celine-cost.sqlite"
    assert default_db_path() == ROOT / DEFAULT_DB


# -- layout versions and migrations ----------------------------------------------------

def test_new_file_has_the_current_schema(tmp_path):
    path = tmp_path / "sub" / "new.sqlite"
    with CostDB(path) as db:
        assert db.version == SCHEMA_VERSION == 1
        assert len(db) == 0
    conn = sqlite3.connect(path)
    tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master "
                                                "WHERE type = 'table'")}
    assert tables == {"records", "params", "meta"}
    assert conn.execute("SELECT value FROM meta WHERE name = 'schema_version'"
                        ).fetchone() == ("1",)
    conn.close()


def test_version_0_file_is_migrated(tmp_path, records):
    """Version 0: whole records as JSON in records(key, record), no meta table. An old
    record lacking a field gets its default; a field FIELDS no longer has is dropped."""
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE records (key TEXT PRIMARY KEY, record TEXT NOT NULL)")
    old = [dict(r) for r in records[:3]]
    del old[0]["seconds"]           # written before `seconds` existed
    old[1]["legacy"] = "dropped"    # a field later removed
    for r in old:
        conn.execute("INSERT INTO records VALUES (?, ?)", (r["key"], json.dumps(r)))
    conn.commit()
    conn.close()
    with CostDB(path) as db:
        assert db.version == 1
        assert len(db) == 3
        assert db.get(records[0]["key"]) == {**records[0], "seconds": {}}
        assert db.get(records[1]["key"]) == records[1]
        assert db.get(records[2]["key"]) == records[2]
        # the params side table was filled: parameter filters work on migrated rows
        rows = records[2]["params"]["rows"]
        assert records[2]["key"] in {r["key"] for r in db.query(status=None,
                                                               where={"rows": rows})}
    conn = sqlite3.connect(path)
    tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master "
                                                "WHERE type = 'table'")}
    conn.close()
    assert tables == {"records", "params", "meta"}
    with CostDB(path) as db:       # opening again: nothing left to migrate
        assert len(db) == 3


def test_bad_version_0_record_is_refused_and_the_file_left_alone(tmp_path):
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE records (key TEXT PRIMARY KEY, record TEXT NOT NULL)")
    conn.execute("INSERT INTO records VALUES ('k', ?)", (json.dumps({"key": "k", "seed": "x"}),))
    conn.commit()
    conn.close()
    with pytest.raises(ValueError, match="^version 0 record 'k' cannot be migrated: "):
        CostDB(path)
    conn = sqlite3.connect(path)        # the transaction was rolled back
    assert [n for (n,) in conn.execute("SELECT name FROM sqlite_master "
                                       "WHERE type = 'table'")] == ["records"]
    conn.close()


def test_migrations_cover_every_version():
    assert len(dbmod.MIGRATIONS) == SCHEMA_VERSION


def test_newer_file_is_refused(tmp_path):
    path = tmp_path / "new.sqlite"
    CostDB(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = '99' WHERE name = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(ValueError) as error:
        CostDB(path)
    assert str(error.value) == (f"db schema version must be at most 1 (this Celine's), not 99 "
                                f"in {str(path)!r}: update Celine to read it")


def test_files_that_are_not_cost_databases(tmp_path):
    text = tmp_path / "notes.sqlite"
    text.write_text("not a database, just text that is long enough to have a header" * 4)
    with pytest.raises(ValueError) as error:
        CostDB(text)
    assert str(error.value) == (f"db must be a Celine cost database (SQLite), "
                                f"not {str(text)!r} (file is not a database)")
    other = tmp_path / "other.sqlite"
    conn = sqlite3.connect(other)
    conn.execute("CREATE TABLE users (name TEXT)")
    conn.commit()
    conn.close()
    with pytest.raises(ValueError) as error:
        CostDB(other)
    assert str(error.value) == (f"db must be a Celine cost database, not {str(other)!r} "
                                f"(tables users)")
    missing = tmp_path / "missing.sqlite"
    with pytest.raises(ValueError) as error:
        CostDB(missing, create=False)
    assert str(error.value) == (f"db must be an existing cost database, not {str(missing)!r} "
                                f"(no such file)")
    assert not missing.exists()
    with pytest.raises(ValueError) as error:
        CostDB(tmp_path)
    assert str(error.value) == f"db must be a file, not {str(tmp_path)!r} (a directory)"
    with pytest.raises(TypeError, match=r"^db must be a path, not 3$"):
        CostDB(3)
    with pytest.raises(TypeError, match=r"^create must be True or False, not 'yes'$"):
        CostDB(tmp_path / "x.sqlite", create="yes")


# -- add, upsert, get ------------------------------------------------------------------

def test_add_get_upsert(tmp_path, records):
    with CostDB(tmp_path / "c.sqlite") as db:
        record = records[0]
        assert db.add(record) == record["key"]
        got = db.get(record["key"])
        assert got == record
        assert [type(got[name]) for name in ("seed", "lut4", "fmax_mhz", "fits", "params")] \
            == [int, int, float, bool, dict]
        assert list(got) == list(record)            # FIELDS order
        assert record["key"] in db and "nope" not in db and len(db) == 1
        assert db.get("nope") is None
        # same key again: replaced, not duplicated; the parameter rows follow
        changed = {**record, "lut4": 1234, "params": {**record["params"], "rows": 64}}
        db.add(changed)
        assert len(db) == 1
        assert db.get(record["key"])["lut4"] == 1234
        assert [r["key"] for r in db.query(where={"rows": 64})] == [record["key"]]
        assert db.query(where={"rows": record["params"]["rows"]}) == []
        assert db.add_many(records[1:4]) == [r["key"] for r in records[1:4]]
        assert len(db) == 4
    with CostDB(tmp_path / "c.sqlite", create=False) as db:     # persisted
        assert len(db) == 4
        with pytest.raises(TypeError, match=r"^key must be a string, not 3$"):
            db.get(3)


def test_add_checks_records_and_is_atomic(tmp_path, records):
    with CostDB(tmp_path / "c.sqlite") as db:
        missing = dict(records[0])
        del missing["lut4"]
        with pytest.raises(ValueError, match=r"^record fields differ: missing \['lut4'\]"):
            db.add(missing)
        with pytest.raises(TypeError, match=r"^record field lut4 must be"):
            db.add({**records[0], "lut4": "many"})
        with pytest.raises(ValueError) as error:
            db.add({**records[0], "engine": ""})
        assert str(error.value) == "record field engine must be a non-empty string, not ''"
        with pytest.raises(TypeError, match=r"^records must be an iterable of records, not 3$"):
            db.add_many(3)
        with pytest.raises(ValueError):
            db.add_many([records[0], {**records[1], "board": ""}])
        assert len(db) == 0                         # all or none
    with pytest.raises(ValueError) as error:
        db.get("x")
    assert str(error.value) == f"db must be open, not closed ({str(tmp_path / 'c.sqlite')!r})"


def test_merge(tmp_path, records):
    with CostDB(tmp_path / "a.sqlite") as a, CostDB(tmp_path / "b.sqlite") as b:
        a.add_many(records[:20])
        b.add_many(records[10:])
        assert a.merge(tmp_path / "b.sqlite") == len(records) - 10
        assert len(a) == len(records)


# -- queries ---------------------------------------------------------------------------

def keys(records):
    return sorted(r["key"] for r in records)


def test_query_filters(db, records):
    ok = [r for r in records if r["status"] == "ok"]
    failed = [r for r in records if r["status"] == "failed"]
    assert len(failed) == 2
    assert keys(db.query()) == keys(ok)
    assert keys(db.query(status=None)) == keys(records)
    assert keys(db.query(status="failed")) == keys(failed)
    assert keys(db.query(engine="mac", board="ulx3s-25f")) == keys(
        r for r in ok if r["board"] == "ulx3s-25f")
    cases = [
        ({"rows": (2, 4)}, lambda r: 2 <= r["params"]["rows"] <= 4),
        ({"rows": (4, None)}, lambda r: r["params"]["rows"] >= 4),
        ({"cols": (None, 2)}, lambda r: r["params"]["cols"] <= 2),
        ({"rows": 8, "impl": "bricks"},
         lambda r: r["params"]["rows"] == 8 and r["params"]["impl"] == "bricks"),
        ({"precisions": [4, 8]}, lambda r: r["params"]["precisions"] == [4, 8]),
        ({"acc_width": None}, lambda r: r["params"]["acc_width"] is None),
        ({"lut4": (1000, 5000)}, lambda r: 1000 <= r["lut4"] <= 5000),
        ({"fmax_mhz": (100.0, None), "params.brick_width": (2, 4)},
         lambda r: r["fmax_mhz"] >= 100 and r["params"]["brick_width"] >= 2),
        ({"throughput_per_lut4": (1e5, None)}, lambda r: r["throughput"] / r["lut4"] >= 1e5),
        ({"device": "LFE5U-25F"}, lambda r: r["device"] == "LFE5U-25F"),
    ]
    for where, keep in cases:
        assert keys(db.query(where=where)) == keys(r for r in ok if keep(r)), where
        assert db.query(where=where), where       # each case selects something
    assert keys(db.query(status=None, where={"fits": False})) == keys(failed)
    ordered = db.query()
    assert ordered == sorted(ordered, key=lambda r: (r["engine"], r["board"], r["key"]))


def test_query_rejects_bad_filters(db):
    known_figures = ", ".join(dbmod.FILTER_FIGURES)
    cases = [
        (dict(engine="gpu"), ValueError,
         "engine must be one of activation, mac, smartdeal, taylor, vitcod, not 'gpu'"),
        (dict(board="zedboard"), ValueError,
         "board must be one of ulx3s-85f, ulx3s-25f, ecpix5-85f, versa-ecp5, not 'zedboard'"),
        (dict(status="done"), ValueError, "status must be 'ok' or 'failed' or None, not 'done'"),
        (dict(where=[("rows", 2)]), TypeError,
         "where must be a dict {name: (lo, hi) or value}, not [('rows', 2)]"),
        (dict(where={"rows": (4, 2)}), ValueError, "where range of rows must have lo <= hi, "
                                                   "not (4, 2)"),
        (dict(where={"rows": (1, 2, 3)}), ValueError,
         "where range of rows must be (lo, hi) with numbers or None, not (1, 2, 3)"),
        (dict(where={"lut4": ("a", None)}), ValueError,
         "where range of lut4 must be (lo, hi) with numbers or None, not ('a', None)"),
        (dict(where={"fits": (0, 1)}), ValueError,
         "where value of fits must be a single value, not a range (0, 1)"),
        (dict(where={"fits": 1}), TypeError, "where value of fits must be True or False, not 1"),
        (dict(where={"lut4": "big"}), TypeError,
         "where value of lut4 must be a number or (lo, hi), not 'big'"),
        (dict(where={"rows": {"a": 1}}), TypeError,
         "where value of rows must be a number, string, bool, None, list or (lo, hi), "
         "not {'a': 1}"),
        (dict(where={3: 1}), TypeError, "where key must be a string, not 3"),
    ]
    for kwargs, kind, message in cases:
        with pytest.raises(kind) as error:
            db.query(**kwargs)
        assert str(error.value) == message, kwargs
    with pytest.raises(ValueError) as error:
        db.query(engine="mac", where={"height": 2})
    assert str(error.value) == (f"where key must be a figure ({known_figures}) or a "
                                f"parameter of the mac engine (acc_width, brick_width, cols, "
                                f"impl, lfsr_seed, max_reduction, precisions, rows, "
                                f"rps_precisions), not 'height'")


def test_best_under_constraints(db, records):
    ok = [r for r in records if r["status"] == "ok"]

    def brute(objective, keep, maximize=True):
        pool = [r for r in ok if keep(r) and figure_value(r, objective) is not None]
        sign = -1 if maximize else 1
        return min(pool, key=lambda r: (sign * figure_value(r, objective), r["key"]))

    best = db.best("throughput", constraints={"lut4": (None, 5000), "fits": True},
                   board="ulx3s-85f")
    assert best == brute("throughput", lambda r: r["lut4"] <= 5000 and r["fits"]
                         and r["board"] == "ulx3s-85f")
    assert db.best("lut4", maximize=False, where={"impl": "bricks"}) == brute(
        "lut4", lambda r: r["params"]["impl"] == "bricks", maximize=False)
    assert db.best("throughput_per_lut4", constraints={"fmax_mhz": (100, None)}) == brute(
        "throughput_per_lut4", lambda r: r["fmax_mhz"] >= 100)
    assert db.best("fmax_mhz", status="failed") is None         # failed: no Fmax
    assert db.best("throughput", constraints={"lut4": (None, 10)}) is None
    with pytest.raises(ValueError) as error:
        db.best("speed")
    assert str(error.value) == f"objective must be one of {', '.join(dbmod.OBJECTIVES)}, " \
                               f"not 'speed'"
    with pytest.raises(ValueError) as error:
        db.best("throughput", constraints={"rows": (1, 4)})
    assert str(error.value) == (f"constraints key must be a figure "
                                f"({', '.join(dbmod.FILTER_FIGURES)}), not 'rows'")
    with pytest.raises(TypeError, match=r"^maximize must be True or False, not 1$"):
        db.best("throughput", maximize=1)


def brute_front(records, x, y, minimize_x, maximize_y):
    """Non-dominated records by the definition, O(n^2)."""
    sx = 1 if minimize_x else -1
    sy = -1 if maximize_y else 1
    pts = [(sx * figure_value(r, x), sy * figure_value(r, y), r) for r in records
           if figure_value(r, x) is not None and figure_value(r, y) is not None]
    return [r for a, b, r in pts
            if not any(c <= a and d <= b and (c < a or d < b) for c, d, _ in pts)]


@pytest.mark.parametrize("x, y, minimize_x, maximize_y", [
    ("lut4", "throughput", True, True), ("lut4", "fmax_mhz", True, True),
    ("dp16kd", "throughput_per_lut4", True, True), ("lut4", "cycles", True, False),
    ("fmax_mhz", "lut4", False, False)])
def test_pareto_matches_brute_force(db, records, x, y, minimize_x, maximize_y):
    ok = [r for r in records if r["status"] == "ok"]
    front = db.pareto(x, y, minimize_x=minimize_x, maximize_y=maximize_y)
    assert keys(front) == keys(brute_front(ok, x, y, minimize_x, maximize_y))
    assert [figure_value(r, x) for r in front] == sorted(figure_value(r, x) for r in front)
    assert len(front) >= 2
    board = db.pareto(x, y, minimize_x=minimize_x, maximize_y=maximize_y, board="ulx3s-25f")
    assert keys(board) == keys(brute_front([r for r in ok if r["board"] == "ulx3s-25f"],
                                           x, y, minimize_x, maximize_y))


def test_pareto_front_keeps_equal_points_and_drops_dominated_ties():
    def r(key, lut4, throughput):
        return {"key": key, "lut4": lut4, "throughput": throughput}
    points = [r("a", 10, 5.0), r("b", 10, 5.0), r("c", 10, 4.0), r("d", 12, 5.0),
              r("e", 20, 9.0), r("f", 5, 1.0), r("g", 30, None)]
    front = pareto_front(points, "lut4", "throughput")
    assert [p["key"] for p in front] == ["f", "a", "b", "e"]
    assert keys(front) == keys(brute_front(points, "lut4", "throughput", True, True))


def test_pareto_rejects_bad_figures(db):
    with pytest.raises(ValueError) as error:
        db.pareto("area", "throughput")
    assert str(error.value) == f"x must be one of {', '.join(dbmod.OBJECTIVES)}, not 'area'"
    with pytest.raises(ValueError, match=r"^y must be one of .*, not 'rows'$"):
        db.pareto("lut4", "rows")
    with pytest.raises(TypeError, match=r"^minimize_x must be True or False, not None$"):
        db.pareto("lut4", "throughput", minimize_x=None)


def test_export_csv_and_parquet(db, records, tmp_path):
    import pyarrow.parquet as pq
    assert db.export(tmp_path / "all.csv") == len(records)
    with open(tmp_path / "all.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    by_key = {r["key"]: r for r in records}
    assert sorted(r["key"] for r in rows) == keys(records)
    first = rows[0]
    original = by_key[first["key"]]
    assert list(first)[:len(dbmod.FIELDS)] == list(dbmod.FIELDS)
    assert int(first["lut4"]) == original["lut4"]
    assert json.loads(first["params"]) == original["params"]
    assert int(first["param.rows"]) == original["params"]["rows"]
    assert json.loads(first["param.precisions"]) == original["params"]["precisions"]

    assert db.export(tmp_path / "out" / "bricks.parquet", where={"impl": "bricks"}) == len(
        [r for r in records if r["params"]["impl"] == "bricks"])
    table = pq.read_table(tmp_path / "out" / "bricks.parquet").to_pylist()
    assert {r["param.impl"] for r in table} == {"bricks"}
    for row in table:
        original = by_key[row["key"]]
        assert row["lut4"] == original["lut4"] and row["fits"] == original["fits"]
        assert row["fmax_mhz"] == original["fmax_mhz"]
        assert json.loads(row["tools"]) == original["tools"]
        assert row["param.rows"] == original["params"]["rows"]
    with pytest.raises(ValueError) as error:
        db.export(tmp_path / "x.xlsx")
    assert str(error.value) == (f"export path must end in .csv or .parquet, "
                                f"not {str(tmp_path / 'x.xlsx')!r}")
    (tmp_path / "d.csv").mkdir()
    with pytest.raises(ValueError) as error:
        db.export(tmp_path / "d.csv")
    assert str(error.value) == f"export path must be a file, not {str(tmp_path / 'd.csv')!r} " \
                               f"(a directory)"


def test_stats(db, records):
    stats = db.stats()
    assert stats["schema_version"] == 1
    assert (stats["records"], stats["ok"], stats["failed"]) == (36, 34, 2)
    assert stats["configurations"] == 36
    assert stats["engines"] == {"mac": {"records": 36, "ok": 34, "failed": 2,
                                        "configurations": 36}}
    assert sum(b["records"] for b in stats["boards"].values()) == 36


# -- cost of one configuration ---------------------------------------------------------

def test_cost_of_a_measured_configuration(db, records):
    record = records[0]
    params = MacArrayParams.from_dict(record["params"])
    found = db.cost("mac", params, record["board"])
    assert found.measured and found.records == [record] and found.nearest == []
    assert found.figures["lut4"] == record["lut4"]
    assert found.figures["measurements"] == 1 and found.figures["fits"] is True
    # a dict of constructor arguments: the defaults fill the rest
    partial = {k: v for k, v in record["params"].items()
               if v != MacArrayParams().to_dict()[k]}
    assert len(partial) < len(record["params"])
    assert db.cost("mac", partial, record["board"]).records == [record]
    # a second seed of the same configuration: both records, the median of the figures
    second = synthetic_record(params, record["board"], seed=2)
    db.add(second)
    found = db.cost("mac", params, record["board"])
    assert [r["seed"] for r in found.records] == [1, 2]
    assert found.figures["lut4"] == (record["lut4"] + second["lut4"]) / 2
    assert found.to_dict()["keys"] == [record["key"], second["key"]]
    # a failed build is a measurement too
    failed = next(r for r in records if r["status"] == "failed")
    found = db.cost("mac", failed["params"], failed["board"])
    assert found.measured and found.figures["failed"] == 1 and found.figures["lut4"] is None


def test_cost_not_measured_gives_the_nearest_points(db, records):
    ok = [r for r in records if r["status"] == "ok"]
    # measured on one board only: the same parameters on the other board are nearest
    only = [r for r in ok if sum(s["params"] == r["params"] for s in ok) == 1][0]
    other = next(b for b in BOARDS if b != only["board"])
    found = db.cost("mac", only["params"], other, nearest=3)
    assert not found.measured and found.records == []
    assert len(found.nearest) == 3
    distance, nearest = found.nearest[0]
    assert nearest == only
    names = len(only["params"])
    assert distance == pytest.approx(math.sqrt(1 / (names + 1)))    # only the board differs
    distances = [d for d, _ in found.nearest]
    assert distances == sorted(distances) and all(0 <= d <= 1 for d in distances)
    # the documented distance, computed here independently
    query = MacArrayParams(rows=8, cols=1, impl="dsp", precisions=(8,)).to_dict()
    found = db.cost("mac", query, "ulx3s-85f", nearest=len(ok))
    assert not found.measured and len(found.nearest) == len(ok)
    for d, r in found.nearest:
        assert d == pytest.approx(reference_distance(query, "ulx3s-85f", r, ok))
    as_dict = found.to_dict()
    assert as_dict["measured"] is False and as_dict["nearest"][0]["key"] == found.nearest[0][1]["key"]
    assert db.cost("mac", query, "ulx3s-85f", nearest=0).nearest == []


def reference_distance(query, board, record, candidates):
    """Root mean square over parameters and the board: numbers by log2 over the span of
    the candidates and the query, anything else 0 if equal, else 1."""
    total = 0.0
    for name in query:
        values = [query[name]] + [c["params"][name] for c in candidates]
        a, b = query[name], record["params"][name]
        if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            logs = [math.log2(v) for v in values]
            span = max(logs) - min(logs)
            total += ((math.log2(a) - math.log2(b)) / span) ** 2 if span else 0.0
        else:
            total += a != b
    total += record["board"] != board
    return math.sqrt(total / (len(query) + 1))


def test_cost_rejects_bad_input(db):
    cases = [
        (("gpu", {}, "ulx3s-85f"), ValueError,
         "engine must be one of mac, taylor, activation, vitcod, smartdeal, not 'gpu'"),
        (("mac", {}, "zed"), ValueError,
         "board must be one of ulx3s-85f, ulx3s-25f, ecpix5-85f, versa-ecp5, not 'zed'"),
        (("mac", [1], "ulx3s-85f"), TypeError,
         "params must be a dict or a MacArrayParams, not [1]"),
        (("mac", {"rows": 0}, "ulx3s-85f"), ValueError, "rows must be between 1 and 64, not 0"),
    ]
    for args, kind, message in cases:
        with pytest.raises(kind) as error:
            db.cost(*args)
        assert str(error.value) == message
    with pytest.raises(TypeError):
        db.cost("mac", {"height": 3}, "ulx3s-85f")
    with pytest.raises(ValueError) as error:
        db.cost("mac", {}, "ulx3s-85f", nearest=-1)
    assert str(error.value) == "nearest must be a non-negative integer, not -1"


def test_board_capacity():
    assert board_capacity("ulx3s-25f") == {"lut4": 24_288, "mult18x18d": 28, "dp16kd": 56}
    assert board_capacity("ulx3s-85f") == {"lut4": 83_640, "mult18x18d": 156, "dp16kd": 208}
    with pytest.raises(ValueError, match=r"^board must be one of .*, not 'x'$"):
        board_capacity("x")


# -- the estimator ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained():
    return Estimator().fit(synthetic_records())


# Bounds on the synthetic data (3% noise on LUT4, 2% on Fmax); measured: LUT4 8%, Fmax 2%.
MAPE_BOUNDS = {"lut4": 0.15, "ff": 0.15, "dp16kd": 0.10, "fmax_mhz": 0.05}


def test_estimator_error_on_held_out_points():
    records = synthetic_records()
    result = Estimator.evaluate(records, 0.25, 0)
    again = Estimator.evaluate(records, 0.25, 0)
    del result["seconds_per_prediction"], again["seconds_per_prediction"]
    assert result == again                                  # deterministic
    assert result["test_points"] == 9 and result["train_points"] == 27
    for figure, bound in MAPE_BOUNDS.items():
        assert result["mape"][figure] < bound, (figure, result["mape"])
    assert set(result["mape"]) == {"lut4", "ff", "mult18x18d", "dp16kd", "fmax_mhz"}
    assert result["engines"]["mac"]["test_points"] == 9
    other = Estimator.evaluate(records, 0.25, 1)
    assert other["mape"] != result["mape"]                  # the seed picks the split


def test_estimator_predicts_in_milliseconds(trained):
    query = {"rows": 4, "cols": 2, "impl": "dsp", "precisions": (4, 8)}
    predicted = trained.predict("mac", query, "ulx3s-85f")
    assert set(predicted) == {"lut4", "ff", "mult18x18d", "dp16kd", "fmax_mhz", "throughput"}
    assert isinstance(predicted["lut4"], int) and isinstance(predicted["fmax_mhz"], float)
    truth = synthetic_record(MacArrayParams(**query), "ulx3s-85f")
    assert predicted["lut4"] == pytest.approx(truth["lut4"], rel=0.25)
    assert predicted["fmax_mhz"] == pytest.approx(truth["fmax_mhz"], rel=0.08)
    assert predicted["throughput"] == pytest.approx(
        truth["useful_macs"] / truth["cycles"] * predicted["fmax_mhz"] * 1e6)
    small = mac_estimate(MacArrayParams(**query), m=16, k=16, n=16)
    assert trained.predict("mac", query, "ulx3s-85f", workload={"m": 16, "k": 16, "n": 16}
                           )["throughput"] == pytest.approx(
        small.useful_macs / small.cycles * predicted["fmax_mhz"] * 1e6)
    start = time.perf_counter()
    for _ in range(50):
        trained.predict("mac", query, "ulx3s-85f")
    assert (time.perf_counter() - start) / 50 < 0.02                  # milliseconds
    assert trained.extrapolation("mac", query, "ulx3s-85f") == []
    outside = trained.extrapolation("mac", {"rows": 32, "cols": 32}, "ulx3s-85f")
    assert outside[:2] == ["cols", "rows"]
    assert outside[2:] and all(name.startswith("derived.") for name in outside[2:])
    one_board = Estimator().fit([r for r in synthetic_records() if r["board"] == "ulx3s-85f"])
    assert one_board.extrapolation("mac", query, "ulx3s-25f") == ["board"]
    big = trained.predict("mac", {"rows": 32, "cols": 32}, "ulx3s-85f")
    assert big["lut4"] > trained.predict("mac", {"rows": 8, "cols": 8}, "ulx3s-85f")["lut4"]
    assert set(trained.describe()["mac"]) == {"points", "lut4", "ff", "mult18x18d", "dp16kd",
                                              "fmax_mhz"}


def test_estimator_save_and_load(trained, tmp_path):
    path = trained.save(tmp_path / "models" / "estimator.joblib")
    loaded = Estimator.load(path)
    query = {"rows": 2, "cols": 8, "brick_width": 4, "precisions": (4, 8)}
    assert loaded.predict("mac", query, "ulx3s-25f") == trained.predict("mac", query,
                                                                        "ulx3s-25f")
    with pytest.raises(ValueError) as error:
        Estimator.load(tmp_path / "none.joblib")
    assert str(error.value) == (f"estimator must be a saved estimator file, "
                                f"not {str(tmp_path / 'none.joblib')!r} (no such file)")
    with pytest.raises(ValueError) as error:
        Estimator().save(tmp_path / "empty.joblib")
    assert str(error.value) == "estimator must be trained (fit) before it is saved, not empty"


def test_estimator_rejects_bad_input(trained):
    cases = [
        (lambda: trained.predict("taylor", {}, "ulx3s-85f"), ValueError,
         "engine must be one of mac, not 'taylor'"),
        (lambda: trained.predict("mac", {}, "zed"), ValueError,
         "board must be one of ulx3s-85f, ulx3s-25f, ecpix5-85f, versa-ecp5, not 'zed'"),
        (lambda: trained.predict("mac", {"rows": 0}, "ulx3s-85f"), ValueError,
         "rows must be between 1 and 64, not 0"),
        (lambda: trained.predict("mac", {}, "ulx3s-85f", workload=[1]), TypeError,
         "workload must be a dict, not [1]"),
        (lambda: Estimator().predict("mac", {}, "ulx3s-85f"), ValueError,
         "engine must be one of none (not trained), not 'mac'"),
        (lambda: Estimator.evaluate(synthetic_records(), 1.5, 0), ValueError,
         "test_fraction must be between 0 and 1 (exclusive), not 1.5"),
        (lambda: Estimator.evaluate(synthetic_records(), 0.2, "a"), TypeError,
         "seed must be an integer, not 'a'"),
        (lambda: Estimator.evaluate(synthetic_records()[:2], 0.2, 0), ValueError,
         "records must hold at least 3 configurations of an engine to hold some out, "
         "not 2 records"),
        (lambda: Estimator().fit([]), ValueError, "records must hold at least one record, "
                                                  "not []"),
        (lambda: Estimator().fit(3), TypeError, "records must be a list of records, not 3"),
    ]
    for call, kind, message in cases:
        with pytest.raises(kind) as error:
            call()
        assert str(error.value) == message


def test_features_encode_each_kind_of_parameter():
    row = features("mac", {"rows": 4, "impl": "dsp", "precisions": (4, 8)}, "ulx3s-25f")
    assert row["rows"] == 2.0 and row["impl=dsp"] == 1.0 and row["acc_width=None"] == 1.0
    assert row["precisions.len"] == 1.0 and row["precisions.max"] == 3.0
    assert row["precisions∋4"] == 1.0 and row["device=LFE5U-25F"] == 1.0
    assert "derived.act_lanes" in row


# -- plots -----------------------------------------------------------------------------

PNG = b"\x89PNG\r\n\x1a\n"


def test_plots_are_written(db, tmp_path):
    paths = plot(db, tmp_path / "plots")
    assert [p.name for p in paths] == ["mac-fmax.png", "mac-pareto.png"]
    for path in paths:
        assert path.read_bytes()[:8] == PNG and path.stat().st_size > 10_000
    paths = plot(db.path, tmp_path / "one", engine="mac", board="ulx3s-25f")
    assert len(paths) == 2 and all(p.read_bytes()[:8] == PNG for p in paths)
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError) as error:
        plot(db, tmp_path / "file")
    assert str(error.value) == f"out must be a directory, not {str(tmp_path / 'file')!r} " \
                               f"(an existing file)"
    with pytest.raises(ValueError) as error:
        plot(db, tmp_path / "none", engine="taylor")
    assert str(error.value) == ("db must hold successful records with LUT4 to plot "
                                "(engine 'taylor', board None), not none")


# -- the `celine db` command -----------------------------------------------------------

def cli(argv):
    """(status, stdout) of `celine db ...` through a parser built here (run(args))."""
    parser = argparse.ArgumentParser(prog="celine")
    cli_db.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    out = io.StringIO()
    with redirect_stdout(out):
        status = cli_db.run(args)
    return status, out.getvalue()


def test_cli_query_best_pareto(db, records):
    path = str(db.path)
    status, out = cli(["db", "query", "--db", path, "--engine", "mac", "--where", "rows=2..4",
                       "--where", "impl=bricks", "--json"])
    assert status == 0
    assert json.loads(out) == db.query(engine="mac", where={"rows": (2, 4), "impl": "bricks"})
    status, out = cli(["db", "query", "--db", path, "--board", "ulx3s-25f",
                       "--where", "precisions=4,8", "--where", "lut4=..5000"])
    expected = db.query(board="ulx3s-25f", where={"precisions": [4, 8], "lut4": (None, 5000)})
    assert status == 0 and out.splitlines()[-1] == f"({len(expected)} records)"
    assert out.splitlines()[0].split() == ["key", "engine", "board", "seed", "status", "lut4",
                                           "ff", "mult18x18d", "dp16kd", "fmax_mhz",
                                           "throughput", "params"]
    status, out = cli(["db", "query", "--db", path, "--status", "failed", "--limit", "1"])
    assert out.splitlines()[-1] == "(2 records, 1 shown)"
    status, out = cli(["db", "best", "throughput", "--db", path, "--constraint",
                       "lut4=..5000", "--constraint", "fits=true", "--json"])
    assert status == 0
    assert json.loads(out) == db.best("throughput", constraints={"lut4": (None, 5000),
                                                                 "fits": True})
    status, out = cli(["db", "best", "lut4", "--min", "--db", path, "--where", "impl=dsp"])
    assert status == 0 and db.best("lut4", maximize=False, where={"impl": "dsp"})["key"][:10] in out
    status, out = cli(["db", "best", "throughput", "--db", path, "--constraint", "lut4=..10"])
    assert status == 1 and out == "no record matches the filters and constraints\n"
    status, out = cli(["db", "pareto", "lut4", "throughput", "--db", path, "--json"])
    assert keys(json.loads(out)) == keys(db.pareto("lut4", "throughput"))
    status, out = cli(["db", "pareto", "lut4", "throughput_per_lut4", "--db", path])
    assert "throughput_per_lut4" in out.splitlines()[0]
    assert out.splitlines()[-1] == f"({len(db.pareto('lut4', 'throughput_per_lut4'))} " \
                                   f"points on the front)"


def test_cli_export_cost_estimate_plot_stats(db, records, tmp_path):
    path = str(db.path)
    status, out = cli(["db", "export", str(tmp_path / "x.csv"), "--db", path])
    assert status == 0 and out == f"wrote 36 records to {tmp_path / 'x.csv'}\n"
    status, out = cli(["db", "export", str(tmp_path / "x.parquet"), "--db", path,
                       "--board", "ulx3s-85f", "--status", "ok"])
    assert out == f"wrote {len(db.query(board='ulx3s-85f'))} records to {tmp_path / 'x.parquet'}\n"
    record = records[0]
    words = [f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}"
             for k, v in record["params"].items() if v is not None]
    status, out = cli(["db", "cost", "mac", *words, "--board", record["board"], "--db", path])
    assert status == 0 and ": measured (1 record)" in out.splitlines()[0]
    assert f"lut4          {record['lut4']}" in out
    status, out = cli(["db", "cost", "mac", "rows=8", "cols=1", "impl=dsp", "precisions=8",
                       "--db", path, "--nearest", "2"])
    assert status == 1
    lines = out.splitlines()
    assert lines[0] == ("mac cols=1 impl=dsp precisions=8 rows=8 on ulx3s-85f: not measured; "
                        "nearest measured points:")
    assert "distance" in lines[1] and len(lines) == 4
    status, out = cli(["db", "cost", "mac", "rows=8", "--db", path, "--json"])
    assert status == 1 and len(json.loads(out)["nearest"]) == 5
    status, out = cli(["db", "estimate", "mac", "rows=4", "cols=2", "impl=dsp",
                       "precisions=4,8", "--db", path, "--json",
                       "--save", str(tmp_path / "e.joblib")])
    estimate = json.loads(out)
    assert status == 0 and estimate["extrapolated"] == []
    assert set(estimate["estimate"]) >= {"lut4", "mult18x18d", "dp16kd", "fmax_mhz"}
    status, out = cli(["db", "estimate", "mac", "rows=4", "cols=2", "impl=dsp",
                       "precisions=4,8", "--model", str(tmp_path / "e.joblib"), "--json"])
    assert json.loads(out)["estimate"] == estimate["estimate"]
    status, out = cli(["db", "estimate", "mac", "rows=32", "--db", path])
    assert status == 0 and "outside the training range (" in out.splitlines()[1]
    status, out = cli(["db", "evaluate", "--db", path, "--test-fraction", "0.25", "--json"])
    assert json.loads(out)["test_points"] == 9
    status, out = cli(["db", "plot", "--out", str(tmp_path / "p"), "--db", path])
    assert out.split() == [str(tmp_path / "p" / "mac-fmax.png"),
                           str(tmp_path / "p" / "mac-pareto.png")]
    status, out = cli(["db", "stats", "--db", path, "--json"])
    assert json.loads(out) == db.stats()
    status, out = cli(["db", "stats", "--db", path])
    assert out.splitlines()[0] == (f"{path} (schema version 1): 36 records, 34 ok, 2 failed, "
                                   f"36 configurations")


def test_cli_rejects_bad_input(db, tmp_path):
    path = str(db.path)
    cases = [
        (["query", "--where", "rows"], "where must be key=value or key=lo..hi, not 'rows'"),
        (["query", "--where", "rows=a..b"],
         "where range must be numbers lo..hi (either may be left out, not both), "
         "not 'rows=a..b'"),
        (["query", "--where", "rows=.."],
         "where range must be numbers lo..hi (either may be left out, not both), "
         "not 'rows=..'"),
        (["query", "--where", "rows=1", "--where", "rows=2"],
         "where key must be given once, not 'rows' twice"),
        (["query", "--limit", "0"], "limit must be a positive integer, not 0"),
        (["best", "speed"], f"objective must be one of {', '.join(dbmod.OBJECTIVES)}, "
                            f"not 'speed'"),
        (["best", "throughput", "--constraint", "lut4"],
         "constraint must be key=value or key=lo..hi, not 'lut4'"),
        (["pareto", "lut4", "speed"], f"y must be one of {', '.join(dbmod.OBJECTIVES)}, "
                                      f"not 'speed'"),
        (["export", str(tmp_path / "x.json")],
         f"export path must end in .csv or .parquet, not {str(tmp_path / 'x.json')!r}"),
        (["cost", "gpu"], "accelerator must be one of mac, taylor, activation, vitcod, "
                          "smartdeal, not 'gpu'"),
        (["cost", "mac", "height=3"], "unknown parameter 'height' (known: rows, cols, "
                                      "brick_width, precisions, impl, max_reduction, "
                                      "acc_width, rps_precisions, lfsr_seed)"),
        (["cost", "mac", "--board", "zed"],
         "board must be one of ulx3s-85f, ulx3s-25f, ecpix5-85f, versa-ecp5, not 'zed'"),
        (["estimate", "taylor"], "engine must be one of mac, not 'taylor'"),
        (["evaluate", "--test-fraction", "0"],
         "test_fraction must be between 0 and 1 (exclusive), not 0.0"),
    ]
    for argv, message in cases:
        with pytest.raises((ValueError, TypeError)) as error:
            cli(["db", *argv, "--db", path])
        assert str(error.value) == message, argv
    missing = str(tmp_path / "missing.sqlite")
    with pytest.raises(ValueError) as error:
        cli(["db", "stats", "--db", missing])
    assert str(error.value) == (f"db must be an existing cost database, not {missing!r} "
                                f"(no such file)")
    assert not Path(missing).exists()


def test_cli_exit_status_and_one_line_errors(db):
    """Through a real process: status 0, 1 (not measured) and 2 (bad input, one line on
    stderr, no traceback); the `command` wrapper the `db` parser sets does the same."""
    def run(*argv):
        code = ("import sys; from celine.explore.cli_db import main; "
                f"sys.exit(main({['db', *argv]!r}))")
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              cwd=ROOT, timeout=120)

    done = run("stats", "--db", str(db.path))
    assert done.returncode == 0 and done.stderr == ""
    done = run("cost", "mac", "rows=8", "--db", str(db.path))
    assert done.returncode == 1 and "not measured" in done.stdout
    done = run("query", "--where", "rows=4..2", "--db", str(db.path))
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == "celine: error: where range of rows must have lo <= hi, not (4, 2)\n"
    done = run("frobnicate")
    assert done.returncode == 2 and len(done.stderr.splitlines()) == 1
    assert done.stderr.startswith("celine: error: argument SUBCOMMAND: invalid choice:")

    parser = argparse.ArgumentParser(prog="celine")
    cli_db.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["db", "query", "--where", "rows", "--db", str(db.path)])
    err = io.StringIO()
    with redirect_stderr(err), pytest.raises(SystemExit) as exit_:
        args.func(args)
    assert exit_.value.code == 2
    assert err.getvalue() == "celine: error: where must be key=value or key=lo..hi, not 'rows'\n"
    args = parser.parse_args(["db", "cost", "mac", "rows=8", "--db", str(db.path)])
    with redirect_stdout(io.StringIO()), pytest.raises(SystemExit) as exit_:
        args.func(args)
    assert exit_.value.code == 1


def test_seed_cache_copies_reproducible_records(db, records, tmp_path):
    """The database's records become cache entries (what `celine explore` does first, so a
    fresh clone resumes the shipped data set): successes and the tools' own failures, not
    crashes, and never over an existing entry."""
    from celine.explore.measure import cache_path
    crash = dict(records[0], key="f" * 64, status="failed", error="OSError: disk full")
    db.add(crash)
    cache = tmp_path / "cache"
    written = db.seed_cache(cache, engine="mac")
    kept = [r for r in records if r["status"] == "ok" or r["error"].startswith("ERROR")]
    assert written == len(kept) and any(r["status"] == "failed" for r in kept)
    assert sorted(p.stem for p in cache.glob("*.json")) == keys(kept)
    assert not cache_path(cache, crash["key"]).exists()
    assert json.loads(cache_path(cache, kept[0]["key"]).read_text()) == kept[0]
    assert db.seed_cache(cache) == 0
    assert db.seed_cache(tmp_path / "other", board="ulx3s-25f") == len(
        [r for r in kept if r["board"] == "ulx3s-25f"])


def test_explore_bench_summary_and_heads_per_second(db, records):
    """celine/explore/bench.py's figures from a database: the counts, and DeiT-Tiny heads a
    second only for attention engines at d = 64 and 197 tokens (heads x Fmax / cycles)."""
    from celine.explore.bench import data_set_summary, deit_tiny_best, heads_per_second
    summary = data_set_summary(db)
    ok = [r for r in records if r["status"] == "ok"]
    assert summary["records"] == len(records)
    assert summary["failed"] == len(records) - len(ok)
    assert summary["points"] == len({(r["board"], json.dumps(r["params"], sort_keys=True))
                                     for r in ok})
    assert deit_tiny_best(db, "ulx3s-25f") is None            # MAC arrays only
    record = {"engine": "taylor", "params": {"head_dim": 64, "heads": 3},
              "workload": {"tokens": 197}, "cycles": 15000, "fmax_mhz": 50.0}
    assert heads_per_second(record) == 3 * 50e6 / 15000
    assert heads_per_second({**record, "params": {"head_dim": 32}}) is None
    assert heads_per_second({**record, "workload": {"tokens": 64}}) is None
    assert heads_per_second({**record, "engine": "mac"}) is None
