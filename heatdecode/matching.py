"""Many predicted points per map matched one-to-one to ground truth: precision, recall, F1.

Each map has ``n`` predicted points and ``m`` truth points (any of them may be
0), 2D or 3D. :func:`match_points` pairs them one-to-one: a pair may match only
when its Euclidean distance is **at most** the cutoff (inclusive, compared as
squared distances like spotiflow's ``points_matching``), and among the pairings
with the largest number of matches it takes one with the smallest summed
distance. Matched pairs are true positives; unmatched predictions are false
positives (``fp = n - tp``) and unmatched truth points false negatives
(``fn = m - tp``). Predictions with a NaN coordinate are not points and are
ignored (a map with no peak gives an empty array).

Ratios follow the limits of spotiflow's ``eps`` rule: precision = tp / n, 1 when
nothing is predicted; recall = tp / m, 1 when there is no truth; F1 =
2 tp / (n + m), 1 when there is neither (nothing to find, nothing found).

Over many maps, :func:`match_maps` reports both scopes: **pooled** sums TP, FP
and FN over all maps, then takes the ratios (each point weighs the same;
distances are over all matched pairs), and **per-map** averages each map's
ratios (each map weighs the same; a map with neither truth nor prediction counts 1).

:func:`f1_integral` is deepBlink's area under F1 against cutoff, normalised to
0-1: the trapezoid rule over ``np.linspace(0, max_cutoff, steps)`` (50 cutoffs
from 0 to 3 by default, 0 included) divided by ``max_cutoff``.

Pure: numpy (and scipy for the assignment); no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

MATCH_CUTOFFS: tuple[float, ...] = (0.5, 1.0, 2.0, 3.0)
F1_INTEGRAL_MAX = 3.0
F1_INTEGRAL_STEPS = 50
SCOPES: tuple[str, str] = ("pooled", "per-map")
SCIPY_HINT = "matching needs scipy: pip install 'heatdecode[match]'"

MATCH_COLUMNS: tuple[str, ...] = (
    "decoder",
    "cutoff",
    "scope",
    "tp",
    "fp",
    "fn",
    "precision",
    "recall",
    "f1",
    "mean_distance",
    "median_distance",
    "f1_integral",
)

MATCH_FIELD_DESCRIPTIONS: dict[str, str] = {
    "decoder": "decoder label, as in coordinates.csv",
    "cutoff": "a prediction matches a truth point only within this distance (inclusive), "
    "in the coordinates' units; one-to-one, most matches first, then least summed distance",
    "scope": "pooled: counts summed over maps, then the ratios; "
    "per-map: the mean over maps of each map's ratios",
    "tp": "matched predictions, summed over maps (pooled rows; null in per-map rows)",
    "fp": "unmatched predictions (NaN coordinates are not predictions), summed over maps "
    "(pooled rows; null in per-map rows)",
    "fn": "unmatched truth points, summed over maps (pooled rows; null in per-map rows)",
    "precision": "tp / (tp + fp); 1 when nothing was predicted",
    "recall": "tp / (tp + fn); 1 when there is no truth",
    "f1": "2 tp / (2 tp + fp + fn); 1 when there is neither truth nor prediction",
    "mean_distance": "pooled: mean distance over all matched pairs; per-map: the mean over "
    "maps with a match of each map's mean (null without matches)",
    "median_distance": "pooled: median distance over all matched pairs; per-map: the mean "
    "over maps with a match of each map's median (null without matches)",
    "f1_integral": "area under F1 against cutoff (trapezoid over 50 cutoffs 0..3, divided "
    "by 3: deepBlink's), the same in every row of a decoder and scope",
}


def _scipy() -> tuple[Any, Any]:
    """scipy's ``linear_sum_assignment`` and ``cdist``, imported only when matching."""
    try:
        from scipy.optimize import linear_sum_assignment
        from scipy.spatial.distance import cdist
    except ImportError as exc:
        raise ImportError(SCIPY_HINT) from exc
    return linear_sum_assignment, cdist


def _ratios(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """(precision, recall, F1) with the 0/0 cases set to 1 (spotiflow's eps limits)."""
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0
    return precision, recall, f1


@dataclass(frozen=True, eq=False)
class Match:
    """One map's matching at one cutoff.

    ``pairs[i] = (p, t)`` says prediction ``p`` (a row of the array given, NaN rows
    included in the numbering) matches truth point ``t``, at ``distances[i]``.
    """

    pairs: np.ndarray  # (tp, 2) int: predicted row, truth row; sorted by predicted row
    distances: np.ndarray  # (tp,) float
    tp: int
    fp: int
    fn: int
    cutoff: float

    @property
    def precision(self) -> float:
        return _ratios(self.tp, self.fp, self.fn)[0]

    @property
    def recall(self) -> float:
        return _ratios(self.tp, self.fp, self.fn)[1]

    @property
    def f1(self) -> float:
        return _ratios(self.tp, self.fp, self.fn)[2]

    @property
    def mean_distance(self) -> float | None:
        return float(np.mean(self.distances)) if self.tp else None

    @property
    def median_distance(self) -> float | None:
        return float(np.median(self.distances)) if self.tp else None


def _check_cutoff(cutoff: float, name: str = "cutoff") -> float:
    value = float(cutoff)
    if math.isnan(value) or value < 0:
        raise ValueError(f"{name} must be a distance >= 0, got {cutoff!r}")
    return value


def _points(values: Any, name: str, *, drop_nan: bool) -> tuple[np.ndarray, np.ndarray, int | None]:
    """(points (k, d), their row numbers in ``values``, d or None for a shapeless empty)."""
    a = np.asarray(values, dtype=float)
    if a.size == 0 and (a.ndim == 1 or (a.ndim == 2 and a.shape[1] == 0)):
        return np.zeros((0, 0)), np.zeros(0, dtype=np.intp), None
    if a.ndim != 2 or a.shape[1] == 0:
        raise ValueError(f"{name} must be an (n, d) array of points, got shape {a.shape}")
    nan_rows = np.isnan(a).any(axis=1)
    if nan_rows.any() and not drop_nan:
        raise ValueError(f"{name} has NaN coordinates (rows {np.flatnonzero(nan_rows)[:5]})")
    rows = np.flatnonzero(~nan_rows)
    a = a[rows]
    if np.isinf(a).any():
        raise ValueError(f"{name} has infinite coordinates")
    return a, rows, a.shape[1]


def _map_points(predicted: Any, truth: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(predicted points, their row numbers, truth points), dimensions checked."""
    pred, rows, pred_dim = _points(predicted, "predicted", drop_nan=True)
    true, _, true_dim = _points(truth, "truth", drop_nan=False)
    if pred_dim is not None and true_dim is not None and pred_dim != true_dim:
        raise ValueError(f"predicted points are {pred_dim}-D but truth points are {true_dim}-D")
    return pred, rows, true


def _squared_distances(pred: np.ndarray, true: np.ndarray) -> np.ndarray:
    if len(pred) == 0 or len(true) == 0:
        return np.zeros((len(pred), len(true)))
    return _scipy()[1](pred, true, metric="sqeuclidean")


def _assign(sq: np.ndarray, cutoff: float) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of a most-matches, least-summed-distance pairing within ``cutoff``.

    Excluded pairs cost ``big``, more than ``k`` allowed distances together, so
    one more match always beats any saving in distance.
    """
    allowed = sq <= cutoff * cutoff
    rows, cols = np.flatnonzero(allowed.any(axis=1)), np.flatnonzero(allowed.any(axis=0))
    if len(rows) == 0:
        return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp)
    allowed = allowed[np.ix_(rows, cols)]
    distance = np.sqrt(sq[np.ix_(rows, cols)])
    big = float(distance[allowed].max()) * (min(allowed.shape) + 1) + 1.0
    r, c = _scipy()[0](np.where(allowed, distance, big))
    keep = allowed[r, c]
    return rows[r[keep]], cols[c[keep]]


def _match(sq: np.ndarray, cutoff: float, pred_rows: np.ndarray) -> Match:
    r, c = _assign(sq, cutoff)
    n, m = sq.shape
    pairs = np.stack([pred_rows[r], c], axis=1).astype(np.intp).reshape(-1, 2)
    return Match(pairs, np.sqrt(sq[r, c]), len(r), n - len(r), m - len(r), cutoff)


def match_points(predicted: Any, truth: Any, cutoff: float) -> Match:
    """Match ``predicted`` (n, d) to ``truth`` (m, d) one-to-one within ``cutoff``.

    The most pairs at distance <= ``cutoff``; among those, the least summed
    distance. Prediction rows with a NaN coordinate are ignored.

    Example:
        >>> m = match_points([[0, 0], [5, 5], [9, 9]], [[0, 1], [5, 5.5]], cutoff=1.0)
        >>> m.pairs.tolist(), m.distances.tolist()
        ([[0, 0], [1, 1]], [1.0, 0.5])
        >>> m.tp, m.fp, m.fn, round(m.precision, 3), m.recall, m.f1
        (2, 1, 0, 0.667, 1.0, 0.8)
        >>> match_points([[0, 0.2], [0, -0.9]], [[0, 0], [0, 1.1]], 1.0).pairs.tolist()
        [[0, 1], [1, 0]]

    (The nearest pair, 0.2 apart, is given up so that both points match.)
    """
    _scipy()
    cutoff = _check_cutoff(cutoff)
    pred, rows, true = _map_points(predicted, truth)
    return _match(_squared_distances(pred, true), cutoff, rows)


def f1_cutoffs(max_cutoff: float = F1_INTEGRAL_MAX, steps: int = F1_INTEGRAL_STEPS) -> np.ndarray:
    """The cutoffs :func:`f1_integral` scores at: ``np.linspace(0, max_cutoff, steps)``.

    Example:
        >>> f1_cutoffs(3.0, 4).tolist()
        [0.0, 1.0, 2.0, 3.0]
    """
    top = _check_cutoff(max_cutoff, "max_cutoff")
    if not 0 < top < math.inf or int(steps) != steps or steps < 2:
        raise ValueError(f"need 0 < max_cutoff < inf and steps >= 2, got {max_cutoff}, {steps}")
    return np.linspace(0.0, top, int(steps))


def _integrate(f1: np.ndarray, cutoffs: np.ndarray) -> float:
    """Trapezoid area under ``f1`` over ``cutoffs``, divided by the last cutoff."""
    return float(np.sum((f1[1:] + f1[:-1]) * np.diff(cutoffs)) / 2 / cutoffs[-1])


def _grid_tp(sq: np.ndarray, cutoffs: np.ndarray) -> np.ndarray:
    return np.array([len(_assign(sq, c)[0]) for c in cutoffs])


def _grid_f1(tp: np.ndarray, n: int, m: int) -> np.ndarray:
    return np.array([_ratios(int(t), n - int(t), m - int(t))[2] for t in tp])


def f1_integral(
    predicted: Any,
    truth: Any,
    max_cutoff: float = F1_INTEGRAL_MAX,
    steps: int = F1_INTEGRAL_STEPS,
) -> float:
    """deepBlink's F1 integral: the area under F1 against cutoff, normalised to 0-1.

    F1 is scored at ``f1_cutoffs(max_cutoff, steps)`` (0 to 3 in 50 even steps, 0
    included) and integrated by the trapezoid rule, divided by ``max_cutoff``. A
    prediction exactly on the truth scores 1; one at distance ``r`` alone scores
    about ``1 - r / max_cutoff``.
    """
    _scipy()
    cutoffs = f1_cutoffs(max_cutoff, steps)
    pred, _, true = _map_points(predicted, truth)
    sq = _squared_distances(pred, true)
    return _integrate(_grid_f1(_grid_tp(sq, cutoffs), *sq.shape), cutoffs)


@dataclass(frozen=True)
class CutoffScores:
    """One cutoff's scores in one scope, ``pooled`` or ``per-map`` (MATCH_FIELD_DESCRIPTIONS)."""

    cutoff: float
    scope: str
    tp: int | None
    fp: int | None
    fn: int | None
    precision: float | None
    recall: float | None
    f1: float | None
    mean_distance: float | None
    median_distance: float | None


@dataclass(frozen=True)
class MatchingMetrics:
    """A decoder's matching over many maps: both scopes at each cutoff, and the F1 integrals.

    The ratios are ``None`` only when there were no maps at all.
    """

    maps: int
    cutoffs: tuple[float, ...]
    pooled: tuple[CutoffScores, ...]  # one per cutoff, in order
    per_map: tuple[CutoffScores, ...]
    f1_integral_pooled: float | None  # F1 from the pooled counts at each integral cutoff
    f1_integral_per_map: float | None  # the mean of the maps' F1 integrals
    max_cutoff: float = F1_INTEGRAL_MAX
    steps: int = F1_INTEGRAL_STEPS


def _mean(values: Iterable[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def _pooled(cutoff: float, matches: Sequence[Match]) -> CutoffScores:
    tp, fp, fn = (sum(getattr(m, k) for m in matches) for k in ("tp", "fp", "fn"))
    ratios = _ratios(tp, fp, fn) if matches else (None, None, None)
    d = np.concatenate([m.distances for m in matches]) if matches else np.zeros(0)
    mean, median = (float(np.mean(d)), float(np.median(d))) if len(d) else (None, None)
    return CutoffScores(cutoff, "pooled", tp, fp, fn, *ratios, mean, median)


def _per_map(cutoff: float, matches: Sequence[Match]) -> CutoffScores:
    values = [_mean(getattr(m, k) for m in matches) for k in ("precision", "recall", "f1")]
    mean = _mean(m.mean_distance for m in matches)
    median = _mean(m.median_distance for m in matches)
    return CutoffScores(cutoff, "per-map", None, None, None, *values, mean, median)


def match_maps(
    maps: Iterable[tuple[Hashable, Any, Any]],
    cutoffs: Sequence[float] = MATCH_CUTOFFS,
    *,
    max_cutoff: float = F1_INTEGRAL_MAX,
    steps: int = F1_INTEGRAL_STEPS,
) -> MatchingMetrics:
    """Score ``(key, predicted (n, d), truth (m, d))`` maps at each cutoff, pooled and per map.

    Each map is matched on its own (:func:`match_points`); the key only names
    the map in errors (a bad array, or predicted and truth dimensions that
    disagree, raise ValueError naming it). A map with no truth and no prediction
    adds nothing to the pooled counts and 1 to each per-map mean.
    """
    _scipy()
    cuts = tuple(_check_cutoff(c) for c in cutoffs)
    grid = f1_cutoffs(max_cutoff, steps)
    matches: list[list[Match]] = []  # per map, one per cutoff
    grid_tp, grid_n, grid_m = np.zeros(len(grid), dtype=np.int64), 0, 0
    integrals: list[float] = []
    for key, predicted, truth in maps:
        try:
            pred, rows, true = _map_points(predicted, truth)
        except ValueError as exc:
            raise ValueError(f"map {key!r}: {exc}") from exc
        sq = _squared_distances(pred, true)
        matches.append([_match(sq, c, rows) for c in cuts])
        tp = _grid_tp(sq, grid)
        integrals.append(_integrate(_grid_f1(tp, *sq.shape), grid))
        grid_tp, grid_n, grid_m = grid_tp + tp, grid_n + len(pred), grid_m + len(true)
    pooled_integral = _integrate(_grid_f1(grid_tp, grid_n, grid_m), grid) if matches else None
    return MatchingMetrics(
        maps=len(matches),
        cutoffs=cuts,
        pooled=tuple(_pooled(c, [ms[i] for ms in matches]) for i, c in enumerate(cuts)),
        per_map=tuple(_per_map(c, [ms[i] for ms in matches]) for i, c in enumerate(cuts)),
        f1_integral_pooled=pooled_integral,
        f1_integral_per_map=_mean(integrals),
        max_cutoff=float(grid[-1]),
        steps=len(grid),
    )


def _row(decoder: str, scores: CutoffScores, integral: float | None) -> dict[str, Any]:
    out: dict[str, Any] = {"decoder": decoder}
    out.update({k: getattr(scores, k) for k in MATCH_COLUMNS[1:-1]})
    out["f1_integral"] = integral
    return out


def metrics_rows(metrics_by_decoder: Mapping[str, MatchingMetrics]) -> list[dict[str, Any]]:
    """Rows with the MATCH_COLUMNS: per decoder, per cutoff, a pooled then a per-map row."""
    rows = []
    for decoder, metrics in metrics_by_decoder.items():
        for pooled, per_map in zip(metrics.pooled, metrics.per_map, strict=True):
            rows.append(_row(decoder, pooled, metrics.f1_integral_pooled))
            rows.append(_row(decoder, per_map, metrics.f1_integral_per_map))
    return rows
