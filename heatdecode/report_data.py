"""What ``report.html`` shows, as plain data: computed from a finished run's
records (:class:`~heatdecode.compare.FinishedRun`) and its overlay index,
never by decoding again.

- :func:`map_table` is the table of every map (columnar, so a page of 10⁶
  maps stays a few tens of MB): file, sample, channel, peak, the reference
  decoder's score, the most serious status of any decoder, and each other
  decoder's distance to the reference in heatmap pixels.
- :func:`histograms` bins each decoder's distances to the reference.
- :func:`gallery` is the worst and the flagged maps, each with the overlay
  image that shows it (relative to the run's folder), if one was drawn.

The reference is argmax when it ran (what the terminal summary measures
against), else the first decoder.

Pure: numpy and heatdecode's record types only; no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from heatdecode.comparison import (
    PointKey,
    pixel_scale,
    point_distance,
    point_statuses,
    worst_maps,
)
from heatdecode.frames import Frame
from heatdecode.results import PointRecord, SourceRecord
from heatdecode.status import STATUSES

HISTOGRAM_BINS = 40
#: distances are written to the page with this many decimals (0.1 µpx is
#: below any decoder's precision and keeps the page small)
DIGITS = 4


def reference_label(labels: Sequence[str]) -> str | None:
    """The decoder distances are measured to: argmax if it ran, else the first."""
    if "argmax" in labels:
        return "argmax"
    return labels[0] if labels else None


@dataclass(frozen=True)
class MapTable:
    """Every decoded point of the run, one entry per (file, sample, channel, peak).

    ``files`` lists file names once; ``columns['file']`` holds indices into
    it, ``columns['status']`` indices into :data:`~heatdecode.status.STATUSES`;
    ``distances[label]`` is that decoder's distance to the reference (None
    where either has no coordinates).
    """

    files: list[str]
    columns: dict[str, list[Any]]
    distances: dict[str, list[float | None]]

    @property
    def rows(self) -> int:
        return len(self.columns["file"])


def map_table(records: Sequence[SourceRecord], labels: Sequence[str], frame: Frame) -> MapTable:
    """The table of every map (see :class:`MapTable`)."""
    reference = reference_label(labels)
    others = [label for label in labels if label != reference]
    rank = {s: i for i, s in enumerate(STATUSES)}
    files: dict[str, int] = {}
    columns: dict[str, list[Any]] = {k: [] for k in ("file", "sample", "channel", "peak")}
    columns |= {"score": [], "status": []}
    distances: dict[str, list[float | None]] = {label: [] for label in others}
    for record in records:
        scale = {f.name: pixel_scale(f.spatial_shape, frame) for f in record.files}
        for key, by_label in _points(record.points).items():
            file, sample, channel, peak = key
            first = by_label.get(reference) if reference else None
            columns["file"].append(files.setdefault(file, len(files)))
            columns["sample"].append(sample)
            columns["channel"].append(channel)
            columns["peak"].append(peak)
            columns["score"].append(_rounded(first.score if first else None))
            columns["status"].append(min(rank[p.status] for p in by_label.values()))
            for label in others:
                d = point_distance(first, by_label.get(label), scale.get(file))
                distances[label].append(_rounded(d))
    return MapTable(list(files), columns, distances)


def _points(points: Sequence[PointRecord]) -> dict[PointKey, dict[str, PointRecord]]:
    grouped: dict[PointKey, dict[str, PointRecord]] = {}
    for p in points:
        grouped.setdefault((*p.key, p.point), {})[p.decoder] = p
    return grouped


def _rounded(value: float | None) -> float | None:
    if value is None or not np.isfinite(value):
        return None
    return round(float(value), DIGITS)


def histograms(table: MapTable, bins: int = HISTOGRAM_BINS) -> dict[str, dict[str, Any]]:
    """Each decoder's distances to the reference, binned: ``{label: {"edges",
    "counts", "overflow"}}``, the same edges for every decoder so the plots
    compare. The bins split 0 to the 99th percentile of all the distances
    evenly, and the last one takes everything beyond (``overflow``: its lower
    edge), so one wild map doesn't squeeze the rest into the first bin.
    """
    values = {
        label: np.asarray([d for d in ds if d is not None], dtype=np.float64)
        for label, ds in table.distances.items()
    }
    every = np.concatenate([v for v in values.values()] or [np.zeros(0)])
    top = float(every.max()) if every.size else 1.0
    # "lower": a distance that occurs, so a few maps with one far off cut below it
    cut = float(np.percentile(every, 99, method="lower")) if every.size else top
    overflow = cut if 0 < cut < top else None
    edges = np.linspace(
        0.0, overflow if overflow else max(top, 1e-9), bins + (0 if overflow else 1)
    )
    if overflow:
        edges = np.append(edges, top)
    return {
        label: {
            "edges": edges.tolist(),
            "counts": np.histogram(v, edges)[0].tolist(),
            "overflow": overflow,
        }
        for label, v in values.items()
    }


@dataclass(frozen=True)
class GalleryItem:
    """One map worth looking at, and where it is drawn."""

    file: str
    sample: int
    channel: int
    point: int
    distance: float | None
    decoder: str | None
    status: str
    why: str  # "worst" (largest disagreement) or "flagged"
    image: str | None  # the overlay showing it, relative to the run's folder


def gallery(
    records: Sequence[SourceRecord],
    frame: Frame,
    overlays: Mapping[tuple[str, int, int], str],
    count: int = 12,
    distances: Mapping[PointKey, dict[str, float]] | None = None,
) -> list[GalleryItem]:
    """The ``count`` largest disagreements, then up to ``count`` flagged maps.

    ``overlays`` maps (file, sample, channel) to the image that draws it
    (:func:`overlay_images`).
    """
    worst = [w for w in worst_maps(records, frame, count, distances) if w.distance is not None]
    items = [
        GalleryItem(*_key(w), w.distance, w.decoder, w.status, "worst", _image(overlays, w))
        for w in worst
    ]
    taken = {_key(w) for w in worst}
    for key, status in _flagged(records)[: count + len(taken)]:
        if key not in taken and len(items) < len(worst) + count:
            items.append(GalleryItem(*key, None, None, status, "flagged", overlays.get(key[:3])))
    return items


def _key(w: Any) -> PointKey:
    return (w.file, w.sample, w.channel, w.point)


def _image(overlays: Mapping[tuple[str, int, int], str], w: Any) -> str | None:
    return overlays.get((w.file, w.sample, w.channel))


def _flagged(records: Sequence[SourceRecord]) -> list[tuple[PointKey, str]]:
    """Points whose most serious status (of any decoder) isn't ok, most serious
    first, then in run order."""
    rank = {s: i for i, s in enumerate(STATUSES)}
    flagged = [(k, s) for k, s in point_statuses(records).items() if s != "ok"]
    return sorted(flagged, key=lambda item: rank[item[1]])


def overlay_images(
    records: Sequence[SourceRecord], index: Sequence[Mapping[str, Any]] | None
) -> dict[tuple[str, int, int], str]:
    """Which overlay image draws each map: from ``overlays/index.json``'s
    entries when the run wrote one (``image#N``: the map is the image's N-th
    panel), else each file's overlay (every map of the file, as
    ``coordinates.json`` names it)."""
    found: dict[tuple[str, int, int], str] = {}
    if index:
        for entry in index:
            for m in entry.get("maps", ()):
                key = (m["file"], int(m["sample"]), int(m["channel"]))
                panel = (m.get("panel") or {}).get("index")
                # the panel's number, 1-based as a reader counts, rides on the link
                found.setdefault(key, entry["image"] + ("" if panel is None else f"#{panel + 1}"))
        return found
    for record in records:
        for f in record.files:
            if f.overlay:
                for s in range(f.samples):
                    for c in range(f.channels):
                        found[(f.name, s, c)] = f.overlay
    return found
