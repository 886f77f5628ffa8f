"""Where and how much the decoders disagree, counted from a run's records.

Everything here reads :class:`~heatdecode.results.SourceRecord` s (a finished
run's, old and new parts alike) and gives plain numbers: each decoder's
distance to argmax per map (in heatmap pixels: the output frame's scale is
undone), its summary statistics, the status counts, a per-channel table and
the maps where the decoders disagree most.

Pure: numpy and the core modules only; no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from heatdecode.frames import Frame, apply_frame
from heatdecode.results import PointRecord, SourceRecord
from heatdecode.status import STATUSES

#: (file, sample, channel, point): one point of one map
PointKey = tuple[str, int, int, int]
#: at most this many channels get a per-channel table (keypoints, landmarks)
MAX_CHANNEL_ROWS = 40
WORST_MAPS = 10


def map_distances(
    records: Sequence[SourceRecord], frame: Frame
) -> dict[PointKey, dict[str, float]]:
    """Each decoder's distance to argmax at every decoded point, in heatmap pixels.

    Keyed by (file, sample, channel, point): in peaks mode every decoder refines
    the same integer peaks, so the same rank is the same peak. Points without
    an argmax (it didn't run, or the map wasn't decoded) are left out.
    """
    out: dict[PointKey, dict[str, float]] = {}
    for record in records:
        scale = {f.name: pixel_scale(f.spatial_shape, frame) for f in record.files}
        maps: dict[PointKey, dict[str, np.ndarray]] = {}
        for p in record.points:
            if p.coords is not None and p.file in scale:
                maps.setdefault((*p.key, p.point), {})[p.decoder] = np.asarray(p.coords)
        for key, by_label in maps.items():
            reference = by_label.get("argmax")
            if reference is None:
                continue
            out[key] = {
                label: scaled_distance(xyz, reference, scale[key[0]])
                for label, xyz in by_label.items()
                if label != "argmax"
            }
    return out


def scaled_distance(a: Sequence[float], b: Sequence[float], scale: np.ndarray) -> float:
    """The distance between two points of the output frame, in heatmap pixels
    (``scale``: :func:`pixel_scale` of the map)."""
    delta = (np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)) * scale[: len(a)]
    return float(np.linalg.norm(delta))


def distances(records: Sequence[SourceRecord], frame: Frame) -> dict[str, np.ndarray]:
    """Each decoder's distances to argmax over every decoded point, in pixels."""
    parts: dict[str, list[float]] = {}
    for by_label in map_distances(records, frame).values():
        for label, d in by_label.items():
            parts.setdefault(label, []).append(d)
    return {label: np.asarray(d) for label, d in parts.items()}


def distance_stats(values: np.ndarray) -> dict[str, float]:
    """Mean, 95th percentile (numpy's linear interpolation) and max."""
    return {
        "mean": float(values.mean()),
        "p95": float(np.percentile(values, 95)),
        "max": float(values.max()),
    }


def status_counts(
    points: Sequence[PointRecord], labels: Sequence[str]
) -> dict[str, dict[str, int]]:
    """How many rows of each decoder have each status, in the status order;
    statuses no row has are left out."""
    counts = {label: dict.fromkeys(STATUSES, 0) for label in labels}
    for p in points:
        if p.decoder in counts:
            counts[p.decoder][p.status] = counts[p.decoder].get(p.status, 0) + 1
    return {label: {s: n for s, n in c.items() if n} for label, c in counts.items()}


def per_channel(
    records: Sequence[SourceRecord],
    frame: Frame,
    distances: Mapping[PointKey, dict[str, float]] | None = None,
) -> dict[int, dict[str, float]] | None:
    """The mean distance to argmax of each decoder, channel by channel (keypoint
    by keypoint), over every file; ``None`` beyond :data:`MAX_CHANNEL_ROWS`
    channels or when argmax didn't run. ``distances``: :func:`map_distances`'s,
    when already computed."""
    if distances is None:
        distances = map_distances(records, frame)
    sums: dict[int, dict[str, list[float]]] = {}
    for (_, _, channel, _), by_label in distances.items():
        for label, d in by_label.items():
            sums.setdefault(channel, {}).setdefault(label, []).append(d)
    if not sums or len(sums) > MAX_CHANNEL_ROWS:
        return None
    return {
        c: {label: float(np.mean(v)) for label, v in by_label.items()}
        for c, by_label in sorted(sums.items())
    }


@dataclass(frozen=True)
class WorstMap:
    """A map where the decoders disagree most (or that is flagged)."""

    file: str
    sample: int
    channel: int
    point: int
    distance: float | None  # the largest distance of any decoder to argmax, in px
    decoder: str | None  # the decoder that far from argmax
    status: str  # the most serious status of any decoder's row


def worst_maps(
    records: Sequence[SourceRecord],
    frame: Frame,
    count: int = WORST_MAPS,
    distances: Mapping[PointKey, dict[str, float]] | None = None,
) -> list[WorstMap]:
    """The ``count`` maps with the largest disagreement with argmax, then, to
    fill up, maps whose rows are flagged (most serious status first).
    ``distances``: :func:`map_distances`'s, when already computed."""
    if distances is None:
        distances = map_distances(records, frame)
    rank = {s: i for i, s in enumerate(STATUSES)}
    status = point_statuses(records)
    found = []
    for key, by_label in distances.items():
        if by_label:
            label, d = max(by_label.items(), key=lambda item: item[1])
            found.append(WorstMap(*key, d, label, status.get(key, "ok")))
    found.sort(key=lambda w: (-(w.distance or 0.0), rank[w.status]))
    worst = found[:count]
    taken = {(w.file, w.sample, w.channel, w.point) for w in worst}
    flagged = sorted(
        (k for k, s in status.items() if s != "ok" and k not in taken),
        key=lambda k: rank[status[k]],
    )
    worst += [WorstMap(*k, None, None, status[k]) for k in flagged[: count - len(worst)]]
    return worst


def point_statuses(records: Sequence[SourceRecord]) -> dict[PointKey, str]:
    """Each point's most serious status over the decoders (the status order), in run order."""
    rank = {s: i for i, s in enumerate(STATUSES)}
    status: dict[PointKey, str] = {}
    for record in records:
        for p in record.points:
            key = (*p.key, p.point)
            if key not in status or rank[p.status] < rank[status[key]]:
                status[key] = p.status
    return status


def point_distance(
    a: PointRecord | None, b: PointRecord | None, scale: np.ndarray | None
) -> float | None:
    """Two decoders' distance at one point, in heatmap pixels (``scale``:
    :func:`pixel_scale`); None where either has no coordinates."""
    if a is None or b is None or a.coords is None or b.coords is None or scale is None:
        return None
    return scaled_distance(a.coords, b.coords, scale)


def pixel_scale(spatial_shape: Sequence[int], frame: Frame) -> np.ndarray:
    """Heatmap pixels per output unit on each axis (x, y[, z]); 0 where the axis
    has no extent in the frame (a 1-pixel axis in normalized coordinates)."""
    d = len(spatial_shape)
    ends = apply_frame(np.vstack([np.zeros(d), np.eye(d)]), tuple(spatial_shape), frame)
    step = np.abs(np.diag(ends[1:] - ends[0]))
    with np.errstate(divide="ignore", invalid="ignore"):
        inverse = np.where((step > 0) & np.isfinite(step), 1.0 / step, 0.0)
    return inverse
