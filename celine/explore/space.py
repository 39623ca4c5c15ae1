"""The space of an exploration: generator-parameter values, constraints and an objective.

A space comes from the command line, one word per parameter:

    rows=1,2,4          values, comma-separated
    cols=1..8           every integer from 1 to 8
    cols=2..16/2        ... in steps of 2
    precisions=8,4+8    a tuple-valued parameter: a value's items joined by '+'

or from a small TOML file (words on the command line replace the file's entry of the
same parameter):

    board = "ulx3s-25f"            # optional: the board (default: --board)
    seeds = [1, 2]                 # optional: nextpnr seeds (default: --seeds)
    clock_mhz = 100                # optional: nextpnr's clock target (default: --clock-mhz)

    [space]
    rows = [1, 2, 4]
    cols = "1..8"                  # a range, as on the command line
    impl = "dsp"                   # one value
    precisions = [[8], [4, 8]]     # a tuple-valued parameter: one list per value

    [constraints]
    fits = true
    fmax_mhz = ">= 100"
    lut4 = ["<= 20000", "> 100"]   # several bounds on one figure

    [objective]
    maximize = "throughput"        # or minimize = "cycles"

    [workload]                     # the engine's cycle-model workload (celine params)
    m = 64

Without any parameter the space is the engine record's `space`. The grid is the product of
the values, filtered by the parameter class's own checks: an invalid combination is
skipped and counted with the reason. Every bad space raises ValueError or TypeError with
one line, "<name> must be <rule>, not <value!r>".
"""

import itertools
import math
import operator
import re
import tomllib
from collections import Counter
from dataclasses import dataclass, field, fields
from pathlib import Path

from .. import registry
from ..engines import Accelerator

__all__ = ["Space", "Constraint", "Objective", "Grid", "FIGURES", "BOOL_FIGURES",
           "NUMERIC_FIGURES", "DEFAULT_OBJECTIVE", "parse_space", "parse_words",
           "parse_constraint", "parse_seeds", "load_toml", "figure", "resolve_engine"]

# Record figures a constraint or an objective may name (celine.explore.record.FIELDS),
# plus the derived throughput per LUT4.
NUMERIC_FIGURES = ("throughput", "throughput_per_lut4", "cycles", "useful_macs", "mac_units",
                   "lut4", "ff", "mult18x18d", "dp16kd", "fmax_mhz", "clock_mhz",
                   "sim_cycles", "cycle_error")
BOOL_FIGURES = ("fits", "meets_timing")
FIGURES = NUMERIC_FIGURES + BOOL_FIGURES

_OPERATORS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt,
              "==": operator.eq}
_TOML_TOP = ("board", "seeds", "clock_mhz", "space", "constraints", "objective", "workload")
_RANGE = re.compile(r"(-?\d+)\.\.(-?\d+)(?:/(-?\d+))?")


def resolve_engine(engine):
    """The engine record of `engine` (a registry name or a record)."""
    if isinstance(engine, Accelerator):
        return engine
    if not isinstance(engine, str):
        raise TypeError(f"engine must be an engine name or record, not {engine!r}")
    return registry.get(engine)


def figure(record, name):
    """The value of figure `name` (FIGURES) in `record`; None if not measured."""
    if name == "throughput_per_lut4":
        throughput, lut4 = record.get("throughput"), record.get("lut4")
        return throughput / lut4 if throughput is not None and lut4 else None
    return record.get(name)


def _check_figure(name, value, *, allowed=FIGURES):
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, not {value!r}")
    return value


# -- constraints and the objective ------------------------------------------------------

@dataclass(frozen=True)
class Constraint:
    """`figure op limit`, e.g. lut4 <= 20000, or `figure == True` for fits/meets_timing."""
    figure: str
    op: str
    limit: object

    def __post_init__(self):
        _check_figure("constraint figure", self.figure)
        if self.figure in BOOL_FIGURES:
            if self.op != "==" or not isinstance(self.limit, bool):
                raise ValueError(f"constraint on {self.figure} must be true or false, "
                                 f"not {self.op} {self.limit!r}")
        else:
            if self.op not in _OPERATORS:
                raise ValueError(f"constraint operator must be one of "
                                 f"{', '.join(_OPERATORS)}, not {self.op!r}")
            if isinstance(self.limit, bool) or not isinstance(self.limit, (int, float)) \
                    or not math.isfinite(self.limit):
                raise ValueError(f"constraint limit of {self.figure} must be a finite "
                                 f"number, not {self.limit!r}")

    def holds(self, record):
        """True if `record` satisfies the constraint (an unmeasured figure does not)."""
        return self.violation(record) <= 0

    def violation(self, record):
        """How far `record` is from satisfying the constraint: <= 0 when it does (Optuna's
        convention), relative to the limit; 1.0 when the figure was not measured."""
        value = figure(record, self.figure)
        if value is None:
            return 1.0
        if self.figure in BOOL_FIGURES:
            return 0.0 if bool(value) == self.limit else 1.0
        scale = max(abs(self.limit), 1.0)
        if self.op in ("<=", "<"):
            margin = (value - self.limit) / scale
        elif self.op in (">=", ">"):
            margin = (self.limit - value) / scale
        else:
            margin = abs(value - self.limit) / scale
        if not _OPERATORS[self.op](value, self.limit):
            return max(margin, 1e-9)
        return min(margin, 0.0) if self.op != "==" else 0.0

    def __str__(self):
        if self.figure in BOOL_FIGURES:
            return f"{self.figure} = {str(self.limit).lower()}"
        return f"{self.figure} {self.op} {self.limit:g}"


@dataclass(frozen=True)
class Objective:
    """maximize or minimize one figure (NUMERIC_FIGURES)."""
    direction: str = "maximize"
    figure: str = "throughput"

    def __post_init__(self):
        if self.direction not in ("maximize", "minimize"):
            raise ValueError(f"objective direction must be 'maximize' or 'minimize', "
                             f"not {self.direction!r}")
        _check_figure("objective figure", self.figure, allowed=NUMERIC_FIGURES)

    def value(self, record):
        return figure(record, self.figure)

    def better(self, a, b):
        """True if value `a` is better than `b` (None is worst)."""
        if a is None:
            return False
        if b is None:
            return True
        return a > b if self.direction == "maximize" else a < b

    def __str__(self):
        return f"{self.direction} {self.figure}"


DEFAULT_OBJECTIVE = Objective()


def _number(text):
    try:
        return int(text, 0)
    except ValueError:
        return float(text)


def parse_constraint(text):
    """A Constraint from "lut4<=20000", "fmax_mhz >= 100", "fits", "fits=false"."""
    if not isinstance(text, str):
        raise TypeError(f"constraint must be a string such as 'lut4<=20000', not {text!r}")
    stripped = text.strip()
    if stripped in BOOL_FIGURES:
        return Constraint(stripped, "==", True)
    match = re.fullmatch(r"\s*(\w+)\s*(<=|>=|==|<|>|=)\s*(\S+)\s*", text)
    if not match:
        raise ValueError(f"constraint must be FIGURE OP NUMBER (e.g. 'lut4<=20000', "
                         f"'fmax_mhz>=100') or a flag ('fits', 'meets_timing=false'), "
                         f"not {text!r}")
    name, op, limit = match.groups()
    _check_figure("constraint figure", name)
    if name in BOOL_FIGURES:
        if op not in ("=", "==") or limit.lower() not in ("true", "false"):
            raise ValueError(f"constraint on {name} must be {name}=true or {name}=false, "
                             f"not {text!r}")
        return Constraint(name, "==", limit.lower() == "true")
    if op == "=":
        op = "=="
    try:
        value = _number(limit)
    except ValueError:
        raise ValueError(f"constraint limit of {name} must be a number, not {limit!r}") from None
    return Constraint(name, op, value)


def _toml_constraints(table):
    out = []
    for name, value in table.items():
        _check_figure("constraint figure", name)
        if name in BOOL_FIGURES:
            if not isinstance(value, bool):
                raise ValueError(f"constraint on {name} must be true or false, not {value!r}")
            out.append(Constraint(name, "==", value))
            continue
        bounds = value if isinstance(value, list) else [value]
        if not bounds:
            raise ValueError(f"constraint on {name} must be a bound such as '<= 100', "
                             f"not {value!r}")
        for bound in bounds:
            if not isinstance(bound, str):
                raise ValueError(f"constraint on {name} must be a bound such as '<= 100', "
                                 f"not {bound!r}")
            out.append(parse_constraint(f"{name} {bound}"))
    return tuple(out)


def _toml_objective(table):
    if not isinstance(table, dict) or len(table) != 1 \
            or next(iter(table)) not in ("maximize", "minimize"):
        raise ValueError(f"objective must be one of maximize = FIGURE or minimize = FIGURE, "
                         f"not {table!r}")
    (direction, name), = table.items()
    return Objective(direction, _check_figure("objective figure", name,
                                              allowed=NUMERIC_FIGURES))


def parse_seeds(value):
    """Seeds from "1,2", [1, 2] or 1: a tuple of distinct non-negative integers."""
    items = value
    if isinstance(value, str):
        try:
            items = [int(part) for part in value.split(",")]
        except ValueError:
            raise ValueError(f"seeds must be non-negative integers such as 1,2, "
                             f"not {value!r}") from None
    elif isinstance(value, int) and not isinstance(value, bool):
        items = [value]
    if not isinstance(items, (list, tuple)) or not items or any(
            isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in items) \
            or len(set(items)) != len(items):
        raise ValueError(f"seeds must be distinct non-negative integers such as 1,2, "
                         f"not {value!r}")
    return tuple(items)


# -- parameter values --------------------------------------------------------------------

def _param_fields(engine):
    return {f.name: f for f in fields(engine.params) if f.init}


def _is_tuple_field(f):
    return isinstance(f.default, tuple) or "tuple" in str(f.type)


def _is_bool_field(f):
    return f.type is bool or isinstance(f.default, bool)


def _scalar(text, f):
    """One value of parameter field `f` from its text."""
    lowered = text.strip().lower()
    if lowered == "none":
        return None
    if _is_bool_field(f) and lowered in ("true", "false"):
        return lowered == "true"
    try:
        return int(text, 0)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text.strip()


def _word_values(name, text, f):
    """The values of one `key=...` word."""
    if ".." in text:
        match = _RANGE.fullmatch(text.strip())
        lo, hi, step = (None, None, None) if not match else match.groups()
        step = 1 if step is None else int(step)
        if not match or int(lo) > int(hi) or step < 1:
            raise ValueError(f"space range of {name} must be lo..hi or lo..hi/step with "
                             f"integers lo <= hi and step >= 1, not {text!r}")
        return tuple(range(int(lo), int(hi) + 1, step))
    parts = text.split(",")
    if not text.strip() or any(not part.strip() for part in parts):
        raise ValueError(f"space values of {name} must be a non-empty comma-separated "
                         f"list, not {text!r}")
    if _is_tuple_field(f):
        values = []
        for part in parts:
            items = part.split("+")
            if any(not item.strip() for item in items):
                raise ValueError(f"space value of {name} must be items joined by '+' "
                                 f"(e.g. 4+8), not {part!r}")
            values.append(None if part.strip().lower() == "none"
                          else tuple(_scalar(item, f) for item in items))
        return tuple(values)
    return tuple(_scalar(part, f) for part in parts)


def _toml_values(name, value, f):
    """The values of one [space] entry: a list, a range string or one value."""
    if isinstance(value, str) and ".." in value:
        return _word_values(name, value, f)
    items = value if isinstance(value, list) else [value]
    if not items:
        raise ValueError(f"space values of {name} must be a non-empty list, not {value!r}")
    if _is_tuple_field(f):
        out = []
        for item in items:
            if isinstance(item, list):
                out.append(tuple(item))
            elif isinstance(item, str):
                out.extend(_word_values(name, item, f))
            else:
                out.append((item,))
        return tuple(out)
    if any(isinstance(item, (list, dict)) for item in items):
        raise ValueError(f"space values of {name} must be a list of numbers, strings or "
                         f"booleans, not {value!r}")
    return tuple(items)


def _check_name(engine, name, known):
    if name not in known:
        raise ValueError(f"space parameter must be one of {', '.join(known)} for the "
                         f"{engine.name} engine, not {name!r}")


def parse_words(engine, words):
    """{parameter: values} from ['rows=1,2', 'cols=1..4', ...]."""
    engine = resolve_engine(engine)
    known = _param_fields(engine)
    out, given = {}, {}
    for word in words:
        if not isinstance(word, str):
            raise TypeError(f"space word must be a string key=values, not {word!r}")
        name, sep, text = word.partition("=")
        if not sep or not name:
            raise ValueError(f"space word must be key=values (e.g. rows=1,2,4 or "
                             f"cols=1..8), not {word!r}")
        _check_name(engine, name, known)
        if name in given:
            raise ValueError(f"space parameter {name} must be given once, not "
                             f"{given[name]!r} and {word!r}")
        given[name] = word
        out[name] = _dedupe(_word_values(name, text, known[name]))
    return out


def _dedupe(values):
    return tuple(dict.fromkeys(values))


def load_toml(path):
    """The TOML space file `path` as a dict; ValueError with tomllib's reason if bad."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise ValueError(f"space file must be a readable file, not {str(path)!r} "
                         f"({error.strerror})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"space file must be valid TOML, not {str(path)!r} ({error})") from None
    unknown = sorted(set(data) - set(_TOML_TOP))
    if unknown:
        raise ValueError(f"space file key must be one of {', '.join(_TOML_TOP)}, "
                         f"not {unknown[0]!r}")
    for section in ("space", "constraints", "objective", "workload"):
        if section in data and not isinstance(data[section], dict):
            raise ValueError(f"space file's {section} must be a table [{section}], "
                             f"not {data[section]!r}")
    return data


# -- the space -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Grid:
    """The valid points of a space (parameter objects, in grid order) and the skipped
    combinations: [(values, reason)]."""
    points: tuple
    skipped: tuple

    def reasons(self):
        """{reason: count} of the skipped combinations, most frequent first."""
        return dict(Counter(reason for _, reason in self.skipped).most_common())


@dataclass(frozen=True)
class Space:
    """An engine's parameter values (every combination is a candidate point), the
    constraints a result must meet, the objective, the workload of the cycle model and
    the optional board, seeds and clock target from a space file."""
    engine: Accelerator
    values: dict
    constraints: tuple = ()
    objective: Objective = DEFAULT_OBJECTIVE
    workload: dict = field(default_factory=dict)
    board: str | None = None
    seeds: tuple | None = None
    clock_mhz: float | None = None

    @property
    def size(self):
        """The number of combinations (before the parameter checks)."""
        return math.prod(len(v) for v in self.values.values())

    def combinations(self):
        """Every combination as {parameter: value}, in grid order."""
        names = list(self.values)
        for combo in itertools.product(*(self.values[n] for n in names)):
            yield dict(zip(names, combo))

    def make(self, values):
        """The parameter object of `values` (ValueError/TypeError if invalid)."""
        return self.engine.params(**values)

    def grid(self):
        """The Grid: valid points (duplicates dropped) and skipped combinations."""
        points, skipped, seen = [], [], set()
        for values in self.combinations():
            try:
                params = self.make(values)
            except (ValueError, TypeError) as error:
                skipped.append((values, str(error)))
                continue
            if params not in seen:
                seen.add(params)
                points.append(params)
        return Grid(tuple(points), tuple(skipped))

    def feasible(self, record):
        """True if `record` was measured and meets every constraint."""
        return record.get("status") == "ok" and all(c.holds(record) for c in self.constraints)

    def best(self, records):
        """The feasible record with the best objective value, or None."""
        best = None
        for record in records:
            if self.feasible(record) and self.objective.value(record) is not None and (
                    best is None or self.objective.better(self.objective.value(record),
                                                          self.objective.value(best))):
                best = record
        return best


def parse_space(engine, words=(), *, file=None, constraints=(), objective=None):
    """The Space of `engine` from command-line `words` and an optional TOML `file`.

    `constraints` (strings such as 'lut4<=20000') are added to the file's; `objective` (an
    Objective) replaces the file's. Without any parameter the space is the engine's own.
    """
    engine = resolve_engine(engine)
    if isinstance(words, str):
        raise TypeError(f"words must be a list of key=values strings, not {words!r}")
    data = load_toml(file) if file is not None else {}
    known = _param_fields(engine)
    values = {}
    for name, value in data.get("space", {}).items():
        _check_name(engine, name, known)
        values[name] = _dedupe(_toml_values(name, value, known[name]))
    values.update(parse_words(engine, words))
    if not values:
        values = {name: tuple(v) for name, v in engine.space.items()}
    found = list(_toml_constraints(data.get("constraints", {})))
    found += [parse_constraint(text) for text in constraints]
    if objective is None:
        objective = _toml_objective(data["objective"]) if "objective" in data \
            else DEFAULT_OBJECTIVE
    elif not isinstance(objective, Objective):
        raise TypeError(f"objective must be an Objective, not {objective!r}")
    workload = dict(data.get("workload", {}))
    board = data.get("board")
    if board is not None and not isinstance(board, str):
        raise ValueError(f"space file's board must be a board name, not {board!r}")
    seeds = parse_seeds(data["seeds"]) if "seeds" in data else None
    clock = data.get("clock_mhz")
    if clock is not None and (isinstance(clock, bool) or not isinstance(clock, (int, float))
                              or not clock > 0):
        raise ValueError(f"space file's clock_mhz must be a positive number, not {clock!r}")
    return Space(engine, values, tuple(found), objective, workload, board, seeds,
                 None if clock is None else float(clock))
