"""Decoded coordinates scored against ground truth (``heatdecode run --truth``).

A truth CSV names maps the way ``coordinates.csv`` does (``file,sample,channel``)
and gives their true ``x,y[,z]``. :func:`evaluate` matches every decoded row to
its truth row and summarises, per decoder, the Euclidean error, the bias per
axis and the PCK (fraction of maps within a distance). Errors are in the units
of the coordinates given: pixels for the default frame, so the truth must be in
the same frame as the rows (``heatdecode sample`` writes the pixel frame).

Nothing is dropped silently: decoded maps without a truth row are listed in
``missing_truth``, truth rows without a decoded map in ``missing_maps``, and
maps whose coordinates are empty (status ``nonfinite``) are counted as
``undecoded`` and as failures in the PCK.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

import numpy as np

from heatdecode.atomic import CSV_ERRORS, JSON_ERRORS, atomic_write
from heatdecode.readers import (  # noqa: F401  (read_truth and read_points are re-exported)
    MAX_TRUTH_BYTES,
    MAX_TRUTH_LINE,
    REQUIRED_TRUTH_COLUMNS,
    describe_key,
    read_points,
    read_truth,
    row_key,
    row_point,
)
from heatdecode.results import PointRecord

Key = tuple[str, int, int]  # (file, sample, channel)

PCK_THRESHOLDS: tuple[float, ...] = (0.5, 1.0, 2.0)
#: scores per channel for at most this many channels (keypoints, landmarks);
#: the same limit as the run summary's per-channel table
MAX_CHANNELS = 40
METRICS_SCHEMA = "heatdecode.metrics/1"
# Coordinates reach us rounded to 6 decimals (coordinates.csv), and e.g.
# hypot(0.3, 0.4) is 0.5000000000000001: an error this close to a threshold is
# on it.
PCK_TOLERANCE = 1e-9


def pck_column(threshold: float) -> str:
    """The column name of PCK at ``threshold``.

    Example:
        >>> [pck_column(t) for t in PCK_THRESHOLDS]
        ['pck_0.5', 'pck_1', 'pck_2']
    """
    return f"pck_{threshold:g}"


def metrics_columns(thresholds: Sequence[float] = PCK_THRESHOLDS) -> tuple[str, ...]:
    """The columns of ``metrics.csv`` (one row per decoder)."""
    stats = ("decoder", "count", "undecoded", "mean", "median", "p95", "max")
    return stats + ("bias_x", "bias_y", "bias_z") + tuple(pck_column(t) for t in thresholds)


#: ``metrics.csv``'s columns with the default PCK thresholds.
METRICS_COLUMNS = metrics_columns()

FIELD_DESCRIPTIONS: dict[str, str] = {
    "decoder": "decoder label, as in coordinates.csv",
    "count": "maps of this decoder that have a truth row (decoded + undecoded)",
    "undecoded": "of those, maps with empty coordinates (status nonfinite): "
    "left out of mean/median/p95/max/bias, counted as failures in PCK",
    "mean": "mean Euclidean error |estimate - truth| over decoded maps, in the coordinates' units",
    "median": "median Euclidean error over decoded maps",
    "p95": "95th percentile of the Euclidean error over decoded maps "
    "(linear interpolation between order statistics, numpy's default)",
    "max": "largest Euclidean error over decoded maps",
    "bias_x": "mean signed error estimate - truth along x (a systematic shift)",
    "bias_y": "mean signed error estimate - truth along y",
    "bias_z": "mean signed error estimate - truth along z, over 3D maps (null if none)",
    "pck_T": "fraction of the count maps with error <= T (undecoded maps count as failures)",
    "missing_truth": "decoded maps (file, sample, channel) with no truth row: not scored",
    "missing_maps": "truth rows with no decoded map: not scored",
    "by_channel": "the same columns per channel (keypoint) and decoder, each row with its "
    "channel; null beyond 40 channels",
}


@dataclass(frozen=True)
class DecoderMetrics:
    """One decoder's scores; the error statistics are ``None`` when no map was decoded."""

    decoder: str
    count: int
    undecoded: int
    mean: float | None
    median: float | None
    p95: float | None
    max: float | None
    bias_x: float | None
    bias_y: float | None
    bias_z: float | None
    pck: dict[float, float | None]  # threshold -> fraction; None when count is 0

    def row(self) -> dict[str, Any]:
        """The ``metrics.csv`` row: column name -> value."""
        out: dict[str, Any] = {
            "decoder": self.decoder,
            "count": self.count,
            "undecoded": self.undecoded,
            "mean": self.mean,
            "median": self.median,
            "p95": self.p95,
            "max": self.max,
            "bias_x": self.bias_x,
            "bias_y": self.bias_y,
            "bias_z": self.bias_z,
        }
        out.update({pck_column(t): v for t, v in self.pck.items()})
        return out


@dataclass(frozen=True)
class Evaluation:
    """Per-decoder scores plus the keys that could not be matched, both ways."""

    decoders: dict[str, DecoderMetrics]  # in the order the decoders first appear
    missing_truth: list[Key] = field(default_factory=list)
    missing_maps: list[Key] = field(default_factory=list)
    thresholds: tuple[float, ...] = PCK_THRESHOLDS
    #: the same scores channel by channel (keypoint by keypoint); None beyond
    #: :data:`MAX_CHANNELS` channels
    by_channel: dict[int, dict[str, DecoderMetrics]] | None = None

    def rows(self) -> list[dict[str, Any]]:
        """One ``metrics.csv`` row per decoder."""
        return [m.row() for m in self.decoders.values()]

    def channel_rows(self) -> list[dict[str, Any]] | None:
        """One row per channel and decoder: ``channel`` then the metrics columns."""
        if self.by_channel is None:
            return None
        return [
            {"channel": c, **m.row()} for c, per in self.by_channel.items() for m in per.values()
        ]


# ---------------------------------------------------------------------------
# scoring
# ---------------------------------------------------------------------------


def _xyz(point: PointRecord) -> tuple[float | None, float | None, float | None]:
    coords = point.coords or (None, None)
    return coords[0], coords[1], coords[2] if len(coords) == 3 else None


def _metrics(
    decoder: str,
    deltas: list[tuple[float, float, float | None]],
    undecoded: int,
    thresholds: Sequence[float],
) -> DecoderMetrics:
    count = len(deltas) + undecoded
    if deltas:
        d = np.array([(dx, dy, np.nan if dz is None else dz) for dx, dy, dz in deltas])
        errors = np.sqrt(np.nansum(d**2, axis=1))  # nansum: a 2D map has no z term
        stats = [float(np.mean(errors)), float(np.median(errors))]
        stats += [float(np.percentile(errors, 95)), float(np.max(errors))]
        has_z = ~np.isnan(d[:, 2])
        bias = [float(np.mean(d[:, 0])), float(np.mean(d[:, 1]))]
        bias.append(float(np.mean(d[has_z, 2])) if has_z.any() else None)
    else:
        errors = np.zeros(0)
        stats, bias = [None] * 4, [None] * 3
    pck: dict[float, float | None] = {
        t: (float(np.count_nonzero(errors <= t + PCK_TOLERANCE)) / count if count else None)
        for t in thresholds
    }
    return DecoderMetrics(decoder, count, undecoded, *stats, *bias, pck)


def evaluate(
    points: Iterable[PointRecord],
    truth: Iterable[Mapping[str, Any]],
    thresholds: Sequence[float] = PCK_THRESHOLDS,
) -> Evaluation:
    """Score decoded ``rows`` against ``truth``, per decoder.

    Args:
        points: the run's points (:class:`~heatdecode.results.PointRecord`,
            e.g. from :func:`read_points`); one without coordinates (status
            ``nonfinite``) is a map that wasn't decoded. Status and score are
            not used.
        truth: dicts with ``file, sample, channel, x, y`` and optionally ``z``
            (as :func:`read_truth` returns), at most one per key.
        thresholds: PCK distances, in the coordinates' units.

    Returns:
        An :class:`Evaluation`. For each decoder: ``count`` maps with truth, of
        which ``undecoded`` had empty coordinates; mean, median, p95, max error
        and bias (estimate − truth) per axis over the decoded ones; PCK over all
        ``count`` (an undecoded map is a miss). Maps without truth and truth
        without maps are listed, in the order met, not scored. ``by_channel``
        holds the same scores for each channel alone (up to
        :data:`MAX_CHANNELS` channels).

    Raises:
        ValueError: a key twice in ``truth``, a (key, decoder) twice in
            ``points``, or a point whose dimension (z present or not) differs
            from its truth row's.

    Example:
        >>> truth = [{"file": "a.npy", "sample": 0, "channel": 0, "x": 1.0, "y": 1.0}]
        >>> points = [  # one pixel too low in y, and a map nobody gave truth for
        ...     PointRecord("a.npy", 0, 0, "argmax", 0, (1.0, 2.0), 1.0, None, "ok"),
        ...     PointRecord("b.npy", 0, 0, "argmax", 0, (1.0, 1.0), 1.0, None, "ok"),
        ... ]
        >>> result = evaluate(points, truth)
        >>> m = result.decoders["argmax"]
        >>> m.count, m.mean, m.bias_y, m.pck
        (1, 1.0, 1.0, {0.5: 0.0, 1.0: 1.0, 2.0: 1.0})
        >>> result.missing_truth
        [('b.npy', 0, 0)]
    """
    thresholds = tuple(float(t) for t in thresholds)
    points = list(points)
    truth = list(truth)
    overall = _scores(points, truth, thresholds)
    return replace(overall, by_channel=_by_channel(points, truth, thresholds))


def _by_channel(
    points: Sequence[PointRecord], truth: Sequence[Mapping[str, Any]], thresholds: tuple[float, ...]
) -> dict[int, dict[str, DecoderMetrics]] | None:
    """Each channel's scores (the same rules, on its points and truth rows only)."""
    channels: dict[int, list[PointRecord]] = {}
    for point in points:
        channels.setdefault(point.channel, []).append(point)
    if len(channels) > MAX_CHANNELS:
        return None
    targets: dict[int, list[Mapping[str, Any]]] = {}
    for entry in truth:
        targets.setdefault(row_key(entry)[2], []).append(entry)
    return {
        c: _scores(channels[c], targets.get(c, []), thresholds).decoders for c in sorted(channels)
    }


def _scores(
    points: Iterable[PointRecord], truth: Iterable[Mapping[str, Any]], thresholds: tuple[float, ...]
) -> Evaluation:
    """:func:`evaluate` without the per-channel breakdown."""
    targets: dict[Key, tuple[float, float, float | None]] = {}
    for entry in truth:
        key = row_key(entry)
        if key in targets:
            raise ValueError(f"truth: {describe_key(key)} is given twice")
        x, y, z = row_point(entry)
        if x is None or y is None or not all(math.isfinite(v) for v in (x, y, z or 0.0)):
            raise ValueError(f"truth: {describe_key(key)} has no finite x, y")
        targets[key] = (x, y, z)

    deltas: dict[str, list[tuple[float, float, float | None]]] = {}
    undecoded: dict[str, int] = {}
    seen: set[tuple[Key, str]] = set()
    found: set[Key] = set()
    missing_truth: dict[Key, None] = {}  # an ordered set
    for point in points:
        key, decoder = point.key, point.decoder
        if (key, decoder) in seen:
            raise ValueError(f"{describe_key(key)} has two {decoder} rows")
        seen.add((key, decoder))
        found.add(key)
        deltas.setdefault(decoder, [])
        undecoded.setdefault(decoder, 0)
        if key not in targets:
            missing_truth[key] = None
            continue
        x, y, z = _xyz(point)
        tx, ty, tz = targets[key]
        if x is None or y is None or not all(math.isfinite(v) for v in (x, y, z or 0.0)):
            undecoded[decoder] += 1
            continue
        if (z is None) != (tz is None):
            dims = ("3D", "2D") if tz is None else ("2D", "3D")
            raise ValueError(
                f"{describe_key(key)}: {decoder} gives {dims[0]} coordinates, truth {dims[1]}"
            )
        deltas[decoder].append((x - tx, y - ty, None if z is None else z - tz))

    return Evaluation(
        decoders={d: _metrics(d, deltas[d], undecoded[d], thresholds) for d in deltas},
        missing_truth=list(missing_truth),
        missing_maps=[key for key in targets if key not in found],
        thresholds=thresholds,
    )


# ---------------------------------------------------------------------------
# output
# ---------------------------------------------------------------------------


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6f}"
    return str(value)


def key_dicts(keys: Iterable[Key]) -> list[dict[str, Any]]:
    """(file, sample, channel) keys as the metrics JSON lists them."""
    return [{"file": f, "sample": s, "channel": c} for f, s, c in keys]


def metrics_document(evaluation: Evaluation) -> dict[str, Any]:
    """What ``metrics.json`` holds: schema, field descriptions, rows, missing lists."""
    return {
        "schema": METRICS_SCHEMA,
        "thresholds": list(evaluation.thresholds),
        "columns": list(metrics_columns(evaluation.thresholds)),
        "fields": FIELD_DESCRIPTIONS,
        "decoders": evaluation.rows(),
        "missing_truth": key_dicts(evaluation.missing_truth),
        "missing_maps": key_dicts(evaluation.missing_maps),
        "by_channel": evaluation.channel_rows(),
    }


def write_metrics(out_dir: Path, evaluation: Evaluation) -> list[Path]:
    """Write ``metrics.csv`` and ``metrics.json`` into ``out_dir`` atomically; returns both paths.

    The CSV has one row per decoder (columns :func:`metrics_columns`, numbers to
    6 decimals, empty where undefined); the JSON the same at full precision
    (``null`` where undefined), plus ``missing_truth``, ``missing_maps`` and a
    description of every field.
    """
    paths = [Path(out_dir) / "metrics.csv", Path(out_dir) / "metrics.json"]
    write_metrics_csv(paths[0], evaluation)
    write_metrics_json(paths[1], evaluation)
    return paths


def write_metrics_csv(path: Path, evaluation: Evaluation) -> None:
    """``metrics.csv`` (see :func:`write_metrics`) at ``path``, atomically."""
    write_table_csv(path, metrics_columns(evaluation.thresholds), evaluation.rows())


def write_metrics_json(path: Path, evaluation: Evaluation) -> None:
    """``metrics.json`` (see :func:`write_metrics`) at ``path``, atomically."""
    write_document_json(path, metrics_document(evaluation))


def write_table_csv(path: Path, columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    """A metrics table as CSV, atomically: numbers to 6 decimals, empty where undefined."""

    def write(fh: IO[str]) -> None:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_cell(row[c]) for c in columns])

    atomic_write(path, write, errors=CSV_ERRORS)


def write_document_json(path: Path, document: Mapping[str, Any]) -> None:
    """A metrics document as indented JSON, atomically (NaN/Inf refused)."""

    def write(fh: IO[str]) -> None:
        json.dump(document, fh, indent=1, ensure_ascii=False, allow_nan=False)
        fh.write("\n")

    atomic_write(path, write, errors=JSON_ERRORS)
