"""``heatdecode compare OUT``: the comparison of a finished run's decoders, from
its outputs alone (no re-decoding).

:func:`read_run` reads ``OUT/coordinates.json`` back into the run's
:class:`~heatdecode.results.SourceRecord` s, its decoder labels and frame;
:func:`compare_rows` gives ``comparison.csv``'s rows: one per point, the
distance between every pair of decoders that ran (heatmap pixels), each
decoder's status, and the argmax row's score.
"""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from heatdecode.atomic import CSV_ERRORS, atomic_write
from heatdecode.comparison import pixel_scale, point_distance
from heatdecode.frames import Frame
from heatdecode.readers import row_key, row_point
from heatdecode.results import PointRecord, SourceRecord
from heatdecode.resume import MalformedOutputs, document_records
from heatdecode.writers import JSON_SCHEMA

COMPARISON_NAME = "comparison.csv"


@dataclass(frozen=True)
class FinishedRun:
    """A finished run as its outputs tell it."""

    records: list[SourceRecord]
    labels: tuple[str, ...]
    frame: Frame
    settings: dict[str, Any]


def read_run(out_dir: Path) -> FinishedRun:
    """The run in ``out_dir``, read from its ``coordinates.json``.

    Raises:
        ValueError: no ``coordinates.json`` there, or not one of heatdecode's
            (one line naming the file and the reason).
    """
    path = Path(out_dir) / "coordinates.json"
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(
            f"{path}: not found; run heatdecode run --format json (or both) first"
        ) from None
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: can't be read ({exc})") from None
    if not isinstance(document, dict) or document.get("schema") != JSON_SCHEMA:
        raise ValueError(f"{path}: not a heatdecode coordinates.json ({JSON_SCHEMA})")
    try:
        return _finished(document)
    except MalformedOutputs as exc:
        raise ValueError(f"{path}: malformed: {exc}") from None
    except (KeyError, TypeError, ValueError) as exc:  # the settings
        raise ValueError(f"{path}: malformed ({exc!r})") from None


def _finished(document: dict[str, Any]) -> FinishedRun:
    settings = document["settings"]
    records = document_records(document)
    frame = Frame(
        coords=settings.get("coords", "pixel"),
        stride=tuple(settings["stride"]) if settings.get("stride") else None,
        stride_offset=settings.get("stride_offset") or "centre",
        spacing=tuple(settings["spacing"]) if settings.get("spacing") else None,
    )
    return FinishedRun(list(records.values()), tuple(settings["decoders"]), frame, settings)


def pair_name(a: str, b: str) -> str:
    return f"{a}~{b}"


def truth_targets(truth: Sequence[Mapping[str, Any]]) -> dict[tuple[str, int, int], tuple]:
    """(file, sample, channel) -> the true (x, y[, z]), from :func:`read_truth`'s rows."""
    return {row_key(entry): tuple(v for v in row_point(entry) if v is not None) for entry in truth}


def compare_rows(
    run: FinishedRun,
    decoders: Sequence[str] | None = None,
    truth: Mapping[tuple[str, int, int], tuple] | None = None,
) -> list[dict[str, Any]]:
    """One row per point: file, sample, channel, peak, score, the distance of
    every decoder pair (``a~b``, heatmap pixels; empty where either has no
    coordinates) and each decoder's status; with ``truth``
    (:func:`truth_targets`), each decoder's error ``error:LABEL`` against it, in
    the coordinates' units as ``metrics.csv`` gives them (empty without a truth
    row)."""
    labels = [label for label in run.labels if decoders is None or label in decoders]
    pairs = list(itertools.combinations(labels, 2))
    rows = []
    for record in run.records:
        scale = {f.name: pixel_scale(f.spatial_shape, run.frame) for f in record.files}
        points: dict[tuple[str, int, int, int], dict[str, PointRecord]] = {}
        for p in record.points:
            points.setdefault((*p.key, p.point), {})[p.decoder] = p
        for (file, sample, channel, peak), by_label in points.items():
            row: dict[str, Any] = {"file": file, "sample": sample, "channel": channel, "peak": peak}
            first = by_label.get(labels[0]) if labels else None
            row["score"] = first.score if first is not None else None
            for a, b in pairs:
                row[pair_name(a, b)] = point_distance(
                    by_label.get(a), by_label.get(b), scale.get(file)
                )
            for label in labels:
                row[f"status:{label}"] = by_label[label].status if label in by_label else None
            if truth is not None:
                target = truth.get((file, sample, channel))
                for label in labels:
                    row[f"error:{label}"] = _error(by_label.get(label), target)
            rows.append(row)
    return rows


def _error(point: PointRecord | None, target: tuple | None) -> float | None:
    if point is None or point.coords is None or target is None:
        return None
    return float(np.linalg.norm(np.subtract(point.coords, target, dtype=np.float64)))


def comparison_columns(
    run: FinishedRun, decoders: Sequence[str] | None = None, truth: bool = False
) -> list[str]:
    labels = [label for label in run.labels if decoders is None or label in decoders]
    pairs = [pair_name(a, b) for a, b in itertools.combinations(labels, 2)]
    errors = [f"error:{x}" for x in labels] if truth else []
    status = [f"status:{x}" for x in labels]
    return ["file", "sample", "channel", "peak", "score", *pairs, *status, *errors]


def write_comparison_csv(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> Path:
    """``comparison.csv``, atomically: distances to 6 decimals, empty where undefined."""

    def cell(value: Any) -> str:
        if value is None:
            return ""
        return f"{value:.6f}" if isinstance(value, float) else str(value)

    def write(fh: IO[str]) -> None:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([cell(row[c]) for c in columns])

    atomic_write(path, write, errors=CSV_ERRORS)
    return path
