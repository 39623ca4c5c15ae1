"""The exploration space (celine.explore.space): command-line words, the TOML file, the
constraints and the objective, the grid and its validation filter; pinned errors."""

import pytest

from celine import registry
from celine.engines.mac.spec import MacArrayParams
from celine.explore.space import (FIGURES, Constraint, Objective, Space, figure, load_toml,
                                  parse_constraint, parse_seeds, parse_space, parse_words)

MAC_PARAMS = "rows, cols, brick_width, precisions, impl, max_reduction, acc_width, " \
             "rps_precisions, lfsr_seed"
FIGURE_LIST = ", ".join(FIGURES)


def test_words_values_ranges_and_tuples():
    values = parse_words("mac", ["rows=1,2,4", "cols=1..4", "max_reduction=16..64/16",
                                 "precisions=8,4+8", "impl=dsp", "acc_width=none,32"])
    assert values == {"rows": (1, 2, 4), "cols": (1, 2, 3, 4),
                      "max_reduction": (16, 32, 48, 64), "precisions": ((8,), (4, 8)),
                      "impl": ("dsp",), "acc_width": (None, 32)}
    # Repeated values count once; hex like the `celine verilog` words.
    assert parse_words("mac", ["rows=2,2,0x2"]) == {"rows": (2,)}
    assert parse_words("vitcod", ["autoencoder=true,false"]) == {"autoencoder": (True, False)}


@pytest.mark.parametrize("words, error, message", [
    (["rowz=1"], ValueError,
     f"space parameter must be one of {MAC_PARAMS} for the mac engine, not 'rowz'"),
    (["rows"], ValueError,
     "space word must be key=values (e.g. rows=1,2,4 or cols=1..8), not 'rows'"),
    (["=1"], ValueError, "space word must be key=values (e.g. rows=1,2,4 or cols=1..8), not '=1'"),
    (["rows="], ValueError, "space values of rows must be a non-empty comma-separated list, not ''"),
    (["rows=1,,2"], ValueError,
     "space values of rows must be a non-empty comma-separated list, not '1,,2'"),
    (["rows=4..1"], ValueError, "space range of rows must be lo..hi or lo..hi/step with "
                                "integers lo <= hi and step >= 1, not '4..1'"),
    (["rows=1..4/0"], ValueError, "space range of rows must be lo..hi or lo..hi/step with "
                                  "integers lo <= hi and step >= 1, not '1..4/0'"),
    (["rows=a..b"], ValueError, "space range of rows must be lo..hi or lo..hi/step with "
                                "integers lo <= hi and step >= 1, not 'a..b'"),
    (["rows=1.5..3"], ValueError, "space range of rows must be lo..hi or lo..hi/step with "
                                  "integers lo <= hi and step >= 1, not '1.5..3'"),
    (["precisions=4++8"], ValueError,
     "space value of precisions must be items joined by '+' (e.g. 4+8), not '4++8'"),
    (["rows=1", "rows=2"], ValueError,
     "space parameter rows must be given once, not 'rows=1' and 'rows=2'"),
    ([3], TypeError, "space word must be a string key=values, not 3"),
])
def test_bad_words(words, error, message):
    with pytest.raises(error) as info:
        parse_words("mac", words)
    assert str(info.value) == message


def test_unknown_engine():
    with pytest.raises(ValueError, match=r"^accelerator must be one of mac, .*, not 'gpu'$"):
        parse_space("gpu")
    with pytest.raises(TypeError, match=r"^engine must be an engine name or record, not 3$"):
        parse_space(3)


def test_default_space_is_the_engine_record_space():
    for engine in registry.ENGINES:
        space = parse_space(engine.name)
        assert space.values == {k: tuple(v) for k, v in engine.space.items()}
        assert space.objective == Objective("maximize", "throughput")
        assert space.constraints == ()


def test_grid_skips_invalid_combinations_with_reasons():
    space = parse_space("mac", ["rows=1,2", "brick_width=1,4", "precisions=2+4+8+16,8"])
    grid = space.grid()
    assert space.size == 8
    # brick_width 4 cannot build 2-bit precisions: 2 of the 8 combinations are skipped.
    assert len(grid.points) == 6 and len(grid.skipped) == 2
    assert grid.reasons() == {
        "precisions must be multiples of brick_width 4, not (2, 4, 8, 16)": 2}
    assert all(isinstance(p, MacArrayParams) for p in grid.points)
    assert grid.points[0] == MacArrayParams(rows=1, brick_width=1, precisions=(2, 4, 8, 16))
    # The skipped combinations keep their values.
    values, reason = grid.skipped[0]
    assert values == {"rows": 1, "brick_width": 4, "precisions": (2, 4, 8, 16)}


def test_grid_of_wrong_types_skips_everything():
    grid = parse_space("mac", ["rows=a,b"]).grid()
    assert grid.points == ()
    assert grid.reasons() == {"rows must be an integer, not 'a'": 1,
                              "rows must be an integer, not 'b'": 1}


@pytest.mark.parametrize("text, constraint", [
    ("lut4<=20000", Constraint("lut4", "<=", 20000)),
    ("fmax_mhz >= 100", Constraint("fmax_mhz", ">=", 100)),
    ("fmax_mhz>99.5", Constraint("fmax_mhz", ">", 99.5)),
    ("mult18x18d=0", Constraint("mult18x18d", "==", 0)),
    ("fits", Constraint("fits", "==", True)),
    ("meets_timing=false", Constraint("meets_timing", "==", False)),
])
def test_constraint_parsing(text, constraint):
    assert parse_constraint(text) == constraint


@pytest.mark.parametrize("text, error, message", [
    ("luts<=3", ValueError, f"constraint figure must be one of {FIGURE_LIST}, not 'luts'"),
    ("lut4 ~ 3", ValueError,
     "constraint must be FIGURE OP NUMBER (e.g. 'lut4<=20000', 'fmax_mhz>=100') or a flag "
     "('fits', 'meets_timing=false'), not 'lut4 ~ 3'"),
    ("lut4<=many", ValueError, "constraint limit of lut4 must be a number, not 'many'"),
    ("lut4<=inf", ValueError, "constraint limit of lut4 must be a finite number, not inf"),
    ("fits=maybe", ValueError, "constraint on fits must be fits=true or fits=false, "
                               "not 'fits=maybe'"),
    ("fits>=1", ValueError, "constraint on fits must be fits=true or fits=false, not 'fits>=1'"),
    (3, TypeError, "constraint must be a string such as 'lut4<=20000', not 3"),
])
def test_bad_constraints(text, error, message):
    with pytest.raises(error) as info:
        parse_constraint(text)
    assert str(info.value) == message


def test_constraint_violation_follows_optuna_convention():
    record = {"lut4": 15000, "fmax_mhz": 90.0, "fits": True, "throughput": 3e9}
    assert Constraint("lut4", "<=", 20000).violation(record) < 0
    assert Constraint("lut4", "<=", 20000).holds(record)
    assert Constraint("lut4", "<=", 10000).violation(record) == pytest.approx(0.5)
    assert Constraint("fmax_mhz", ">=", 100).violation(record) == pytest.approx(0.1)
    assert not Constraint("fmax_mhz", ">", 90.0).holds(record)
    assert Constraint("fmax_mhz", ">", 90.0).violation(record) > 0
    assert Constraint("fits", "==", True).violation(record) == 0
    assert Constraint("fits", "==", False).violation(record) == 1
    # An unmeasured figure (a failed build) never satisfies a constraint.
    assert Constraint("dp16kd", "<=", 10).violation(record) == 1.0
    assert figure(record, "throughput_per_lut4") == pytest.approx(2e5)


@pytest.mark.parametrize("args, message", [
    (("most", "throughput"), "objective direction must be 'maximize' or 'minimize', not 'most'"),
    (("maximize", "fits"), "objective figure must be one of throughput, throughput_per_lut4, "
                           "cycles, useful_macs, mac_units, lut4, ff, mult18x18d, dp16kd, "
                           "fmax_mhz, clock_mhz, sim_cycles, cycle_error, not 'fits'"),
])
def test_bad_objective(args, message):
    with pytest.raises(ValueError) as info:
        Objective(*args)
    assert str(info.value) == message


def test_best_respects_constraints_and_direction():
    space = Space(registry.get("mac"), {}, (parse_constraint("lut4<=1000"),),
                  Objective("maximize", "throughput"))
    records = [{"status": "ok", "lut4": 900, "throughput": 1.0, "key": "a"},
               {"status": "ok", "lut4": 1100, "throughput": 9.0, "key": "b"},
               {"status": "failed", "lut4": None, "throughput": None, "key": "c"},
               {"status": "ok", "lut4": 1000, "throughput": 2.0, "key": "d"}]
    assert space.best(records)["key"] == "d"
    space = Space(registry.get("mac"), {}, (), Objective("minimize", "lut4"))
    assert space.best(records)["key"] == "a"
    assert Space(registry.get("mac"), {}, (parse_constraint("lut4<=10"),)).best(records) is None


TOML = """
board = "ulx3s-25f"
seeds = [1, 2]
clock_mhz = 100

[space]
rows = [1, 2]
cols = "1..3"
impl = "dsp"
precisions = [[8], [4, 8], 16]

[constraints]
fits = true
fmax_mhz = ">= 100"
lut4 = ["<= 20000", "> 10"]

[objective]
minimize = "cycles"

[workload]
m = 32
"""


def test_toml_space(tmp_path):
    path = tmp_path / "space.toml"
    path.write_text(TOML)
    space = parse_space("mac", file=path)
    assert space.values == {"rows": (1, 2), "cols": (1, 2, 3), "impl": ("dsp",),
                            "precisions": ((8,), (4, 8), (16,))}
    assert space.constraints == (Constraint("fits", "==", True),
                                 Constraint("fmax_mhz", ">=", 100),
                                 Constraint("lut4", "<=", 20000), Constraint("lut4", ">", 10))
    assert space.objective == Objective("minimize", "cycles")
    assert (space.workload, space.board, space.seeds, space.clock_mhz) == \
        ({"m": 32}, "ulx3s-25f", (1, 2), 100.0)
    # Command-line words replace the file's entry; constraints add up; an objective given
    # here replaces the file's.
    space = parse_space("mac", ["rows=4"], file=path, constraints=["dp16kd<=0"],
                        objective=Objective("maximize", "throughput_per_lut4"))
    assert space.values["rows"] == (4,) and space.values["cols"] == (1, 2, 3)
    assert space.constraints[-1] == Constraint("dp16kd", "<=", 0)
    assert space.objective.figure == "throughput_per_lut4"


@pytest.mark.parametrize("text, message", [
    ("[space\nrows = 1", "space file must be valid TOML, not '{path}' (Expected ']' at the "
                         "end of a table declaration (at line 1, column 7))"),
    ("engine = 'mac'", "space file key must be one of board, seeds, clock_mhz, space, "
                       "constraints, objective, workload, not 'engine'"),
    ("space = 3", "space file's space must be a table [space], not 3"),
    ("[space]\nrowz = [1]", f"space parameter must be one of {MAC_PARAMS} for the mac "
                            f"engine, not 'rowz'"),
    ("[space]\nrows = []", "space values of rows must be a non-empty list, not []"),
    ("[space]\nrows = '3..1'", "space range of rows must be lo..hi or lo..hi/step with "
                               "integers lo <= hi and step >= 1, not '3..1'"),
    ("[space]\nrows = [[1]]", "space values of rows must be a list of numbers, strings or "
                              "booleans, not [[1]]"),
    ("[constraints]\nluts = '<= 3'", f"constraint figure must be one of {FIGURE_LIST}, "
                                     f"not 'luts'"),
    ("[constraints]\nlut4 = 3", "constraint on lut4 must be a bound such as '<= 100', not 3"),
    ("[constraints]\nfits = 'yes'", "constraint on fits must be true or false, not 'yes'"),
    ("[objective]\nmaximize = 'speed'", "objective figure must be one of throughput, "
     "throughput_per_lut4, cycles, useful_macs, mac_units, lut4, ff, mult18x18d, dp16kd, "
     "fmax_mhz, clock_mhz, sim_cycles, cycle_error, not 'speed'"),
    ("[objective]\nmaximize = 'throughput'\nminimize = 'cycles'",
     "objective must be one of maximize = FIGURE or minimize = FIGURE, "
     "not {'maximize': 'throughput', 'minimize': 'cycles'}"),
    ("seeds = [1, 1]", "seeds must be distinct non-negative integers such as 1,2, not [1, 1]"),
    ("clock_mhz = 0", "space file's clock_mhz must be a positive number, not 0"),
    ("board = 3", "space file's board must be a board name, not 3"),
])
def test_bad_toml(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError) as info:
        parse_space("mac", file=path)
    assert str(info.value) == message.replace("{path}", str(path))


def test_missing_space_file(tmp_path):
    with pytest.raises(ValueError) as info:
        load_toml(tmp_path / "none.toml")
    assert str(info.value) == (f"space file must be a readable file, not "
                               f"'{tmp_path / 'none.toml'}' (No such file or directory)")


@pytest.mark.parametrize("value, seeds", [("1,2", (1, 2)), (3, (3,)), ([0, 5], (0, 5))])
def test_seeds(value, seeds):
    assert parse_seeds(value) == seeds


@pytest.mark.parametrize("value, message", [
    ("1,a", "seeds must be non-negative integers such as 1,2, not '1,a'"),
    ("-1", "seeds must be distinct non-negative integers such as 1,2, not '-1'"),
    ([], "seeds must be distinct non-negative integers such as 1,2, not []"),
    ([True], "seeds must be distinct non-negative integers such as 1,2, not [True]"),
])
def test_bad_seeds(value, message):
    with pytest.raises(ValueError) as info:
        parse_seeds(value)
    assert str(info.value) == message
