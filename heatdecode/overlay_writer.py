"""Overlays drawn in background threads while the run goes on decoding.

:class:`OverlayWriter` owns its thread pool, the bound on how many arrays its
pending jobs hold, the unique path of each overlay, and what each job gave (a
path, or a :class:`~heatdecode.results.Failure` of kind ``"overlay"``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from threading import BoundedSemaphore
from typing import Any

import numpy as np

from heatdecode.atomic import atomic_write
from heatdecode.overlays import overlay_path, render_overlay
from heatdecode.results import OVERLAY_FAILED, ArrayResult, Failure, PeakColumns
from heatdecode.status import STATUSES


class OverlayWriter:
    """Draws one overlay PNG per array into ``out_dir/overlays``.

    :meth:`submit` queues an array (it blocks while ``2 × workers`` jobs are
    pending, so finished arrays don't pile up in memory); :meth:`close` waits
    for every job; then :meth:`paths` and :meth:`failures` say what each gave.
    ``taken`` are overlay paths (relative to ``out_dir``) already used by the
    resumed part of the run.
    """

    def __init__(
        self,
        out_dir: Path,
        runs: Sequence[Any],
        workers: int,
        taken: Iterable[str] = (),
        maps: str = "all",
    ) -> None:
        if maps not in OVERLAY_MAPS:
            raise ValueError(f"overlay maps must be one of {OVERLAY_MAPS}, got {maps!r}")
        self.out_dir = out_dir
        self.maps = maps
        self.skipped: set[str] = set()  # arrays with nothing to draw (no flagged map)
        self.legend = {run.label: legend(run) for run in runs}
        self.places = _OverlayPlaces(out_dir, taken)
        self.slots = BoundedSemaphore(2 * max(1, workers))
        self.pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="heatdecode-draw")
        self.jobs: list[tuple[ArrayResult, Future]] = []

    def submit(self, result: ArrayResult, maps: np.ndarray) -> None:
        order = panel_order(result)
        if self.maps == "flagged" and not _flagged(result, order[0]):
            self.skipped.add(result.name)
            return
        path = self.places.claim(result.name)
        self.slots.acquire()  # bounds the arrays held by pending jobs
        job = (self.out_dir, result, maps, self.legend, path, order)
        future = self.pool.submit(_draw, *job)
        future.add_done_callback(lambda _: self.slots.release())
        self.jobs.append((result, future))

    def close(self) -> None:
        """Wait until every overlay submitted is written or failed."""
        self.pool.shutdown(wait=True)

    def queued(self) -> set[str]:
        """Names of the arrays handed over: drawn, or with nothing to draw."""
        return {result.name for result, _ in self.jobs} | self.skipped

    def paths(self) -> dict[str, str]:
        """Each written overlay's path relative to ``out_dir`` (posix), by array name."""
        written = {}
        for result, future in self.jobs:
            if future.exception() is None:
                written[result.name] = future.result().relative_to(self.out_dir).as_posix()
        return written

    def failures(self) -> list[Failure]:
        """An ``"overlay"`` failure for each overlay not written (a full disk, say):
        the coordinates are kept."""
        failed = []
        for result, future in self.jobs:
            exc = future.exception()
            if exc is not None:
                reason = f"{OVERLAY_FAILED} ({exc})"
                failed.append(Failure(result.name, reason, "overlay", result.source))
        return failed


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
) -> Path:
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
    image = render_overlay(flat_maps, points, f"{result.name}  [{result.layout}]", labels, legend)
    # root: every folder under out_dir is opened without following symlinks
    save = lambda fh: image.save(fh, format="PNG", compress_level=1)  # noqa: E731
    atomic_write(path, save, binary=True, root=out_dir)
    return path


#: which maps get overlays: every map, or only files with a flagged map
OVERLAY_MAPS = ("all", "flagged")


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


def _flagged(result: ArrayResult, first: int) -> bool:
    return bool(map_flags(result)[first] < len(STATUSES) - 1)


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
