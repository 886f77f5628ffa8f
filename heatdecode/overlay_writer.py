"""Overlays: which maps are drawn (``--overlays``), the drawing in background
threads, and ``overlays/index.json``.

:class:`OverlayWriter` owns its thread pool, the bound on how many arrays its
pending jobs hold, the unique path of each overlay, and what each job gave (a
path, or a :class:`~heatdecode.results.Failure` of kind ``"overlay"``).

Modes (:data:`OVERLAY_MODES`):

- ``all``: every array's overlay, drawn as the array completes, its flagged
  maps (status not ``ok``, most serious first) before the rest;
- ``flagged``: as arrays complete, only their flagged maps; an array with none
  gets no overlay;
- ``worst``: nothing while decoding; after it, the ``count`` maps where the
  decoders disagree most over the whole run (resumed part included), topped up
  with flagged maps (:func:`heatdecode.comparison.worst_maps`); each array
  holding some is read again with the run's loader and drawn with only those
  maps, worst first (:mod:`heatdecode.overlay_worst`);
- ``none``: no overlays (no writer at all).

``overlays/index.json`` (written atomically by :meth:`OverlayWriter.finish`,
also after an interrupted run, whose resumed run carries its entries over)::

    {"schema": "heatdecode-overlays/1", "mode": "worst", "count": 24,
     "complete": true,
     "images": [                          # in drawn order (worst: worst first;
       {"image": "overlays/a.npy.png",    #   else the run's file order); path
        "file": "a.npy",                  #   relative to --out, posix
        "maps": [                         # the panels, in drawn order
          {"file": "a.npy", "sample": 0, "channel": 3,
           "point": 0,                    # peak rank; null: every peak of the map
           "status": "multimodal",        # most serious status of any decoder
           "distance": 1.25,              # worst: px from argmax, else null
           "decoder": "softargmax",       # worst: the decoder that far, else null
           "panel": {"index": 0, "row": 0, "column": 0}}]}]}

``count`` is null outside ``worst``. In peaks mode a ``worst`` panel can be
listed once per peak chosen (same ``panel``). Maps past the
:data:`~heatdecode.overlays.MAX_PANELS` of a picture are not drawn, so not listed.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from threading import BoundedSemaphore
from typing import Any

import numpy as np

from heatdecode.atomic import atomic_write
from heatdecode.overlays import MAX_PANELS, grid_columns, overlay_path, render_overlay
from heatdecode.results import OVERLAY_FAILED, ArrayResult, Failure, PeakColumns
from heatdecode.status import STATUSES

#: ``--overlays``: which maps get drawn (see the module docstring)
OVERLAY_MODES = ("all", "flagged", "worst", "none")
DEFAULT_OVERLAYS = "worst"
DEFAULT_OVERLAY_COUNT = 24
INDEX_NAME = "overlays/index.json"
INDEX_SCHEMA = "heatdecode-overlays/1"


def overlay_mode(overlays: str | bool) -> str:
    """``RunConfig.overlays`` as a mode: ``True`` (the old on/off switch) is
    ``all``, ``False`` is ``none``.

    Raises:
        OptionError: not one of :data:`OVERLAY_MODES` (a ValueError).
    """
    from heatdecode.options import OptionError

    if isinstance(overlays, bool):
        return "all" if overlays else "none"
    if overlays not in OVERLAY_MODES:
        choices = ", ".join(OVERLAY_MODES)
        raise OptionError("overlays", f"must be one of {choices}, got {overlays!r}")
    return overlays


class OverlayWriter:
    """Draws overlay PNGs into ``out_dir/overlays`` and lists them in the index.

    :meth:`submit` queues an array (it blocks while ``2 × workers`` jobs are
    pending, so finished arrays don't pile up in memory); :meth:`close` waits
    for every job; :meth:`finish` draws ``worst``'s maps once the run's records
    are known, and writes the index; then :meth:`paths` and :meth:`failures`
    say what each gave. ``taken`` are overlay paths (relative to ``out_dir``)
    already used by the resumed part of the run.
    """

    def __init__(
        self,
        out_dir: Path,
        runs: Sequence[Any],
        workers: int,
        taken: Iterable[str] = (),
        mode: str = "all",
        count: int = DEFAULT_OVERLAY_COUNT,
        spacing: Sequence[float] | None = None,
    ) -> None:
        if mode not in OVERLAY_MODES or mode == "none":
            raise ValueError(f"overlay mode must be all, flagged or worst, got {mode!r}")
        self.out_dir = out_dir
        self.mode, self.count, self.spacing = mode, count, spacing
        self.workers = max(1, workers)
        self.labels = [run.label for run in runs]
        self.skipped: set[str] = set()  # arrays with nothing to draw now (no flagged map)
        self.legend = {run.label: legend(run) for run in runs}
        taken = set(taken) if mode != "worst" else set()  # worst redraws everything
        self.carried = _carried(out_dir, taken)
        self.places = _OverlayPlaces(out_dir, taken)
        self.slots = BoundedSemaphore(2 * self.workers)
        self.pool = ThreadPoolExecutor(self.workers, thread_name_prefix="heatdecode-draw")
        self.jobs: list[tuple[str, str, Future]] = []  # (array name, source, job)

    def submit(self, result: ArrayResult, maps: np.ndarray) -> None:
        order = panel_order(result)
        if self.mode == "flagged":
            order = order[map_flags(result)[order] < len(STATUSES) - 1]
        if self.mode == "worst" or not len(order):
            self.skipped.add(result.name)  # worst: drawn by finish, from the records
            return
        path = self.places.claim(result.name)
        self.slots.acquire()  # bounds the arrays held by pending jobs
        job = (self.out_dir, result, maps, self.legend, path, order, self.spacing)
        future = self.pool.submit(_draw, *job)
        future.add_done_callback(lambda _: self.slots.release())
        self.jobs.append((result.name, result.source, future))

    def close(self) -> None:
        """Wait until every overlay submitted is written or failed."""
        self.pool.shutdown(wait=True)

    def finish(self, report: Any, sources: Sequence[Any], config: Any) -> None:
        """After the run's records are built: ``worst``'s overlays drawn (not
        after an interrupted run: the resumed one draws them) and their paths
        and failures put in ``report``; then the index written."""
        from heatdecode.overlay_worst import draw_worst

        partial = report.stopped in ("interrupted", "out-of-memory")
        if self.mode == "worst" and not partial:
            with ThreadPoolExecutor(self.workers, thread_name_prefix="heatdecode-draw") as pool:
                self.jobs += draw_worst(self, pool, report, sources, config)
            _put_in_report(report, self.paths(), self.failures())
        order = {f.name: i for i, r in enumerate(report.records) for f in r.files}
        images = [*self.carried, *(f.result()[1] for _, _, f in self.jobs if not f.exception())]
        if self.mode != "worst":
            images.sort(key=lambda entry: order.get(entry["file"], len(order)))
        index = {"schema": INDEX_SCHEMA, "mode": self.mode}
        index |= {"count": self.count if self.mode == "worst" else None, "complete": not partial}
        index["images"] = images
        text = json.dumps(index, indent=1, allow_nan=False)
        try:
            atomic_write(self.out_dir / INDEX_NAME, lambda fh: fh.write(text), root=self.out_dir)
        except OSError as exc:  # a full disk, say: the coordinates are still written
            reason = f"{OVERLAY_FAILED} ({exc.strerror or exc})"
            report.overlay_errors.append(Failure(INDEX_NAME, reason, "overlay", INDEX_NAME))

    def queued(self) -> set[str]:
        """Names of the arrays handed over: drawn, or with nothing to draw."""
        return {name for name, _, _ in self.jobs} | self.skipped

    def paths(self) -> dict[str, str]:
        """Each written overlay's path relative to ``out_dir`` (posix), by array name."""
        written = {}
        for name, _, future in self.jobs:
            if future.exception() is None:
                written[name] = future.result()[0].relative_to(self.out_dir).as_posix()
        return written

    def failures(self) -> list[Failure]:
        """An ``"overlay"`` failure for each overlay not written (a full disk, say):
        the coordinates are kept."""
        failed = []
        for name, source, future in self.jobs:
            exc = future.exception()
            if exc is not None:
                failed.append(Failure(name, f"{OVERLAY_FAILED} ({exc})", "overlay", source))
        return failed


def _put_in_report(report: Any, paths: dict[str, str], failures: list[Failure]) -> None:
    """``worst``'s overlays, drawn after the records were built, put in them."""
    from dataclasses import replace

    by_source: dict[str, list[Failure]] = {}
    for failure in failures:
        by_source.setdefault(failure.source or failure.name, []).append(failure)
    for record in report.records:
        record.files = [replace(f, overlay=paths.get(f.name, f.overlay)) for f in record.files]
        record.failures.extend(by_source.get(record.name, []))
    report.overlay_errors.extend(failures)


def _carried(out_dir: Path, taken: set[str]) -> list[dict[str, Any]]:
    """The index entries of the resumed part's images (``taken``), from the index
    the interrupted run left; none if it left none (or it can't be read)."""
    if not taken:
        return []
    try:
        index = json.loads((out_dir / INDEX_NAME).read_text(encoding="utf-8"))
        images = index["images"]
        return [e for e in images if isinstance(e, dict) and e.get("image") in taken]
    except (OSError, ValueError, KeyError, TypeError):
        return []


def index_entry(
    out_dir: Path, path: Path, file: str, maps: list[dict[str, Any]], volumes: bool
) -> dict[str, Any]:
    """One image's entry in the index; each map dict gets its ``panel`` (maps
    that share a panel, one per peak, come one after another)."""
    panels: list[tuple] = []
    for m in maps:
        key = (m["sample"], m["channel"])
        if not panels or panels[-1] != key:
            panels.append(key)
        m["panel"] = len(panels) - 1
    shown = [m for m in maps if m["panel"] < MAX_PANELS]
    cols = grid_columns(min(len(panels), MAX_PANELS), volumes)
    for m in shown:
        i = m["panel"]
        m["panel"] = {"index": i, "row": i // cols, "column": i % cols}
    return {"image": path.relative_to(out_dir).as_posix(), "file": file, "maps": shown}


def legend(run: Any) -> str:
    """A decoder's legend entry: its label and the options it ran with."""
    options = run.options()
    parts = []
    if "beta" in options:
        parts += [f"beta={options['beta']:g}", options["normalize"]]
    if "radius" in options:
        parts.append(f"r={options['radius']}")
    if "sigma" in options:
        sigma = options["sigma"]
        parts.append("sigma=auto" if sigma is None else f"sigma={sigma:g}")
    return f"{run.label} ({', '.join(parts)})" if parts else run.label


def _draw(
    out_dir: Path,
    result: ArrayResult,
    maps: np.ndarray,
    legend: dict[str, str],
    path: Path,
    order: np.ndarray,
    spacing: Sequence[float] | None = None,
) -> tuple[Path, dict[str, Any]]:
    flat_maps = maps.reshape(result.maps, *result.spatial_shape)[order]
    points = {}
    for name, out in result.columns.items():
        coords = out.coords.copy()
        coords[~result.finite] = np.nan  # no marker where the map couldn't be decoded
        points[name] = coords
    for name, found in (result.peaks or {}).items():
        points[name] = _padded(found, result.maps, result.spatial_dims)
    points = {name: p[order] for name, p in points.items()}
    labels = [_caption(result, int(m)) for m in order]
    title = f"{result.name}  [{result.layout}]"
    image = render_overlay(flat_maps, points, title, labels, legend, spacing)
    save_png(out_dir, path, image)
    flags = map_flags(result)
    point = 0 if result.peaks is None else None  # peaks: every peak of the map
    maps_ = [
        {"file": result.name, "sample": int(m) // result.channels}
        | {"channel": int(m) % result.channels, "point": point, "status": STATUSES[flags[m]]}
        | {"distance": None, "decoder": None}
        for m in order
    ]
    return path, index_entry(out_dir, path, result.name, maps_, result.spatial_dims == 3)


def save_png(out_dir: Path, path: Path, image: Any) -> None:
    # root: every folder under out_dir is opened without following symlinks
    save = lambda fh: image.save(fh, format="PNG", compress_level=1)  # noqa: E731
    atomic_write(path, save, binary=True, root=out_dir)


def map_flags(result: ArrayResult) -> np.ndarray:
    """``(M,)`` the rank of each map's most serious status (0 the most serious;
    ``len(STATUSES) - 1`` for ``ok``), over every decoder."""
    ok = len(STATUSES) - 1
    if result.peaks is not None:  # peaks mode: the map's own flags and its points'
        rank = np.full(result.maps, ok)
        rank[result.per_map.flat] = STATUSES.index("flat")
        rank[~result.per_map.finite] = STATUSES.index("nonfinite")
        for found in result.peaks.values():
            odd = found.map_index[found.border | found.skipped]
            rank[odd] = np.minimum(rank[odd], STATUSES.index("border"))
        return rank
    return np.asarray(
        [
            min(STATUSES.index(result.status(m, x)) for x in result.columns)
            for m in range(result.maps)
        ]
    )


def panel_order(result: ArrayResult) -> np.ndarray:
    """The maps in the order their panels are drawn: flagged first (most serious
    status first), then the rest, each in map order: the first 48 panels are the
    ones to look at."""
    return np.argsort(map_flags(result), kind="stable")


def _caption(result: ArrayResult, m: int) -> str:
    """A panel's title: ``n``/``c``, the map's score, and its most serious
    status when it isn't ``ok`` (single-point runs)."""
    n, c = divmod(m, result.channels)
    where = f"c{c}" if result.samples == 1 else f"n{n} c{c}"
    maximum = result.per_map.maximum[m]
    first = next(iter(result.columns.values()), None)
    score = first.score[m] if first is not None else maximum
    text = f"{where} {score:.3g}" if np.isfinite(score) else where
    statuses = [result.status(m, label) for label in result.columns]
    flagged = min(statuses, key=STATUSES.index, default="ok")
    return text if flagged == "ok" else f"{text} {flagged}"


def _padded(found: PeakColumns, maps: int, dims: int) -> np.ndarray:
    """``(M, K, d)`` points of each map, NaN where a map has fewer than K."""
    k = int(found.rank.max()) + 1 if len(found.rank) else 1
    padded = np.full((maps, k, dims), np.nan)
    padded[found.map_index, found.rank] = found.coords
    return padded


class _OverlayPlaces:
    """One overlay path per array name, unique within the run: names that map
    to the same file (``x.npy`` and ``../x.npy``, ``a:b`` and ``a__b``) get a
    hash of the name added. Paths the resumed part recorded are taken first."""

    def __init__(self, out_dir: Path, taken: Iterable[str]) -> None:
        self.out_dir = out_dir
        self.taken = set(taken)

    def claim(self, name: str) -> Path:
        path = overlay_path(self.out_dir, name)
        if self._key(path) in self.taken:
            digest = hashlib.sha1(os.fsencode(name)).hexdigest()[:8]
            path = overlay_path(self.out_dir, f"{name}-{digest}")
        self.taken.add(self._key(path))
        return path

    def _key(self, path: Path) -> str:
        return path.relative_to(self.out_dir).as_posix()
