"""A fast estimator of hardware cost, trained on the cost data set (celine/explore/db.py).

Synthesis and place-and-route take minutes per configuration; a NAS or a search that
asks for thousands of configurations needs an answer in milliseconds. The estimator
predicts TARGETS (LUT4, FF, MULT18X18D, DP16KD, Fmax) of a configuration of one engine
on one board from measured records, and reports how wrong it is on held-out points
(`evaluate`), so that its answers can be trusted only as far as they deserve.

Model: per engine and per figure, one of three regressors on the same features, chosen
by 5-fold cross-validation on the training records (the lowest mean absolute percentage
error wins; deterministic folds):
- "loglinear": ridge regression of log(1 + figure) on the features (standardized): a
  power law in the parameters (LUT4 ~ rows^a * cols^b ...). It needs few points and
  extrapolates the way hardware grows.
- "logquadratic": the same with the features' squares and pairwise products (a
  "translog" form): the curvature of a fixed overhead plus a part that grows with the
  array (LUT4 = a + b * rows * cols is not a power law), and interactions such as the
  bricks per PE times the PEs. Cross-validated ridge keeps it from overfitting.
- "boosting": gradient-boosted trees (scikit-learn) on the same target: thresholds
  (a block RAM more when a buffer passes 512 words) that smooth forms miss.
A figure that is constant in the training records is predicted as that constant.
Outside the training range (a feature beyond the values seen in training, or a string
value never seen: `extrapolation()` names them), the power law answers whichever model
won: a quadratic explodes and trees stay flat out there, a power law grows the way
hardware does.

Features of a configuration (`features`): each parameter as sign(v)·log2(1 + |v|) for
numbers and booleans, an indicator per value for strings and None, length/min/max and an
indicator per element for lists; the same for the parameter class's derived values
(`Params.derived()`: lanes, widths, ideal MACs per cycle); an indicator of the board's
device. Integer figures (counts) are rounded.

Error: MAPE = mean over points of |predicted - measured| / max(|measured|, 1) (the floor
of 1 keeps a measured count of 0 defined: predicting 1 DSP for 0 is then an error of
100%), returned as a fraction (0.05 is 5%).
"""

import json
import math
import random
import re
import time
import warnings
from pathlib import Path

import numpy as np

__all__ = ["TARGETS", "INTEGER_TARGETS", "features", "mape", "Estimator"]

TARGETS = ("lut4", "ff", "mult18x18d", "dp16kd", "fmax_mhz")
INTEGER_TARGETS = ("lut4", "ff", "mult18x18d", "dp16kd")
FORMAT = 1                  # the saved file's format
MIN_POINTS_FOR_CV = 6       # fewer training points: the power law, no model selection


def _add(out, name, value):
    """Encode one (parameter or derived) value into feature columns of `out`."""
    if isinstance(value, bool):
        out[name] = float(value)
    elif isinstance(value, (int, float)) and math.isfinite(value):
        if value > 0:
            out[name] = math.log2(value)
        else:       # 0 or negative: an indicator, and the magnitude's log
            out[f"{name}<=0"] = 1.0
            out[name] = -math.log2(1 - value)
    elif value is None or isinstance(value, str):
        out[f"{name}={value}"] = 1.0
    elif isinstance(value, (list, tuple)):
        _add(out, f"{name}.len", len(value))
        numbers = [v for v in value if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if numbers:
            _add(out, f"{name}.min", min(numbers))
            _add(out, f"{name}.max", max(numbers))
        for v in value:
            out[f"{name}∋{v}"] = 1.0
    elif isinstance(value, dict):
        for key, v in value.items():
            _add(out, f"{name}.{key}", v)


def _engine_record(engine):
    from .. import registry
    return registry.BY_NAME.get(engine)


def _device(board):
    from ..boards.platforms import BOARDS
    return BOARDS[board].device if board in BOARDS else board


def resolve_params(engine, params):
    """(params dict, Params object or None): a Params instance or a dict of constructor
    arguments, completed with the defaults when the engine is registered."""
    record = _engine_record(engine)
    if record is None:
        if not isinstance(params, dict):
            raise TypeError(f"params must be a dict, not {params!r}")
        return dict(params), None
    if isinstance(params, dict):
        params = record.params.from_dict(params)
    elif not isinstance(params, record.params):
        raise TypeError(f"params must be a dict or a {record.params.__name__}, "
                        f"not {params!r}")
    return json.loads(json.dumps(params.to_dict())), params


def features(engine, params, board):
    """{feature name: float} of one configuration (module docstring)."""
    values, obj = resolve_params(engine, params)
    out = {}
    for name, value in values.items():
        _add(out, name, value)
    if obj is not None:
        try:
            derived = obj.derived()
        except Exception:       # a derived value the class cannot compute: no feature
            derived = {}
        for name, value in derived.items():
            _add(out, f"derived.{name}", value)
    out[f"device={_device(board)}"] = 1.0
    return out


def mape(predicted, measured):
    """Mean of |p - m| / max(|m|, 1) over the pairs (a fraction); None for no pairs."""
    pairs = list(zip(predicted, measured))
    if not pairs:
        return None
    return float(np.mean([abs(p - m) / max(abs(m), 1.0) for p, m in pairs]))


def _finish(figure, value):
    value = max(0.0, float(value))
    return int(round(value)) if figure in INTEGER_TARGETS else round(value, 2)


class _Constant:
    """A figure that did not vary in training."""

    def __init__(self, value):
        self.value = float(value)

    def fit(self, x, y):
        return self

    def predict(self, x):
        return np.full(len(x), self.value)


class _OnLog:
    """A regressor of log(1 + figure): positive predictions, relative errors weighed alike
    at every size. Predictions are kept below e^30 (beyond any FPGA's figures)."""

    def __init__(self, make):
        self.model = make()

    def fit(self, x, y):
        self.model.fit(x, np.log1p(y))
        return self

    def predict(self, x):
        return np.expm1(np.clip(self.model.predict(x), 0.0, 30.0))


class _OverheadPowerLaw:
    """figure = c + exp(w . x) - 1: a fixed part (the shell around an array, its control) plus
    a power law of the parameters (the array). c is the fraction of the smallest figure,
    among OVERHEAD_FRACTIONS, whose power-law fit has the lowest training MAPE."""

    OVERHEAD_FRACTIONS = (0.0, 0.2, 0.4, 0.6, 0.8, 0.9, 0.95)

    def fit(self, x, y):
        best = None
        for fraction in self.OVERHEAD_FRACTIONS:
            c = fraction * y.min()
            model = _ridge().fit(x, np.log1p(y - c))
            error = mape(c + np.expm1(np.clip(model.predict(x), 0.0, 30.0)), y)
            if best is None or error < best[0]:
                best = (error, c, model)
        _, self.c, self.model = best
        return self

    def predict(self, x):
        return self.c + np.expm1(np.clip(self.model.predict(x), 0.0, 30.0))


def _ridge():
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    return make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-4, 2, 13)))


def _candidates():
    """{kind: maker of a fresh model with fit(x, figure) / predict(x) -> figure}."""
    from sklearn.ensemble import GradientBoostingRegressor
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import PolynomialFeatures, StandardScaler
    return {
        "powerlaw": lambda: _OnLog(_ridge),
        "overhead": _OverheadPowerLaw,
        "logquadratic": lambda: _OnLog(lambda: make_pipeline(
            StandardScaler(), PolynomialFeatures(2, include_bias=False), StandardScaler(),
            RidgeCV(alphas=np.logspace(-4, 3, 15)))),
        "boosting": lambda: _OnLog(lambda: GradientBoostingRegressor(
            n_estimators=300, learning_rate=0.05, max_depth=3, random_state=0)),
    }


EXTRAPOLATING = ("powerlaw", "overhead", "constant")   # kinds trusted outside the range


def _fit_one(x, y):
    """(kind, model, cv_mape, power law or None) for one figure of one engine: the
    candidate with the lowest 5-fold cross-validated MAPE (constant figures: a
    constant), and a power law for extrapolation when a model that extrapolates badly
    won."""
    if np.all(y == y[0]):
        return "constant", _Constant(y[0]), 0.0, None
    makers = _candidates()
    if len(y) < MIN_POINTS_FOR_CV:
        return "powerlaw", makers["powerlaw"]().fit(x, y), None, None
    from sklearn.model_selection import KFold
    folds = list(KFold(n_splits=min(5, len(y)), shuffle=True, random_state=0).split(x))
    scores = {}
    for kind, make in makers.items():
        predicted = np.empty(len(y))
        for train, test in folds:
            predicted[test] = make().fit(x[train], y[train]).predict(x[test])
        scores[kind] = mape(np.maximum(predicted, 0), y)
    kind = min(scores, key=lambda k: (scores[k], k))
    fallback = None if kind in EXTRAPOLATING else makers["powerlaw"]().fit(x, y)
    return kind, makers[kind]().fit(x, y), scores[kind], fallback


class Estimator:
    """Predicts TARGETS of unmeasured configurations from measured records.

    `fit(records)` trains one model per engine and figure; `predict(engine, params,
    board)` answers in about a millisecond; `evaluate(records, test_fraction, seed)`
    measures the error on held-out configurations; `save(path)` / `Estimator.load(path)`
    keep a trained estimator (joblib).
    """

    def __init__(self):
        self.models = {}        # engine -> {figure: (kind, model, cv_mape, power law)}
        self.columns = {}       # engine -> [feature names]
        self.ranges = {}        # engine -> (lowest, highest) of each feature in training
        self.points = {}        # engine -> training records used

    @property
    def engines(self):
        """The engines the estimator was trained on, sorted."""
        return sorted(self.models)

    def fit(self, records):
        """Train on `records` (records of the data set, any engines and boards; a figure is
        learned from the records that have it, failed builds included). Returns self."""
        if isinstance(records, dict) or not hasattr(records, "__iter__"):
            raise TypeError(f"records must be a list of records, not {records!r}")
        records = list(records)
        from .record import check_record
        for record in records:
            check_record(record)
        by_engine = {}
        for record in records:
            by_engine.setdefault(record["engine"], []).append(record)
        if not by_engine:
            raise ValueError(f"records must hold at least one record, not {records!r}")
        self.models, self.columns, self.ranges, self.points = {}, {}, {}, {}
        for engine, group in sorted(by_engine.items()):
            group.sort(key=lambda r: r["key"])
            rows = [features(engine, r["params"], r["board"]) for r in group]
            columns = sorted(set().union(*rows))
            x = np.array([[row.get(c, 0.0) for c in columns] for row in rows])
            self.columns[engine] = columns
            self.ranges[engine] = (x.min(axis=0), x.max(axis=0))
            self.points[engine] = len(group)
            self.models[engine] = {}
            for figure in TARGETS:
                index = [i for i, r in enumerate(group) if r[figure] is not None]
                if not index:
                    continue
                y = np.array([float(group[i][figure]) for i in index])
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    self.models[engine][figure] = _fit_one(x[index], y)
        return self

    def predict(self, engine, params, board, workload=None):
        """{figure: predicted value} of TARGETS the engine was trained on, for `params`
        (the engine's Params or a dict of constructor arguments, defaults filling the
        rest) on `board`; also `throughput` (useful MACs per second at the predicted
        Fmax for the engine's default workload, updated by `workload`) when the cycle
        model accepts `params` and the workload."""
        if not isinstance(engine, str) or engine not in self.models:
            known = ", ".join(self.engines) or "none (not trained)"
            raise ValueError(f"engine must be one of {known}, not {engine!r}")
        from ..boards.platforms import BOARDS
        if not isinstance(board, str) or board not in BOARDS:
            raise ValueError(f"board must be one of {', '.join(BOARDS)}, not {board!r}")
        if workload is not None and not isinstance(workload, dict):
            raise TypeError(f"workload must be a dict, not {workload!r}")
        row = features(engine, params, board)
        x = np.array([[row.get(c, 0.0) for c in self.columns[engine]]])
        outside = bool(self._outside(engine, row, x[0]))
        out = {}
        for figure, (kind, model, _, fallback) in self.models[engine].items():
            if outside and fallback is not None:
                model = fallback
            out[figure] = _finish(figure, model.predict(x)[0])
        record = _engine_record(engine)
        if record is not None and out.get("fmax_mhz"):
            _, obj = resolve_params(engine, params)
            try:
                estimate = record.cycles.load()(obj, **{**record.workload,
                                                        **(workload or {})})
            except (ValueError, TypeError, ZeroDivisionError):
                estimate = None
            if estimate is not None and estimate.cycles:
                out["throughput"] = (estimate.useful_macs / estimate.cycles
                                     * out["fmax_mhz"] * 1e6)
        return out

    def _outside(self, engine, row, x):
        columns = self.columns[engine]
        lowest, highest = self.ranges[engine]
        tolerance = 1e-9
        names = [c for c, v, lo, hi in zip(columns, x, lowest, highest)
                 if v < lo - tolerance or v > hi + tolerance]
        known = set(columns)
        names += sorted(name for name, value in row.items() if name not in known and value)
        return names

    def extrapolation(self, engine, params, board):
        """What puts a configuration outside the training range: the parameters (then
        the derived values, "derived.NAME", then "board") whose features lie beyond the
        values seen in training or were never seen; empty when the estimate
        interpolates. Outside it, predictions come from the power law and deserve less
        trust."""
        if not isinstance(engine, str) or engine not in self.models:
            known = ", ".join(self.engines) or "none (not trained)"
            raise ValueError(f"engine must be one of {known}, not {engine!r}")
        row = features(engine, params, board)
        x = np.array([row.get(c, 0.0) for c in self.columns[engine]])
        names = []
        for feature in self._outside(engine, row, x):
            if feature.startswith("device="):
                name = "board"
            else:
                prefix = "derived." if feature.startswith("derived.") else ""
                name = prefix + re.split(r"[=∋.<]", feature[len(prefix):])[0]
            if name not in names:
                names.append(name)
        return sorted(names, key=lambda n: (n == "board", n.startswith("derived."), n))

    def describe(self):
        """{engine: {"points": n, figure: {"model": kind, "cv_mape": x}}}: what was chosen."""
        return {engine: {"points": self.points[engine],
                         **{figure: {"model": kind, "cv_mape": cv}
                            for figure, (kind, _, cv, _) in models.items()}}
                for engine, models in self.models.items()}

    # -- error on held-out points ------------------------------------------------------

    @classmethod
    def evaluate(cls, records, test_fraction=0.2, seed=0):
        """Train on part of `records` and measure on the rest: {"mape": {figure: MAPE},
        "test_points", "train_points", "engines": {engine: {"mape": ..., "test_points"}},
        "seconds_per_prediction"}. Held out are whole configurations (every seed of an
        (engine, params, board) goes to the same side), `test_fraction` of each engine's
        configurations (rounded, at least 1, leaving at least 2 to train on), drawn by a
        random.Random(seed) shuffle of the sorted configurations: deterministic."""
        if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)) \
                or not 0 < test_fraction < 1:
            raise ValueError(f"test_fraction must be between 0 and 1 (exclusive), "
                             f"not {test_fraction!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an integer, not {seed!r}")
        if isinstance(records, dict) or not hasattr(records, "__iter__"):
            raise TypeError(f"records must be a list of records, not {records!r}")
        records = list(records)
        rng = random.Random(seed)
        groups = {}
        for record in records:
            config = json.dumps(record["params"], sort_keys=True)
            groups.setdefault(record["engine"], {}).setdefault(
                (record["board"], config), []).append(record)
        train, test = [], []
        for engine in sorted(groups):
            configs = sorted(groups[engine])
            rng.shuffle(configs)
            n_test = max(1, round(len(configs) * test_fraction))
            if len(configs) - n_test < 2:
                n_test = len(configs) - 2
            for i, config in enumerate(configs):
                (test if i < n_test else train).extend(groups[engine][config])
        if not test:
            raise ValueError(f"records must hold at least 3 configurations of an engine "
                             f"to hold some out, not {len(records)} records")
        estimator = cls().fit(train)
        start = time.perf_counter()
        predictions = [estimator.predict(r["engine"], r["params"], r["board"]) for r in test]
        seconds = (time.perf_counter() - start) / len(test)

        def score(pairs):
            return {figure: mape([p[figure] for p, r in pairs
                                  if r[figure] is not None and figure in p],
                                 [r[figure] for p, r in pairs
                                  if r[figure] is not None and figure in p])
                    for figure in TARGETS}

        pairs = list(zip(predictions, test))
        return {"mape": score(pairs), "test_points": len(test), "train_points": len(train),
                "engines": {engine: {"mape": score([(p, r) for p, r in pairs
                                                    if r["engine"] == engine]),
                                     "test_points": sum(r["engine"] == engine for r in test)}
                            for engine in sorted({r["engine"] for r in test})},
                "seconds_per_prediction": seconds}

    # -- files -------------------------------------------------------------------------

    def save(self, path):
        """Write the trained estimator to `path` (joblib); returns the path."""
        import joblib
        path = Path(path)
        if not self.models:
            raise ValueError("estimator must be trained (fit) before it is saved, not empty")
        path.parent.mkdir(parents=True, exist_ok=True)
        joblib.dump({"format": FORMAT, "models": self.models, "columns": self.columns,
                     "ranges": self.ranges, "points": self.points}, path)
        return path

    @classmethod
    def load(cls, path):
        """An estimator saved by `save`; ValueError for a missing or foreign file."""
        import joblib
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"estimator must be a saved estimator file, "
                             f"not {str(path)!r} (no such file)")
        try:
            data = joblib.load(path)
        except Exception as error:
            raise ValueError(f"estimator must be a saved estimator file, "
                             f"not {str(path)!r} ({error})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"estimator must be a saved estimator file of format {FORMAT}, "
                             f"not {str(path)!r}")
        out = cls()
        out.models, out.columns = data["models"], data["columns"]
        out.ranges, out.points = data["ranges"], data["points"]
        return out
