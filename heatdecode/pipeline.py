"""Batching and decoding: sources → arrays (background threads) → batches → coordinates.

Files are read by a small thread pool a few files ahead of the decoder
(``prefetch``), maps of the same spatial shape and dtype are stacked into
batches of ``batch_size`` maps (and at most ``batch_bytes``) and decoded on
``device``. Memory is bounded by the
prefetch depth plus one partly filled batch per distinct map shape, not by the
number of files. Results always come back in the pixel frame and in source
order, whatever the batch size or thread timing.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch

from heatdecode.batching import (  # noqa: F401  (BATCH_BYTES, OutOfMemory re-exported)
    BATCH_BYTES,
    Batcher,
    OutOfMemory,
    Work,
)
from heatdecode.frames import Frame
from heatdecode.loading import MAX_MAP_BYTES, HeatmapArray, LoadFailure, Source, load_source
from heatdecode.options import (  # noqa: F401  (the old names are re-exported)
    DecoderRun,
    DecoderSelection,
    DecoderSpec,
    DecodeSettings,
    PeakOptions,
    check_count,
)
from heatdecode.results import (
    ArrayResult,
    DecoderColumns,
    Failure,
    FileRecord,
    MapColumns,
)

# the result types' old names, kept working (they live in heatdecode.results)
DecodedArray = ArrayResult
DecoderOutput = DecoderColumns


def _new_result(
    item: HeatmapArray, runs: Sequence[DecoderSpec], source: str, peaks: bool
) -> ArrayResult:
    n, c, *spatial = item.maps.shape
    record = FileRecord(
        name=item.name,
        source=source,
        layout=item.layout,
        shape=item.shape,
        samples=n,
        channels=c,
        spatial_shape=tuple(spatial),
        warnings=tuple(item.warnings),
    )
    m = n * c
    if peaks:  # points arrive batch by batch, any number per map
        parts: dict[str, list] = {run.label: [] for run in runs}
        return ArrayResult(record, {}, MapColumns.empty(m), peak_parts=parts)
    columns = {run.label: DecoderColumns.empty(m, len(spatial)) for run in runs}
    return ArrayResult(record, columns, MapColumns.empty(m))


@dataclass
class DecodeOutcome:
    """What :func:`decode_sources` did.

    ``results`` and ``failures`` are in source order. ``stopped`` is ``None``
    for a full run, ``"strict"`` when ``strict`` stopped it at a bad file, or
    ``"interrupted"`` after Ctrl-C/SIGTERM, or ``"out-of-memory"`` when the
    device could not hold a batch (``error`` says which): then arrays still
    waiting in a batch are left out of ``results`` and only ``complete`` sources
    (every array decoded or failed) can be trusted to be whole.
    """

    results: list[ArrayResult]
    failures: list[Failure]  # each with its source set
    complete: list[str]  # names of the sources fully handled, in order
    stopped: str | None = None
    error: str | None = None


Decoding = DecodeOutcome  # its old name, kept working


class _Prefetcher:
    """Reads sources in a thread pool, ``prefetch`` ahead of the consumer, and
    yields ``(source, items)`` in source order; :meth:`stop` cancels what is
    queued and makes reads in flight give up at their next piece of data."""

    def __init__(
        self, sources: Sequence[Source], layout: str, max_map_bytes: int, workers: int, ahead: int
    ) -> None:
        self.remaining = iter(sources)
        self.layout, self.max_map_bytes, self.ahead = layout, max_map_bytes, max(1, ahead)
        self.pool = ThreadPoolExecutor(
            max_workers=max(1, workers), thread_name_prefix="heatdecode-load"
        )
        self.queue: deque[tuple[Source, Future]] = deque()
        self.cancel = threading.Event()

    def __iter__(self) -> Iterator[tuple[Source, list[HeatmapArray | LoadFailure]]]:
        for _ in range(self.ahead):
            self._submit_next()
        while self.queue:
            source, future = self.queue.popleft()
            yield source, future.result()
            self._submit_next()  # not reached when the consumer stops (--strict)

    def _submit_next(self) -> None:
        source = next(self.remaining, None)
        if source is not None:
            args = (source, self.layout, self.max_map_bytes, self.cancel)
            self.queue.append((source, self.pool.submit(load_source, *args)))

    def stop(self) -> None:
        self.cancel.set()
        for _, pending in self.queue:
            pending.cancel()
        self.pool.shutdown(wait=True)


@dataclass
class _Tally:
    """What the read loop has seen so far, in source order."""

    works: list[Work] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    loaded: list[str] = field(default_factory=list)

    def outcome(self, stopped: str | None, error: str | None) -> DecodeOutcome:
        waiting = {w.result.source for w in self.works if w.pending}
        done = [w.result for w in self.works if not w.pending]
        complete = [name for name in self.loaded if name not in waiting]
        return DecodeOutcome(done, self.failures, complete, stopped, error)


def decode_sources(
    sources: Sequence[Source],
    settings: DecoderSelection,
    *,
    layout: str = "auto",
    device: torch.device | str = "cpu",
    batch_size: int = 256,
    workers: int = 4,
    prefetch: int = 8,
    strict: bool = False,
    max_map_bytes: int = MAX_MAP_BYTES,
    batch_bytes: int = BATCH_BYTES,
    on_loaded: Callable[[Source, list[HeatmapArray | LoadFailure]], None] | None = None,
    on_complete: Callable[[ArrayResult, np.ndarray], None] | None = None,
    peaks: PeakOptions | None = None,
    frame: Frame | None = None,
) -> DecodeOutcome:
    """Load, batch and decode every source.

    Args:
        on_loaded: called in the calling thread after each source is read, in
            source order (progress bars, messages).
        on_complete: called with each array's result and its ``(N, C, ...)``
            maps as soon as all its maps are decoded (overlays).
        strict: stop reading at the first file that fails.
        max_map_bytes: the most one array may take as stored; a bigger one is
            refused before it is read (see :func:`load_source`).
        batch_bytes: the most bytes of maps in one batch besides ``batch_size``
            maps (a map bigger than that is decoded alone); results don't
            depend on it.
        peaks: peaks mode: every peak of every map, each decoder applied at
            each (results' ``peaks`` instead of ``columns``).
        frame: the output frame: an array it can't describe (a per-axis
            ``--stride`` of 3 values on a 2D map) fails alone, with that reason.

    A KeyboardInterrupt (Ctrl-C, or SIGTERM turned into one) stops the run
    within one batch: reads in flight stop at their next piece of data, queued
    reads are cancelled, and what was decoded so far is returned with
    ``stopped="interrupted"``.

    Example:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> maps = np.zeros((3, 5, 7), np.float32); maps[1, 4, 6] = 1
        >>> np.save(folder / "m.npy", maps)
        >>> done = decode_sources([Source(folder / "m.npy", "m.npy")], DecoderSelection())
        >>> done.results[0].layout, done.results[0].columns["argmax"].coords[1].tolist()
        ('CHW', [6.0, 4.0])
    """
    check_count("batch_size", batch_size)
    check_count("batch_bytes", batch_bytes, " byte")
    completed = on_complete or (lambda result, maps: None)
    batcher = Batcher(settings, torch.device(device), batch_size, completed, batch_bytes, peaks)
    tally = _Tally()
    stopped: str | None = None
    error: str | None = None
    reader = _Prefetcher(sources, layout, max_map_bytes, workers, prefetch)
    try:
        specs = settings.resolved_runs()
        fits = frame.misfit if frame is not None else (lambda dims: None)
        stopped = _read_all(
            reader, batcher, specs, tally, strict, on_loaded, peaks is not None, fits
        )
        if stopped is None:
            batcher.finish()
    except KeyboardInterrupt:
        stopped = "interrupted"
    except OutOfMemory as exc:  # what was decoded is kept, as after an interrupt
        stopped, error = "out-of-memory", str(exc)
    finally:
        reader.stop()  # a read still in flight is not waited for to its end
        if stopped != "strict":  # done, or interrupted: drop the batch in flight
            batcher.close()
    if stopped == "strict":
        try:
            batcher.finish()
        finally:
            batcher.close()
    return tally.outcome(stopped, error)


def _read_all(
    reader: _Prefetcher,
    batcher: Batcher,
    runs: tuple[DecoderSpec, ...],
    tally: _Tally,
    strict: bool,
    on_loaded: Callable[[Source, list[HeatmapArray | LoadFailure]], None] | None,
    peaks: bool,
    misfit: Callable[[int], str | None],
) -> str | None:
    """Hand every array read to the batcher; ``"strict"`` if a bad file stopped it."""
    for source, items in reader:
        items = [_fitted(item, misfit) for item in items]
        if on_loaded is not None:
            on_loaded(source, items)
        for item in items:
            if isinstance(item, LoadFailure):
                tally.failures.append(Failure(item.name, item.reason, item.kind, source.name))
                continue
            tally.works.append(batcher.add(_new_result(item, runs, source.name, peaks), item.maps))
        tally.loaded.append(source.name)
        if strict and any(isinstance(i, LoadFailure) for i in items):
            return "strict"
    return None


def _fitted(
    item: HeatmapArray | LoadFailure, misfit: Callable[[int], str | None]
) -> HeatmapArray | LoadFailure:
    """The array, or its failure when the output frame can't describe its maps."""
    if isinstance(item, LoadFailure):
        return item
    why = misfit(item.maps.ndim - 2)
    return item if why is None else LoadFailure(item.name, why)
