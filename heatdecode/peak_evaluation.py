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

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from heatdecode.evaluate import key_dicts, write_document_json, write_table_csv
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


def write_peak_metrics_csv(path: Path, evaluation: PeakEvaluation) -> None:
    """``metrics.csv`` in peaks mode: the columns of :data:`MATCH_COLUMNS`."""
    write_table_csv(path, MATCH_COLUMNS, evaluation.rows())


def write_peak_metrics_json(path: Path, evaluation: PeakEvaluation) -> None:
    """``metrics.json`` in peaks mode: schema, field descriptions, rows, missing lists."""
    document = {
        "schema": PEAK_METRICS_SCHEMA,
        "cutoffs": list(evaluation.cutoffs),
        "columns": list(MATCH_COLUMNS),
        "fields": MATCH_FIELD_DESCRIPTIONS,
        "decoders": evaluation.rows(),
        "missing_truth": key_dicts(evaluation.missing_truth),
        "missing_maps": key_dicts(evaluation.missing_maps),
    }
    write_document_json(path, document)
