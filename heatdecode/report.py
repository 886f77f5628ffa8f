"""What a run reports: :class:`RunReport`, the summary numbers and the
``coordinates.json`` document, all counted from the typed records of
:mod:`heatdecode.results` (old, resumed rows and new ones alike).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from heatdecode import __version__
from heatdecode.comparison import distance_stats, distances, status_counts
from heatdecode.evaluate import Evaluation
from heatdecode.frames import Frame
from heatdecode.results import ArrayResult, Failure, PointRecord, SourceRecord, iter_points
from heatdecode.writers import JSON_SCHEMA

if TYPE_CHECKING:
    from heatdecode.loading import Source
    from heatdecode.overlay_writer import OverlayWriter
    from heatdecode.pipeline import DecodeOutcome


@dataclass
class RunReport:
    """What a run did: every source's record in order, and where outputs went.

    ``results``, ``failures`` and ``overlay_errors`` are this run's own (not the
    resumed part's); ``records`` holds both parts, as the outputs do.
    """

    results: list[ArrayResult]
    failures: list[Failure]
    sources: int
    device: str
    stopped: str | None  # None, "strict", "interrupted" or "out-of-memory"
    elapsed: float
    labels: tuple[str, ...] = ()  # the decoders' row labels, in run order
    records: list[SourceRecord] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)
    overlay_errors: list[Failure] = field(default_factory=list)
    evaluation: Evaluation | None = None
    saved_sources: int = 0  # after an interruption: files whose results were saved
    error: str | None = None  # why the run stopped early, when not interrupted by a user
    notes: list[str] = field(default_factory=list)  # e.g. folders skipped as old outputs
    frame: Frame = Frame()
    peaks: Any = None  # the run's PeakOptions in peaks mode

    @property
    def peaks_mode(self) -> bool:
        return self.peaks is not None

    def truncated(self) -> list[tuple[str, int, int]]:
        """(file, sample, channel) of this run's maps that had more than ``--max-peaks``."""
        return [
            (r.name, *divmod(int(m), r.channels))
            for r in self.results
            for m in np.flatnonzero(r.per_map.truncated)
        ]

    @property
    def resumed_sources(self) -> int:
        """Sources taken from an interrupted run's partial outputs."""
        return sum(r.resumed for r in self.records)

    @property
    def resumed_maps(self) -> int:
        return sum(f.maps for r in self.records if r.resumed for f in r.files)

    @property
    def resumed_failures(self) -> int:
        """Problems inside the resumed part: they count for the exit code and summary."""
        return sum(len(r.failures) for r in self.records if r.resumed)

    @property
    def maps(self) -> int:
        return self.resumed_maps + sum(r.maps for r in self.results)

    @property
    def points(self) -> list:
        return [p for r in self.records for p in r.points]

    @property
    def nonfinite_rows(self) -> int:
        """Points written as ``nonfinite``, old and new: never an ok run."""
        return sum(p.status == "nonfinite" for p in self.points)

    def nonfinite(self) -> list[tuple[str, int, int]]:
        """(file, sample, channel) of every map of this run holding NaN or Inf."""
        new = [p for r in self.records if not r.resumed for p in r.points]
        return nonfinite_maps(new, self.labels[0]) if self.labels else []

    def distances(self) -> dict[str, np.ndarray]:
        """Each decoder's distance to the argmax in heatmap pixels, for every
        decoded map (old and new). Empty when argmax didn't run: it is the
        reference the others refine."""
        return distances(self.records, self.frame)

    @property
    def totals(self) -> dict[str, Any]:
        return totals(self)

    @property
    def ok(self) -> bool:
        return not (
            self.failures
            or self.overlay_errors
            or self.stopped
            or self.resumed_failures
            or self.nonfinite_rows  # old and new points: covers the resumed part's NaN maps
        )


def kept_sources(
    decoding: DecodeOutcome, todo: list[Source], overlays: OverlayWriter | None
) -> set[str]:
    """The sources whose results go into the outputs: all of them, unless the run
    stopped early; then only whole ones, so that --resume can skip exactly those
    and redo the rest. A source is whole once its overlays are drawn too (the
    signal may have come before one was queued)."""
    if decoding.stopped not in ("interrupted", "out-of-memory"):
        return {s.name for s in todo}
    keep = set(decoding.complete)
    if overlays is not None:
        queued = overlays.queued()
        keep -= {r.source for r in decoding.results if r.name not in queued}
    return keep


def missing_records(missing: list[Failure]) -> list[SourceRecord]:
    return [SourceRecord(f.name, failures=[f]) for f in missing]


def new_records(
    decoding: DecodeOutcome,
    overlay_errors: list[Failure],
    overlay_paths: dict[str, str],
    frame: Frame,
) -> dict[str, SourceRecord]:
    """This run's records by source name: arrays, points and failures in order."""
    records: dict[str, SourceRecord] = {}
    for result in decoding.results:
        record = records.setdefault(result.source, SourceRecord(result.source))
        record.files.append(replace(result.record, overlay=overlay_paths.get(result.name)))
        record.points.extend(iter_points([result], frame))
    for failure in [*decoding.failures, *overlay_errors]:
        source = failure.source or failure.name
        records.setdefault(source, SourceRecord(source)).failures.append(failure)
    return records


def nonfinite_maps(points: Iterable[PointRecord], label: str) -> list[tuple[str, int, int]]:
    """(file, sample, channel) of every map whose ``label`` point is ``nonfinite``:
    the one count of maps with NaN/Inf (every decoder agrees on them)."""
    return [p.key for p in points if p.decoder == label and p.status == "nonfinite"]


def summary(report: RunReport) -> dict[str, Any]:
    """The numbers of the terminal summary table (also stored in the JSON),
    counted from the records written, so a resumed run's summary covers both
    parts, as an uninterrupted run's would."""
    numbers = totals(report)
    return {
        **numbers,
        "seconds": round(report.elapsed, 4),
        "maps_per_second": (
            round(numbers["maps"] / report.elapsed, 1) if report.elapsed > 0 else None
        ),
    }


def totals(report: RunReport) -> dict[str, Any]:
    files = [f for r in report.records for f in r.files]
    first = report.labels[0] if report.labels else None
    statuses = [p.status for p in report.points if p.decoder == first]
    return {
        "files": report.sources,
        "arrays": len(files),
        "maps": sum(f.maps for f in files),
        "failed_files": sum(f.counts_as_failed_file for r in report.records for f in r.failures),
        "nonfinite_maps": statuses.count("nonfinite"),
        "flat_maps": statuses.count("flat"),
        "distance_to_argmax_px": {
            label: distance_stats(d) for label, d in report.distances().items() if len(d)
        },
        "status_counts": status_counts(report.points, report.labels),
        **(peak_totals(report, first) if report.peaks_mode else {}),
    }


def peak_totals(report: RunReport, first: str | None) -> dict[str, Any]:
    """Peaks mode: peaks per map (mean, max) by the first decoder, the maps
    without any, and the maps that had more than ``--max-peaks``."""
    counts: dict[tuple[str, int, int], int] = {}
    for p in report.points:
        if p.decoder == first:
            counts[p.key] = counts.get(p.key, 0) + (p.coords is not None)
    values = np.asarray(list(counts.values()), dtype=np.int64)
    return {
        "peaks_per_map": {
            "mean": float(values.mean()) if len(values) else 0.0,
            "max": int(values.max()) if len(values) else 0,
        },
        "no_peak_maps": int(np.count_nonzero(values == 0)),
        "truncated_maps": len(report.truncated()),
    }


def run_settings(
    config: Any, paths: Sequence[str | os.PathLike[str]], device: str, runs: Sequence[Any]
) -> dict[str, Any]:
    """The ``settings`` of ``coordinates.json`` (also what ``--resume`` compares)."""
    soft = next((r.options() for r in runs if r.decoder == "softargmax"), {})
    return {
        "inputs": [os.fspath(p) for p in paths],
        "decoders": [r.label for r in runs],
        # soft-argmax's β and normalisation, the numbers most readers look for
        "beta": soft.get("beta"),
        "normalize": soft.get("normalize"),
        "runs": [{"label": r.label, "decoder": r.decoder, **r.options()} for r in runs],
        **config.frame.describe(),
        "layout": config.layout,
        "device": device,
        "batch_size": config.batch_size,
        # only in peaks mode, so single-point runs' settings stay as they were
        **({"peaks": config.peaks.describe()} if config.peaks is not None else {}),
    }


def document(
    report: RunReport,
    settings: dict[str, Any],
    columns: Sequence[str],
    rows: list[dict[str, Any]],
    torch_version: str,
) -> dict[str, Any]:
    """``coordinates.json`` (or its partial twin, after an interruption)."""
    records = report.records
    out: dict[str, Any] = {
        "schema": JSON_SCHEMA,
        "complete": not report.stopped,
        "heatdecode_version": __version__,
        "torch_version": torch_version,
        "settings": settings,
        "columns": list(columns),
        "files": [f.entry() for r in records for f in r.files],
        "failures": [f.entry() for r in records for f in r.failures],
        "nonfinite_maps": [
            {"file": f, "sample": s, "channel": c}
            for f, s, c in nonfinite_maps(report.points, report.labels[0])
        ],
        "summary": summary(report),
        "rows": rows,
    }
    if report.stopped in ("interrupted", "out-of-memory"):
        out["stopped"] = report.stopped
        out["complete_sources"] = sorted(
            {x.source or x.name for r in records for x in [*r.files, *r.failures]}
        )
    return out
