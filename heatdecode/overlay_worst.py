"""``--overlays worst``: the run's worst maps, drawn once decoding is over.

The ranking needs the whole run (:func:`heatdecode.comparison.worst_maps` over
every record, the part taken from an interrupted run included), so nothing is
drawn while decoding and no map is held for it. Afterwards each array holding
a chosen map is read again with the run's own loader
(:func:`heatdecode.loading.load_source`, same layout and size limit), and
drawn with only its chosen maps, worst first, from the points in the records
(the output frame undone back to heatmap pixels). At most ``count`` maps, so
at most ``count`` files are read again, whatever the size of the run.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any

import numpy as np

from heatdecode.comparison import WorstMap, worst_maps
from heatdecode.frames import Frame, apply_frame
from heatdecode.loading import HeatmapArray, load_source
from heatdecode.overlay_writer import index_entry, save_png
from heatdecode.overlays import render_overlay
from heatdecode.results import FileRecord, PointRecord
from heatdecode.status import STATUSES


def draw_worst(
    writer: Any, pool: Executor, report: Any, sources: Sequence[Any], config: Any
) -> list[tuple[str, str, Future]]:
    """Queue one job per array holding a chosen map, in rank order: (array
    name, source name, job giving ``(path, index entry)``)."""
    chosen = worst_maps(report.records, config.frame, writer.count)
    by_file: dict[str, list[WorstMap]] = {}
    for worst in chosen:
        by_file.setdefault(worst.file, []).append(worst)
    files = {f.name: (f, r) for r in report.records for f in r.files}
    by_name = {s.name: s for s in sources}
    jobs = []
    for name, picked in by_file.items():
        if name not in files or files[name][0].source not in by_name:
            continue
        record, source_record = files[name]
        points = [p for p in source_record.points if p.file == name]
        path = writer.places.claim(name)
        source = by_name[record.source]
        future = pool.submit(_draw_picked, writer, path, record, points, picked, source, config)
        jobs.append((name, record.source, future))
    return jobs


def _draw_picked(
    writer: Any,
    path: Path,
    record: FileRecord,
    points: list[PointRecord],
    picked: list[WorstMap],
    source: Any,
    config: Any,
) -> tuple[Path, dict[str, Any]]:
    maps = _reload(source, record, config).reshape(record.maps, *record.spatial_shape)
    panels = list(dict.fromkeys((w.sample, w.channel) for w in picked))
    picked = sorted(picked, key=lambda w: panels.index((w.sample, w.channel)))
    shown = maps[[s * record.channels + c for s, c in panels]]
    by_map: dict[tuple[int, int], list[PointRecord]] = {}
    for p in points:
        by_map.setdefault((p.sample, p.channel), []).append(p)
    coords = _pixel_points(by_map, panels, record, config.frame, writer.labels)
    first = {}
    for w in picked:
        first.setdefault((w.sample, w.channel), w)
    captions = [_caption(record, key, by_map.get(key, []), first[key]) for key in panels]
    title = f"{record.name}  [{record.layout}]"
    image = render_overlay(shown, coords, title, captions, writer.legend, config.frame.spacing)
    save_png(writer.out_dir, path, image)
    entries = [
        {"file": w.file, "sample": w.sample, "channel": w.channel, "point": w.point}
        | {"status": w.status, "distance": _finite(w.distance), "decoder": w.decoder}
        for w in picked
    ]
    return path, index_entry(writer.out_dir, path, record.name, entries, shown.ndim == 4)


def _reload(source: Any, record: FileRecord, config: Any) -> np.ndarray:
    """The array's maps, read again as the run read them.

    Raises:
        ValueError: it can't be read now, or it changed since it was decoded.
    """
    for item in load_source(source, config.layout, config.max_map_bytes):
        if item.name != record.name:
            continue
        if not isinstance(item, HeatmapArray):
            raise ValueError(f"could not read it again: {item.reason}")
        if item.shape != tuple(record.shape) or item.maps.shape[2:] != tuple(record.spatial_shape):
            raise ValueError("it changed since it was decoded")
        return item.maps
    raise ValueError("it is no longer in its file")


def _pixel_points(
    by_map: dict[tuple[int, int], list[PointRecord]],
    panels: list[tuple[int, int]],
    record: FileRecord,
    frame: Frame,
    labels: Sequence[str],
) -> dict[str, np.ndarray]:
    """Each decoder's ``(P, K, d)`` points of the panels, in heatmap pixels
    (NaN: no point), from the records' output-frame coordinates."""
    d = len(record.spatial_shape)
    ends = apply_frame(np.vstack([np.zeros(d), np.eye(d)]), record.spatial_shape, frame)
    origin, step = ends[0], np.diag(ends[1:] - ends[0])
    k = 1 + max((p.point for key in panels for p in by_map.get(key, [])), default=0)
    out = {label: np.full((len(panels), k, d), np.nan) for label in labels}
    for i, key in enumerate(panels):
        for p in by_map.get(key, []):
            if p.decoder in out and p.coords is not None:
                xyz = np.asarray(p.coords, dtype=np.float64)
                with np.errstate(divide="ignore", invalid="ignore"):
                    pixel = np.where(step != 0, (xyz - origin) / step, 0.0)
                out[p.decoder][i, p.point] = pixel
    return out


def _caption(
    record: FileRecord, key: tuple[int, int], points: list[PointRecord], worst: WorstMap
) -> str:
    """A panel's title: ``n``/``c``, the score, the distance to argmax and the
    map's most serious status when it isn't ``ok``."""
    sample, channel = key
    text = f"c{channel}" if record.samples == 1 else f"n{sample} c{channel}"
    score = next((p.score for p in points if p.point == 0 and p.score is not None), None)
    if score is not None and np.isfinite(score):
        text += f" {score:.3g}"
    if worst.distance is not None:
        text += f" d={worst.distance:.2g}px"
    status = min((p.status for p in points), key=STATUSES.index, default="ok")
    return text if status == "ok" else f"{text} {status}"


def _finite(value: float | None) -> float | None:
    return value if value is not None and np.isfinite(value) else None
