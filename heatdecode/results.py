"""What a run produces, as typed records flowing one way: pipeline → writers,
resume and evaluation.

- :class:`ArrayResult` is one decoded array (a file, or one ``.npz`` member):
  its :class:`FileRecord` and, per decoder, :class:`DecoderColumns` of numpy
  columns in the pixel frame (columnar, because it is the hot path).
- :func:`iter_points` turns it into :class:`PointRecord` s, one per point, in
  the output frame: what ``coordinates.csv``/``.json`` rows serialise and
  ``--resume`` reads back.
- :class:`Failure` is every kind of failure (unreadable, missing, skipped,
  overlay), with a machine-readable ``kind``.
- :class:`SourceRecord` is one source's share of the outputs, old (resumed)
  or new alike.

A single-point decoder yields point 0 for every map; in peaks mode
(:mod:`heatdecode.peaks`) a map yields 0…K points, ``point`` being each one's
rank in its map (written as the ``peak`` column).

Pure: numpy and the core modules only; no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from heatdecode.failures import OVERLAY_FAILED, Failure  # noqa: F401  (re-exported)
from heatdecode.frames import Frame, apply_frame
from heatdecode.status import row_status


@dataclass(frozen=True)
class FileRecord:
    """One decoded array: where it came from and how it was read."""

    name: str
    source: str  # the file it came from (differs from name for .npz members)
    layout: str
    shape: tuple[int, ...]
    samples: int
    channels: int
    spatial_shape: tuple[int, ...]
    warnings: tuple[str, ...] = ()
    overlay: str | None = None  # relative to --out, posix

    @property
    def maps(self) -> int:
        return self.samples * self.channels

    def entry(self) -> dict[str, Any]:
        """The array's ``coordinates.json`` ``files`` entry."""
        return {
            "file": self.name,
            "source": self.source,
            "layout": self.layout,
            "shape": list(self.shape),
            "samples": self.samples,
            "channels": self.channels,
            "spatial_shape": list(self.spatial_shape),
            "warnings": list(self.warnings),
            "overlay": self.overlay,
        }

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> FileRecord:
        return cls(
            name=entry["file"],
            source=entry["source"],
            layout=entry.get("layout", ""),
            shape=tuple(entry.get("shape", ())),
            samples=entry["samples"],
            channels=entry["channels"],
            spatial_shape=tuple(entry.get("spatial_shape", ())),
            warnings=tuple(entry.get("warnings", ())),
            overlay=entry.get("overlay"),
        )


#: The columns of ``coordinates.csv`` and of the JSON rows, in order. A new
#: output column is added here and in :meth:`PointRecord.row` (and
#: :meth:`PointRecord.from_row`, so --resume reads it back); the writers follow.
COLUMNS = (
    "file",
    "sample",
    "channel",
    "decoder",
    "x",
    "y",
    "z",
    "score",
    "spread",
    "status",
    "peak",  # the point's rank in its map (0: the highest); 0 for single-point decoders
)


@dataclass(frozen=True, slots=True)
class PointRecord:
    """One point a decoder found in one map, in the output frame.

    ``coords`` is ``(x, y)`` or ``(x, y, z)``, or ``None`` when the map could
    not be decoded (status ``nonfinite``: score and spread are ``None`` too).
    ``extras`` holds per-point numbers beyond the fixed columns (an
    uncertainty, say); none are written yet.
    """

    file: str
    sample: int
    channel: int
    decoder: str
    point: int
    coords: tuple[float, ...] | None
    score: float | None
    spread: float | None
    status: str
    extras: Mapping[str, float] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, int, int]:
        """(file, sample, channel): the map the point is in."""
        return (self.file, self.sample, self.channel)

    def row(self) -> dict[str, Any]:
        """The ``coordinates.csv``/``.json`` row: column name -> value (None:
        empty), in the order of :data:`COLUMNS`."""
        xyz = self.coords or (None, None)
        z = xyz[2] if len(xyz) == 3 else None
        values = (self.file, self.sample, self.channel, self.decoder, xyz[0], xyz[1], z)
        values += (self.score, self.spread, self.status, self.point)
        return dict(zip(COLUMNS, values, strict=True))

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> PointRecord:
        """A point read back from a ``coordinates.json`` row."""
        x, y, z = row["x"], row["y"], row.get("z")
        coords = None if x is None or y is None else tuple(v for v in (x, y, z) if v is not None)
        return cls(
            file=row["file"],
            sample=row["sample"],
            channel=row["channel"],
            decoder=row["decoder"],
            point=row.get("peak", 0),
            coords=coords,
            score=row.get("score"),
            spread=row.get("spread"),
            status=row["status"],
        )


@dataclass
class DecoderColumns:
    """One decoder's results for every map of an array, pixel frame.

    ``coords`` is ``(M, d)`` ordered (x, y[, z]); the rest are ``(M,)``: the
    score, the spread (NaN where the decoder has none), and the flags behind
    the row's status (see :mod:`heatdecode.status`). M = N·C maps in
    (sample, channel) row-major order.
    """

    coords: np.ndarray
    score: np.ndarray
    spread: np.ndarray
    border: np.ndarray
    skipped: np.ndarray
    low_contrast: np.ndarray

    @classmethod
    def empty(cls, maps: int, spatial_dims: int) -> DecoderColumns:
        """Columns for ``maps`` maps, to be filled batch by batch; a flag or
        spread a decoder doesn't give stays False/NaN."""
        return cls(
            coords=np.zeros((maps, spatial_dims)),
            score=np.zeros(maps),
            spread=np.full(maps, np.nan),
            border=np.zeros(maps, dtype=bool),
            skipped=np.zeros(maps, dtype=bool),
            low_contrast=np.zeros(maps, dtype=bool),
        )


@dataclass
class MapColumns:
    """What holds for a map whichever decoder reads it: ``(M,)`` flags, and in
    peaks mode each map's maximum (the score of a ``no-peak`` row) and whether
    it had more peaks than ``--max-peaks`` kept."""

    flat: np.ndarray
    finite: np.ndarray
    multimodal: np.ndarray
    maximum: np.ndarray
    truncated: np.ndarray

    @classmethod
    def empty(cls, maps: int) -> MapColumns:
        return cls(
            flat=np.zeros(maps, dtype=bool),
            finite=np.ones(maps, dtype=bool),
            multimodal=np.zeros(maps, dtype=bool),
            maximum=np.full(maps, np.nan),
            truncated=np.zeros(maps, dtype=bool),
        )


@dataclass
class PeakColumns:
    """One decoder's points for maps of an array in peaks mode, pixel frame:
    ``(P,)`` columns (``coords`` ``(P, d)``) ordered by map, then rank."""

    map_index: np.ndarray
    rank: np.ndarray
    coords: np.ndarray
    score: np.ndarray
    spread: np.ndarray
    border: np.ndarray
    skipped: np.ndarray

    def select(self, start: int, stop: int, shift: int) -> PeakColumns:
        """The points of maps ``start <= map_index < stop``, their map index shifted."""
        lo, hi = np.searchsorted(self.map_index, [start, stop])
        return PeakColumns(
            map_index=self.map_index[lo:hi] + shift,
            rank=self.rank[lo:hi],
            coords=self.coords[lo:hi],
            score=self.score[lo:hi],
            spread=self.spread[lo:hi],
            border=self.border[lo:hi],
            skipped=self.skipped[lo:hi],
        )

    @classmethod
    def concatenate(cls, parts: list[PeakColumns], spatial_dims: int) -> PeakColumns:
        if not parts:
            empty = np.zeros(0)
            flags = np.zeros(0, dtype=bool)
            index = np.zeros(0, dtype=np.int64)
            coords = np.zeros((0, spatial_dims))
            return cls(index, index, coords, empty, empty, flags, flags)
        return cls(
            map_index=np.concatenate([p.map_index for p in parts]),
            rank=np.concatenate([p.rank for p in parts]),
            coords=np.concatenate([p.coords for p in parts]),
            score=np.concatenate([p.score for p in parts]),
            spread=np.concatenate([p.spread for p in parts]),
            border=np.concatenate([p.border for p in parts]),
            skipped=np.concatenate([p.skipped for p in parts]),
        )


@dataclass
class ArrayResult:
    """Everything known about one decoded array: its record and its columns."""

    record: FileRecord
    columns: dict[str, DecoderColumns]  # by decoder label, in run order
    per_map: MapColumns
    # peaks mode: each decoder's points (``columns`` is then empty), filled
    # batch by batch into ``peak_parts`` and joined by :meth:`finish_peaks`
    peaks: dict[str, PeakColumns] | None = None
    peak_parts: dict[str, list[PeakColumns]] | None = None

    def finish_peaks(self) -> None:
        if self.peak_parts is not None:
            dims = len(self.record.spatial_shape)
            self.peaks = {k: PeakColumns.concatenate(v, dims) for k, v in self.peak_parts.items()}
            self.peak_parts = None

    # the record's fields, read often
    @property
    def name(self) -> str:
        return self.record.name

    @property
    def source(self) -> str:
        return self.record.source

    @property
    def layout(self) -> str:
        return self.record.layout

    @property
    def shape(self) -> tuple[int, ...]:
        return self.record.shape

    @property
    def samples(self) -> int:
        return self.record.samples

    @property
    def channels(self) -> int:
        return self.record.channels

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        return self.record.spatial_shape

    @property
    def warnings(self) -> tuple[str, ...]:
        return self.record.warnings

    @property
    def maps(self) -> int:
        return self.record.maps

    @property
    def spatial_dims(self) -> int:
        return len(self.record.spatial_shape)

    @property
    def finite(self) -> np.ndarray:
        return self.per_map.finite

    @property
    def outputs(self) -> dict[str, DecoderColumns]:
        """``columns``, by its old name, kept working."""
        return self.columns

    def status(self, index: int, label: str) -> str:
        """The status of map ``index`` under decoder ``label``: its flags, ranked
        by :func:`heatdecode.status.row_status`."""
        out, per_map = self.columns[label], self.per_map
        return row_status(
            {
                "nonfinite": not per_map.finite[index],
                "flat": bool(per_map.flat[index]),
                "border": bool(out.border[index]),
                "unrefined": bool(out.skipped[index]),
                "low-contrast": bool(out.low_contrast[index]),
                "multimodal": bool(per_map.multimodal[index]),
            }
        )

    def nonfinite(self) -> list[tuple[int, int]]:
        """(sample, channel) of every map holding NaN or Inf."""
        return [divmod(int(m), self.channels) for m in np.flatnonzero(~self.per_map.finite)]


def iter_points(results: Iterable[ArrayResult], frame: Frame = Frame()) -> Iterator[PointRecord]:
    """One point per map and decoder, in (file, sample, channel, decoder) order.

    Coordinates are converted from the heatmap's pixel frame to ``frame``; a
    map with NaN/Inf, or a point whose coordinates come out NaN/Inf, gets no
    numbers and status ``nonfinite``.
    """
    for result in results:
        if result.peaks is not None:
            yield from _peak_points(result, frame)
            continue
        framed = {
            label: apply_frame(out.coords, result.spatial_shape, frame)
            for label, out in result.columns.items()
        }
        for m in range(result.maps):
            sample, channel = divmod(m, result.channels)
            for label, out in result.columns.items():
                yield _point(result, m, sample, channel, label, out, framed[label][m])


def _point(
    result: ArrayResult,
    m: int,
    sample: int,
    channel: int,
    label: str,
    out: DecoderColumns,
    framed: np.ndarray,
) -> PointRecord:
    status = result.status(m, label)
    xyz = tuple(float(v) for v in framed)
    if not all(map(math.isfinite, xyz)):
        # a backstop: options the CLI refuses (beta, stride, spacing out of
        # range) could overflow; a non-finite point is never "ok"
        status = "nonfinite"
    if status == "nonfinite":
        return PointRecord(result.name, sample, channel, label, 0, None, None, None, status)
    spread = float(out.spread[m])
    return PointRecord(
        result.name,
        sample,
        channel,
        label,
        0,
        xyz,
        float(out.score[m]),
        spread if math.isfinite(spread) else None,
        status,
    )


def _peak_points(result: ArrayResult, frame: Frame) -> Iterator[PointRecord]:
    """Peaks mode: a row per peak and decoder, in (file, sample, channel,
    decoder, peak) order; a map without any, one row per decoder saying why
    (``nonfinite``, ``flat`` or ``no-peak``, its maximum as score)."""
    assert result.peaks is not None
    framed = {
        label: apply_frame(out.coords, result.spatial_shape, frame)
        for label, out in result.peaks.items()
    }
    bounds = {
        label: np.searchsorted(out.map_index, np.arange(result.maps + 1))
        for label, out in result.peaks.items()
    }
    per_map = result.per_map
    for m in range(result.maps):
        sample, channel = divmod(m, result.channels)
        for label, out in result.peaks.items():
            lo, hi = bounds[label][m], bounds[label][m + 1]
            if lo == hi:
                status = row_status(
                    {"nonfinite": not per_map.finite[m], "flat": bool(per_map.flat[m])}
                )
                status = "no-peak" if status == "ok" else status
                top = float(per_map.maximum[m])
                score = top if math.isfinite(top) else None
                yield PointRecord(result.name, sample, channel, label, 0, None, score, None, status)
            for i in range(lo, hi):
                yield _one_peak(result.name, sample, channel, label, out, i, framed[label][i])


def _one_peak(
    name: str, sample: int, channel: int, label: str, out: PeakColumns, i: int, xyz: np.ndarray
) -> PointRecord:
    flags = {"border": bool(out.border[i]), "unrefined": bool(out.skipped[i])}
    coords = tuple(float(v) for v in xyz)
    rank = int(out.rank[i])
    if not all(map(math.isfinite, coords)):
        return PointRecord(name, sample, channel, label, rank, None, None, None, "nonfinite")
    spread = float(out.spread[i])
    spread_value = spread if math.isfinite(spread) else None
    score = float(out.score[i])
    status = row_status(flags)
    return PointRecord(name, sample, channel, label, rank, coords, score, spread_value, status)


@dataclass
class SourceRecord:
    """One source's share of the outputs: its arrays, points and failures."""

    name: str
    files: list[FileRecord] = field(default_factory=list)
    points: list[PointRecord] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    resumed: bool = False  # taken from an interrupted run's partial outputs
