"""heatdecode.matching against a brute-force matcher, hand-computed scores and spotiflow's rules."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("scipy")

from heatdecode.matching import (  # noqa: E402  (after the importorskip)
    MATCH_COLUMNS,
    MATCH_FIELD_DESCRIPTIONS,
    f1_cutoffs,
    f1_integral,
    match_maps,
    match_points,
    metrics_rows,
)

# ---------------------------------------------------------------------------
# independent references
# ---------------------------------------------------------------------------


def brute_force(pred, true, cutoff):
    """(most matches within cutoff, least summed distance among those), by enumeration."""
    dist = [[math.dist(p, t) for t in true] for p in pred]
    best = [0, 0.0]

    def walk(i, used, count, total):
        if count > best[0] or (count == best[0] and total < best[1]):
            best[:] = [count, total]
        if i == len(pred):
            return
        walk(i + 1, used, count, total)  # prediction i unmatched
        for j in range(len(true)):
            if j not in used and dist[i][j] <= cutoff:
                walk(i + 1, used | {j}, count + 1, total + dist[i][j])

    walk(0, frozenset(), 0, 0.0)
    return best[0], best[1]


def spotiflow_style(pred, true, cutoff, eps=1e-8):
    """spotiflow's rule restated: squared distances, a huge cost beyond the cutoff, the
    Hungarian assignment, pairs within the cutoff kept; ratios with tp + eps."""
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial.distance import cdist

    if len(pred) and len(true):
        cost = cdist(true, pred, "sqeuclidean")
        cost[cost > cutoff**2] = 1e10 * (1 + cost.max())
        i, j = linear_sum_assignment(cost)
        tp = int(np.count_nonzero(cost[i, j] <= cutoff**2))
    else:
        tp = 0
    fp, fn = len(pred) - tp, len(true) - tp
    t = tp + eps
    return tp, fp, fn, t / (t + fp), t / (t + fn), 2 * t / (2 * t + fp + fn)


def random_case(rng, dim, grid):
    n, m = rng.integers(0, 7, size=2)
    if grid:  # integer / half-integer points: ties and distances exactly at the cutoff
        pred = rng.integers(0, 4, size=(n, dim)) / rng.choice([1, 2])
        true = rng.integers(0, 4, size=(m, dim)) / rng.choice([1, 2])
        cutoff = float(rng.choice([0.0, 0.5, 1.0, math.sqrt(2), 1.5, 2.0, 3.0]))
    else:  # crowded: many points compete for the same partners
        side = rng.choice([1.5, 4.0])
        pred, true = rng.uniform(0, side, size=(n, dim)), rng.uniform(0, side, size=(m, dim))
        cutoff = float(rng.uniform(0.2, 1.2) * side)
    return pred.astype(float), true.astype(float), cutoff


def check_against_brute_force(pred, true, cutoff):
    got = match_points(pred, true, cutoff)
    count, total = brute_force(pred.tolist(), true.tolist(), cutoff)
    assert got.tp == count
    assert (got.fp, got.fn) == (len(pred) - count, len(true) - count)
    assert float(np.sum(got.distances)) == pytest.approx(total, abs=1e-9)
    assert got.pairs.shape == (count, 2) and got.distances.shape == (count,)
    assert len(set(got.pairs[:, 0])) == count and len(set(got.pairs[:, 1])) == count
    for (p, t), d in zip(got.pairs, got.distances, strict=True):
        assert d == pytest.approx(math.dist(pred[p], true[t]))
        assert d <= cutoff + 1e-12
    return got


# ---------------------------------------------------------------------------
# the assignment
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("grid", [True, False])
def test_matches_brute_force_on_random_small_cases(dim, grid):
    rng = np.random.default_rng(10 * dim + grid)
    for _ in range(150):
        check_against_brute_force(*random_case(rng, dim, grid))


def test_points_exactly_at_the_cutoff_match():
    got = match_points([[0.0, 0.0], [10.0, 0.0]], [[3.0, 4.0], [10.0, 1.0]], cutoff=5.0)
    assert got.tp == 2 and got.distances.tolist() == [5.0, 1.0]
    assert match_points([[0.0, 0.0]], [[3.0, 4.0]], cutoff=4.999999).tp == 0
    assert match_points([[1.0, 2.0]], [[1.0, 2.0]], cutoff=0.0).tp == 1  # 0 is inclusive too


def test_more_matches_beat_a_smaller_summed_distance():
    # the nearest pair (0.2 apart) is given up so that both points match
    got = match_points([[0, 0.2], [0, -0.9]], [[0, 0], [0, 1.1]], cutoff=1.0)
    assert got.tp == 2 and got.pairs.tolist() == [[0, 1], [1, 0]]
    assert got.distances == pytest.approx([0.9, 0.9])
    # pricing an excluded pair at the largest distance (1.49, deepBlink's) would take the
    # single pair 0.1 apart: 0.1 + 1.49 < 1 + 1
    pred, true = [[0.1, 0.0], [-1.0, 0.0]], [[0.0, 0.0], [0.1, 1.0]]
    got = match_points(pred, true, cutoff=1.0)
    assert got.pairs.tolist() == [[0, 1], [1, 0]] and got.distances.tolist() == [1.0, 1.0]


def test_same_counts_as_spotiflow_on_random_cases():
    rng = np.random.default_rng(7)
    for i in range(300):
        pred, true, cutoff = random_case(rng, 2 + i % 2, grid=i % 3 == 0)
        got = match_points(pred, true, cutoff)
        tp, fp, fn, precision, recall, f1 = spotiflow_style(pred, true, cutoff)
        assert (got.tp, got.fp, got.fn) == (tp, fp, fn)
        ratios = (got.precision, got.recall, got.f1)
        assert ratios == pytest.approx((precision, recall, f1), abs=1e-7)  # eps aside


def test_summed_distance_not_squared_distance_is_minimised():
    # identity pairs are 1 and 1 apart (sum 2, squares 2); swapped, 0 and 1.9 (sum 1.9,
    # squares 3.61): both match twice; spotiflow keeps the identity, this module the swap
    p2 = (-0.805, math.sqrt(1 - 0.805**2))
    pred, true = np.array([[0.0, 0.0], p2]), np.array([[1.0, 0.0], [0.0, 0.0]])
    assert math.dist(p2, (1, 0)) == pytest.approx(1.9)
    got = match_points(pred, true, cutoff=3.0)
    assert got.pairs.tolist() == [[0, 1], [1, 0]]
    assert got.mean_distance == pytest.approx(0.95)
    assert spotiflow_style(pred, true, 3.0)[:3] == (got.tp, got.fp, got.fn)


# ---------------------------------------------------------------------------
# one map's scores
# ---------------------------------------------------------------------------


def test_hand_computed_precision_recall_f1():
    pred = [[0, 0], [5, 5], [9, 9], [20, 20]]
    true = [[0, 0.5], [5, 6], [30, 30]]
    got = match_points(pred, true, cutoff=1.0)
    assert (got.tp, got.fp, got.fn) == (2, 2, 1)
    assert got.precision == 0.5 and got.recall == pytest.approx(2 / 3)
    assert got.f1 == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3)) == pytest.approx(4 / 7)
    assert got.mean_distance == 0.75 and got.median_distance == 0.75
    assert got.cutoff == 1.0


def test_empty_predictions_and_empty_truth():
    true = np.array([[0.0, 0.0], [1.0, 1.0]])
    for empty in (np.zeros((0, 2)), np.array([]), []):
        none = match_points(empty, true, 1.0)
        assert (none.tp, none.fp, none.fn) == (0, 0, 2)
        assert (none.precision, none.recall, none.f1) == (1.0, 0.0, 0.0)
        assert none.pairs.shape == (0, 2) and none.mean_distance is None
        assert none.median_distance is None
        extra = match_points(true, empty, 1.0)
        assert (extra.tp, extra.fp, extra.fn) == (0, 2, 0)
        assert (extra.precision, extra.recall, extra.f1) == (0.0, 1.0, 0.0)
    both = match_points(np.zeros((0, 3)), [], 1.0)
    assert (both.tp, both.fp, both.fn, both.precision, both.recall, both.f1) == (0, 0, 0, 1, 1, 1)


def test_nan_predictions_are_ignored():
    pred = [[np.nan, np.nan], [0.0, 0.5], [np.nan, 1.0], [7.0, 7.0]]
    got = match_points(pred, [[0.0, 0.0]], cutoff=1.0)
    assert (got.tp, got.fp, got.fn) == (1, 1, 0)
    assert got.pairs.tolist() == [[1, 0]]  # rows of the array given
    all_nan = match_points([[np.nan, np.nan]], [[0.0, 0.0]], cutoff=1.0)
    assert (all_nan.tp, all_nan.fp, all_nan.fn) == (0, 0, 1)


def test_three_dimensional_points():
    got = match_points([[0, 0, 0], [1, 2, 2]], [[1, 0, 0], [0, 0, 0], [9, 9, 9]], 3.0)
    assert got.pairs.tolist() == [[0, 1], [1, 0]]
    assert got.distances.tolist() == [0.0, math.sqrt(8)]
    assert (got.tp, got.fp, got.fn) == (2, 0, 1)


def test_bad_inputs():
    with pytest.raises(ValueError, match="2-D but truth points are 3-D"):
        match_points([[0, 0]], [[0, 0, 0]], 1.0)
    with pytest.raises(ValueError, match="cutoff"):
        match_points([[0, 0]], [[0, 0]], -1.0)
    with pytest.raises(ValueError, match="NaN"):
        match_points([[0, 0]], [[0, np.nan]], 1.0)
    with pytest.raises(ValueError, match="shape"):
        match_points([0.0, 1.0], [[0, 0]], 1.0)
    with pytest.raises(ValueError, match="infinite"):
        match_points([[0, np.inf]], [[0, 0]], 1.0)
    with pytest.raises(ValueError, match="steps"):
        f1_cutoffs(3.0, 1)


def test_scipy_missing_is_a_clear_import_error(monkeypatch):
    code = "import sys, heatdecode.matching; assert 'scipy' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
    monkeypatch.setitem(sys.modules, "scipy.optimize", None)
    with pytest.raises(ImportError, match=r"pip install 'heatdecode\[match\]'"):
        match_points([[0, 0]], [[0, 0]], 1.0)


# ---------------------------------------------------------------------------
# the F1 integral
# ---------------------------------------------------------------------------


def test_f1_cutoffs_are_deepblinks():
    assert f1_cutoffs().tolist() == np.linspace(0, 3.0, 50).tolist()


def test_f1_integral_by_hand():
    # one pair 1.5 apart: F1 is 0 at cutoffs 0 .. 72/49 and 1 from 75/49 to 3 (25 cutoffs)
    assert f1_integral([[0.0, 0.0]], [[1.5, 0.0]]) == pytest.approx((25 - 0.5) / 49)
    assert f1_integral([[0.0, 0.0]], [[1.5, 0.0]]) == pytest.approx(0.5)
    # cutoffs 0, 1, 2, 3: F1 = 0, 2/3, 2/3, 2/3 -> (1/3 + 2/3 + 2/3) / 3
    pred, true = [[0, 0.5]], [[0, 0], [10, 10]]
    assert f1_integral(pred, true, steps=4) == pytest.approx(5 / 9)
    assert f1_integral([[1.0, 1.0]], [[1.0, 1.0]]) == 1.0
    assert f1_integral([], [[1.0, 1.0]]) == 0.0 and f1_integral([], []) == 1.0


def test_f1_integral_is_the_trapezoid_of_brute_force_f1():
    rng = np.random.default_rng(3)
    cutoffs = np.linspace(0, 3, 50)
    for _ in range(10):
        pred, true, _ = random_case(rng, 2, grid=False)
        f1 = []
        for c in cutoffs:
            tp = brute_force(pred.tolist(), true.tolist(), c)[0]
            f1.append(2 * tp / (len(pred) + len(true)) if len(pred) + len(true) else 1.0)
        expected = sum((a + b) / 2 * (3 / 49) for a, b in zip(f1[:-1], f1[1:], strict=True)) / 3
        assert f1_integral(pred, true) == pytest.approx(expected)


# ---------------------------------------------------------------------------
# many maps
# ---------------------------------------------------------------------------

MAP_A = ("a", [[0, 0.1]], [[0, 0], [10, 0], [20, 0]])  # tp 1, fp 0, fn 2 at 1.0
MAP_B = ("b", [[0, 0.6], [5, 5.2], [9, 9]], [[0, 0], [5, 5]])  # tp 2, fp 1, fn 0 at 1.0


def test_pooled_and_per_map_by_hand():
    got = match_maps([MAP_A, MAP_B], cutoffs=(0.5, 1.0))
    assert got.maps == 2 and got.cutoffs == (0.5, 1.0)
    half, one = got.pooled
    assert (one.scope, one.tp, one.fp, one.fn) == ("pooled", 3, 1, 2)
    assert (one.precision, one.recall, one.f1) == pytest.approx((3 / 4, 3 / 5, 2 / 3))
    assert one.mean_distance == pytest.approx(0.3) and one.median_distance == pytest.approx(0.2)
    # at 0.5 map b's 0.6 pair is out: a tp 1 fp 0 fn 2, b tp 1 fp 2 fn 1
    assert (half.tp, half.fp, half.fn) == (2, 2, 3)
    assert half.f1 == pytest.approx(4 / 9)
    per = got.per_map[1]
    assert (per.scope, per.tp, per.fp, per.fn) == ("per-map", None, None, None)
    # a: 1, 1/3, 1/2; b: 2/3, 1, 4/5
    assert (per.precision, per.recall, per.f1) == pytest.approx((5 / 6, 2 / 3, 0.65))
    assert per.mean_distance == pytest.approx(0.25) and per.median_distance == pytest.approx(0.25)
    assert got.per_map[0].f1 == pytest.approx((0.5 + 0.4) / 2)


def test_f1_integral_pooled_and_per_map_by_hand():
    maps = [("a", [[0, 0.5]], [[0, 0]]), ("b", [[0, 1.5], [50, 50]], [[0, 0]])]
    got = match_maps(maps, cutoffs=(1.0,), max_cutoff=3.0, steps=4)
    # per map: a's F1 0, 1, 1, 1 -> 5/6; b's 0, 0, 2/3, 2/3 -> 1/3
    assert got.f1_integral_per_map == pytest.approx((5 / 6 + 1 / 3) / 2)
    # pooled F1: 0, 2/5, 4/5, 4/5 -> (1/5 + 3/5 + 4/5) / 3
    assert got.f1_integral_pooled == pytest.approx(8 / 15)
    assert (got.max_cutoff, got.steps) == (3.0, 4)
    default = match_maps(maps)
    assert default.f1_integral_per_map == pytest.approx(
        np.mean([f1_integral(p, t) for _, p, t in maps])
    )


def test_empty_maps_and_nan_maps():
    maps = [("a", [[0, 0.1]], [[0, 0]]), ("empty", [], []), ("nopeak", [[np.nan, np.nan]], [])]
    got = match_maps(maps, cutoffs=(1.0,))
    pooled, per = got.pooled[0], got.per_map[0]
    assert (pooled.tp, pooled.fp, pooled.fn, pooled.f1) == (1, 0, 0, 1.0)
    assert (per.precision, per.recall, per.f1) == (1.0, 1.0, 1.0)  # empty maps count 1
    assert per.mean_distance == pytest.approx(0.1)  # maps without matches are left out
    missed = match_maps([("a", [[0, 0.1]], [[0, 0]]), ("miss", [], [[5, 5]])], cutoffs=(1.0,))
    assert missed.per_map[0].f1 == 0.5 and missed.pooled[0].f1 == pytest.approx(2 / 3)
    assert missed.per_map[0].precision == 1.0 and missed.per_map[0].recall == 0.5


def test_no_maps():
    got = match_maps([], cutoffs=(1.0,))
    assert got.maps == 0 and got.f1_integral_pooled is None and got.f1_integral_per_map is None
    assert got.pooled[0].tp == 0 and got.pooled[0].f1 is None and got.per_map[0].f1 is None


def test_three_dimensional_maps_and_dimension_errors_name_the_key():
    got = match_maps([("vol", [[0, 0, 0]], [[0, 0, 0.5]])], cutoffs=(1.0,))
    assert got.pooled[0].tp == 1
    with pytest.raises(ValueError, match=r"map 'bad\.npy'.*2-D but truth points are 3-D"):
        match_maps([("ok", [[0, 0]], [[0, 0]]), ("bad.npy", [[0, 0]], [[0, 0, 0]])])
    with pytest.raises(ValueError, match=r"map \('f', 0, 1\).*NaN"):
        match_maps([(("f", 0, 1), [[0, 0]], [[np.nan, 0]])])


def test_metrics_rows():
    metrics = {
        "argmax": match_maps([MAP_A, MAP_B], cutoffs=(0.5, 1.0)),
        "soft": match_maps([MAP_A], cutoffs=(0.5, 1.0)),
    }
    rows = metrics_rows(metrics)
    assert len(rows) == 2 * 2 * 2 and all(tuple(r) == MATCH_COLUMNS for r in rows)
    keys = [(r["decoder"], r["cutoff"], r["scope"]) for r in rows]
    assert keys[:4] == [
        ("argmax", 0.5, "pooled"),
        ("argmax", 0.5, "per-map"),
        ("argmax", 1.0, "pooled"),
        ("argmax", 1.0, "per-map"),
    ]
    pooled, per = rows[2], rows[3]
    assert (pooled["tp"], pooled["fp"], pooled["fn"]) == (3, 1, 2)
    assert per["tp"] is None and per["f1"] == pytest.approx(0.65)
    assert pooled["f1_integral"] == metrics["argmax"].f1_integral_pooled
    assert per["f1_integral"] == metrics["argmax"].f1_integral_per_map
    assert set(MATCH_FIELD_DESCRIPTIONS) == set(MATCH_COLUMNS)
    assert metrics_rows({}) == []
