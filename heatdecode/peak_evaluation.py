"""Peaks mode scored against ground truth with any number of points per map
(``heatdecode run --peaks --truth``): each decoder's points matched one-to-one
to the truth points of each map (:mod:`heatdecode.matching`), at each cutoff.

A map is scored when the truth names it (a map the truth doesn't name is listed
in ``missing_truth``, not scored: an absent key can't tell "no spots" from "not
annotated"); truth for a map that wasn't decoded is listed in ``missing_maps``.
A scored map's decoder gave 0…K points (a ``no-peak`` map gives none: all its
truth points are misses).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from heatdecode.atomic import CSV_ERRORS, JSON_ERRORS, atomic_write
from heatdecode.matching import (
    MATCH_COLUMNS,
    MATCH_CUTOFFS,
    MATCH_FIELD_DESCRIPTIONS,
    MatchingMetrics,
    match_maps,
    metrics_rows,
)
from heatdecode.readers import row_key
from heatdecode.results import PointRecord

Key = tuple[str, int, int]
PEAK_METRICS_SCHEMA = "heatdecode.peak-metrics/1"


@dataclass(frozen=True)
class PeakEvaluation:
    """Each decoder's matching, and the maps that could not be scored."""

    decoders: dict[str, MatchingMetrics]
    cutoffs: tuple[float, ...] = MATCH_CUTOFFS
    missing_truth: list[Key] = field(default_factory=list)
    missing_maps: list[Key] = field(default_factory=list)

    def rows(self) -> list[dict[str, Any]]:
        """The ``metrics.csv`` rows: per decoder and cutoff, pooled then per map."""
        return metrics_rows(self.decoders)


def evaluate_peaks(
    points: Iterable[PointRecord],
    truth: Iterable[Mapping[str, Any]],
    cutoffs: Sequence[float] | None = None,
) -> PeakEvaluation:
    """Match every decoder's points to the truth points of each map named in ``truth``.

    ``truth`` rows as :func:`heatdecode.readers.read_truth` returns them with
    ``many=True``: any number per (file, sample, channel).

    Raises:
        ValueError: a map whose points and truth differ in dimension (naming it).
    """
    targets: dict[Key, list[tuple[float, ...]]] = {}
    for row in truth:
        xyz = (row["x"], row["y"]) + (() if row.get("z") is None else (row["z"],))
        targets.setdefault(row_key(row), []).append(tuple(float(v) for v in xyz))
    found: dict[str, dict[Key, list[tuple[float, ...]]]] = {}
    seen: dict[Key, None] = {}
    for p in points:
        seen[p.key] = None
        maps = found.setdefault(p.decoder, {})
        maps.setdefault(p.key, [])
        if p.coords is not None:
            maps[p.key].append(p.coords)
    chosen = tuple(MATCH_CUTOFFS if cutoffs is None else cutoffs)
    decoders = {}
    for label, maps in found.items():
        scored = [
            (key, _array(maps.get(key, []), targets[key]), np.asarray(targets[key]))
            for key in seen
            if key in targets
        ]
        decoders[label] = match_maps(scored, chosen)
    return PeakEvaluation(
        decoders=decoders,
        cutoffs=chosen,
        missing_truth=[k for k in seen if k not in targets],
        missing_maps=[k for k in targets if k not in seen],
    )


def _array(points: list[tuple[float, ...]], like: list[tuple[float, ...]]) -> np.ndarray:
    dims = len(points[0]) if points else len(like[0])
    return np.asarray(points, dtype=np.float64).reshape(len(points), dims)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6f}"
    return str(value)


def write_peak_metrics_csv(path: Path, evaluation: PeakEvaluation) -> None:
    """``metrics.csv`` in peaks mode: the columns of :data:`MATCH_COLUMNS`."""

    def write(fh: IO[str]) -> None:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(MATCH_COLUMNS)
        for row in evaluation.rows():
            writer.writerow([_cell(row[c]) for c in MATCH_COLUMNS])

    atomic_write(path, write, errors=CSV_ERRORS)


def write_peak_metrics_json(path: Path, evaluation: PeakEvaluation) -> None:
    """``metrics.json`` in peaks mode: schema, field descriptions, rows, missing lists."""
    keys = lambda ks: [{"file": f, "sample": s, "channel": c} for f, s, c in ks]  # noqa: E731
    document = {
        "schema": PEAK_METRICS_SCHEMA,
        "cutoffs": list(evaluation.cutoffs),
        "columns": list(MATCH_COLUMNS),
        "fields": MATCH_FIELD_DESCRIPTIONS,
        "decoders": evaluation.rows(),
        "missing_truth": keys(evaluation.missing_truth),
        "missing_maps": keys(evaluation.missing_maps),
    }

    def write(fh: IO[str]) -> None:
        json.dump(document, fh, indent=1, ensure_ascii=False, allow_nan=False)
        fh.write("\n")

    atomic_write(path, write, errors=JSON_ERRORS)
