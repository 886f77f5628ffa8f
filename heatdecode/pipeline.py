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

import math
import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from heatdecode.family import decode
from heatdecode.loading import MAX_MAP_BYTES, HeatmapArray, LoadFailure, Source, load_source
from heatdecode.options import check_count, resolve_options
from heatdecode.status import low_contrast, multimodal

#: The default byte limit of a batch (of the maps as loaded): 256 maps of
#: 64 MB would otherwise be 16 GB on the device, with its temporaries on top.
BATCH_BYTES = 256 * 2**20


@dataclass(frozen=True)
class DecoderRun:
    """One decoder with its options; ``label`` names its rows in the outputs.

    An option left at ``None`` takes the decoder's own default.
    """

    label: str
    decoder: str
    beta: float | None = None
    normalize: str | None = None
    radius: int | None = None
    sigma: float | None = None

    def options(self) -> dict[str, Any]:
        """The options this run really uses (defaults filled in), by name."""
        return resolve_options(
            self.decoder,
            beta=self.beta,
            normalize=self.normalize,
            radius=self.radius,
            sigma=self.sigma,
        )


@dataclass(frozen=True)
class DecodeSettings:
    """Which decoders to run and how (the CLI's ``--decoder/--beta/--normalize/...``).

    An option left at ``None`` falls back to ``defaults[decoder]`` and then to
    the decoder's own default, so one shared ``--beta`` can't silently detune a
    decoder that wants another (local soft-argmax's best β is not global
    soft-argmax's). ``runs``, when given, replaces the list built from the
    other fields (a β sweep runs one decoder under several settings in one pass).
    """

    decoders: tuple[str, ...] = ("argmax", "softargmax")
    beta: float | None = None
    normalize: str | None = None
    radius: int | None = None
    sigma: float | None = None
    defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    runs: tuple[DecoderRun, ...] | None = None

    def resolved_runs(self) -> tuple[DecoderRun, ...]:
        if self.runs is not None:
            return self.runs
        given = {"beta": self.beta, "normalize": self.normalize}
        given |= {"radius": self.radius, "sigma": self.sigma}
        runs = []
        for name in self.decoders:
            options = dict(self.defaults.get(name, {}))
            options.update({k: v for k, v in given.items() if v is not None})
            runs.append(DecoderRun(name, name, **options))
        return tuple(runs)


@dataclass
class DecoderOutput:
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


@dataclass
class DecodedArray:
    """Everything known about one decoded array (a file, or one ``.npz`` member)."""

    name: str
    source: str  # the file it came from (differs from name for .npz members)
    layout: str
    shape: tuple[int, ...]
    samples: int
    channels: int
    spatial_shape: tuple[int, ...]
    warnings: list[str]
    outputs: dict[str, DecoderOutput]
    flat: np.ndarray
    finite: np.ndarray
    multimodal: np.ndarray
    pending: int = field(default=0, repr=False)

    @property
    def maps(self) -> int:
        return self.samples * self.channels

    @property
    def spatial_dims(self) -> int:
        return len(self.spatial_shape)


def _new_result(item: HeatmapArray, runs: Sequence[DecoderRun], source: str) -> DecodedArray:
    n, c, *spatial = item.maps.shape
    m, d = n * c, len(spatial)
    outputs = {
        run.label: DecoderOutput(
            coords=np.zeros((m, d)),
            score=np.zeros(m),
            spread=np.full(m, np.nan),
            border=np.zeros(m, dtype=bool),
            skipped=np.zeros(m, dtype=bool),
            low_contrast=np.zeros(m, dtype=bool),
        )
        for run in runs
    }
    return DecodedArray(
        name=item.name,
        source=source,
        layout=item.layout,
        shape=item.shape,
        samples=n,
        channels=c,
        spatial_shape=tuple(spatial),
        warnings=list(item.warnings),
        outputs=outputs,
        flat=np.zeros(m, dtype=bool),
        finite=np.ones(m, dtype=bool),
        multimodal=np.zeros(m, dtype=bool),
        pending=m,
    )


@dataclass
class _Piece:
    result: DecodedArray
    maps: np.ndarray  # (k, *spatial), a view into the loaded array
    start: int  # index of maps[0] within result


class _Batcher:
    """Stacks maps of equal shape and dtype into batches and decodes them.

    A batch holds at most ``batch_size`` maps and at most ``batch_bytes`` of
    them (as loaded; a single map bigger than that is a batch of its own), so
    memory follows the bytes, not just the count, of what is batched.

    Each batch is decoded in one background thread (torch releases the GIL)
    while the calling thread goes on reading files into the next batch. At most
    one batch is being decoded at a time; its results are copied into the
    arrays, and ``on_complete`` called, in the calling thread, in batch order.
    """

    def __init__(
        self,
        settings: DecodeSettings,
        device: torch.device,
        batch_size: int,
        on_complete: Callable[[DecodedArray, np.ndarray], None],
        batch_bytes: int = BATCH_BYTES,
    ) -> None:
        self.runs = settings.resolved_runs()
        self.device = device
        self.batch_size = batch_size
        self.batch_bytes = batch_bytes
        self.limits: dict[tuple, int] = {}  # maps per batch, for each bucket
        self.on_complete = on_complete
        self.buckets: dict[tuple, deque[_Piece]] = {}
        self.counts: dict[tuple, int] = {}
        self.arrays: dict[int, np.ndarray] = {}  # id(result) -> its maps, until complete
        self.executor: ThreadPoolExecutor | None = None
        self.pending: tuple[Future, list[_Piece]] | None = None  # the batch being decoded
        self.scratch: np.ndarray | None = None  # bytes reused for each batch (decode thread)

    def add(self, result: DecodedArray, maps: np.ndarray) -> None:
        flat = maps.reshape(result.maps, *result.spatial_shape)
        key = (result.spatial_shape, flat.dtype.str)
        self.arrays[id(result)] = maps
        self.buckets.setdefault(key, deque()).append(_Piece(result, flat, 0))
        self.counts[key] = self.counts.get(key, 0) + result.maps
        if key not in self.limits:
            per_map = math.prod(result.spatial_shape) * flat.dtype.itemsize
            self.limits[key] = max(1, min(self.batch_size, self.batch_bytes // max(1, per_map)))
        while self.counts[key] >= self.limits[key]:
            self._run(key, self.limits[key])

    def finish(self) -> None:
        for key in list(self.buckets):
            while self.counts[key] > 0:
                self._run(key, self.limits[key])
        self.collect()

    def close(self) -> None:
        """Wait for the batch in flight, if any, and drop it (an interrupted run)."""
        self.pending = None
        if self.executor is not None:
            self.executor.shutdown(wait=True)
            self.executor = None
        self.scratch = None

    def _run(self, key: tuple, limit: int) -> None:
        bucket = self.buckets[key]
        taken: list[_Piece] = []
        count = 0
        while bucket and count < limit:
            piece = bucket[0]
            k = min(len(piece.maps), limit - count)
            taken.append(_Piece(piece.result, piece.maps[:k], piece.start))
            count += k
            if k == len(piece.maps):
                bucket.popleft()
            else:
                bucket[0] = _Piece(piece.result, piece.maps[k:], piece.start + k)
        self.counts[key] -= count
        self.collect()
        if self.executor is None:
            self.executor = ThreadPoolExecutor(1, thread_name_prefix="heatdecode-decode")
        self.pending = (self.executor.submit(self._compute, [p.maps for p in taken]), taken)

    def collect(self) -> None:
        """Wait for the batch in flight and hand its results to its arrays.

        Raises:
            OutOfMemory: the device could not hold the batch.
        """
        if self.pending is None:
            return
        future, pieces = self.pending
        self.pending = None
        try:
            columns, per_map = future.result()
        except (MemoryError, RuntimeError) as exc:
            if not _out_of_memory(exc):
                raise
            maps = sum(len(p.maps) for p in pieces)
            shape = "×".join(map(str, pieces[0].maps.shape[1:]))
            raise OutOfMemory(
                f"out of memory on {self.device} decoding a batch of {maps} map(s) of {shape}; "
                "lower --batch-bytes or --batch-size (or --workers)"
            ) from None
        self._scatter(columns, per_map, pieces)

    def _compute(self, parts: list[np.ndarray]) -> tuple[dict, dict]:
        batch = parts[0] if len(parts) == 1 else self._concatenate(parts)
        tensor = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
        spatial_dims = batch.ndim - 1
        columns: dict[str, dict[str, np.ndarray | None]] = {}
        with torch.no_grad():  # grad mode is per thread
            per_map = {"multimodal": _numpy(multimodal(tensor))}
            for run in self.runs:
                out = decode(
                    tensor,
                    run.decoder,
                    spatial_dims=spatial_dims,
                    beta=run.beta,
                    normalize=run.normalize,
                    radius=run.radius,
                    sigma=run.sigma,
                )
                per_map["flat"], per_map["finite"] = _numpy(out.flat), _numpy(out.finite)
                columns[run.label] = {
                    "coords": _numpy(out.coords),
                    "score": _numpy(out.score),
                    "spread": _numpy(out.spread),
                    "border": _numpy(out.border),
                    "skipped": _numpy(out.skipped),
                    "low_contrast": _numpy(_low_contrast(tensor, run)),
                }
        return columns, per_map

    def _concatenate(self, parts: list[np.ndarray]) -> np.ndarray:
        """The parts stacked into one reused buffer: a fresh batch-sized array
        each time costs more in page faults than the copy itself. Only one batch
        is decoded at a time, and its results are copied out before the next."""
        shape = (sum(len(p) for p in parts), *parts[0].shape[1:])
        dtype = parts[0].dtype
        nbytes = math.prod(shape) * dtype.itemsize
        if self.scratch is None or self.scratch.nbytes < nbytes:
            self.scratch = None  # free the old buffer before allocating the new one
            self.scratch = np.empty(nbytes, np.uint8)
        batch = self.scratch[:nbytes].view(dtype).reshape(shape)
        np.concatenate(parts, out=batch)
        return batch

    def _scatter(self, columns: dict, per_map: dict, pieces: list[_Piece]) -> None:
        offset = 0
        for piece in pieces:
            k = len(piece.maps)
            rows = slice(piece.start, piece.start + k)
            src = slice(offset, offset + k)
            result = piece.result
            for label, values in columns.items():
                target = result.outputs[label]
                for key, value in values.items():
                    if value is not None:
                        getattr(target, key)[rows] = value[src]
            for key, value in per_map.items():
                getattr(result, key)[rows] = value[src]
            offset += k
            result.pending -= k
            if result.pending == 0:
                self.on_complete(result, self.arrays.pop(id(result)))


class OutOfMemory(Exception):
    """The device ran out of memory decoding a batch; the message says what to lower."""


def _out_of_memory(exc: BaseException) -> bool:
    # torch reports a failed CPU allocation as a plain RuntimeError, CUDA's as
    # torch.OutOfMemoryError (a RuntimeError too); only their text tells them apart
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or "out of memory" in text or "allocate memory" in text


def _numpy(value: torch.Tensor | None) -> np.ndarray | None:
    if value is None:
        return None
    if value.is_floating_point():
        value = value.double()
    return value.cpu().numpy()


def _low_contrast(maps: torch.Tensor, run: DecoderRun) -> torch.Tensor | None:
    """The low-contrast flag for decoders whose softmax runs over many positions."""
    options = run.options()
    if "beta" not in options:
        return None
    support = None
    if "radius" in options:  # a local window: (2r+1)^d positions
        support = min(maps[0].numel(), (2 * options["radius"] + 1) ** (maps.ndim - 1))
    return low_contrast(maps, options["beta"], options["normalize"], support)


@dataclass
class Decoding:
    """What :func:`decode_sources` did.

    ``results`` and ``failures`` are in source order. ``stopped`` is ``None``
    for a full run, ``"strict"`` when ``strict`` stopped it at a bad file, or
    ``"interrupted"`` after Ctrl-C/SIGTERM, or ``"out-of-memory"`` when the
    device could not hold a batch (``error`` says which): then arrays still
    waiting in a batch are left out of ``results`` and only ``complete`` sources
    (every array decoded or failed) can be trusted to be whole.
    """

    results: list[DecodedArray]
    failures: list[tuple[str, LoadFailure]]  # (source name, failure)
    complete: list[str]  # names of the sources fully handled, in order
    stopped: str | None = None
    error: str | None = None


def decode_sources(
    sources: Sequence[Source],
    settings: DecodeSettings,
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
    on_complete: Callable[[DecodedArray, np.ndarray], None] | None = None,
) -> Decoding:
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

    A KeyboardInterrupt (Ctrl-C, or SIGTERM turned into one) stops the run
    within one batch: reads in flight stop at their next piece of data, queued
    reads are cancelled, and
    what was decoded so far is returned with ``stopped="interrupted"``.

    Example:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> maps = np.zeros((3, 5, 7), np.float32); maps[1, 4, 6] = 1
        >>> np.save(folder / "m.npy", maps)
        >>> done = decode_sources([Source(folder / "m.npy", "m.npy")], DecodeSettings())
        >>> done.results[0].layout, done.results[0].outputs["argmax"].coords[1].tolist()
        ('CHW', [6.0, 4.0])
    """
    check_count("batch_size", batch_size)
    check_count("batch_bytes", batch_bytes, " byte")
    results: list[DecodedArray] = []
    failures: list[tuple[str, LoadFailure]] = []
    loaded: list[str] = []

    def completed(result: DecodedArray, maps: np.ndarray) -> None:
        if on_complete is not None:
            on_complete(result, maps)

    batcher = _Batcher(settings, torch.device(device), batch_size, completed, batch_bytes)
    stopped: str | None = None
    error: str | None = None
    runs = settings.resolved_runs()
    with ThreadPoolExecutor(
        max_workers=max(1, workers), thread_name_prefix="heatdecode-load"
    ) as pool:
        queue: deque = deque()
        remaining = iter(sources)
        cancel = threading.Event()  # set when the run stops: in-flight reads give up

        def submit_next() -> None:
            source = next(remaining, None)
            if source is not None:
                future = pool.submit(load_source, source, layout, max_map_bytes, cancel)
                queue.append((source, future))

        try:
            for _ in range(max(1, prefetch)):
                submit_next()
            while queue:
                source, future = queue.popleft()
                items = future.result()
                if on_loaded is not None:
                    on_loaded(source, items)
                for item in items:
                    if isinstance(item, LoadFailure):
                        failures.append((source.name, item))
                        continue
                    result = _new_result(item, runs, source.name)
                    results.append(result)
                    batcher.add(result, item.maps)
                loaded.append(source.name)
                if strict and any(isinstance(i, LoadFailure) for i in items):
                    stopped = "strict"
                    break
                submit_next()
            if stopped is None:
                batcher.finish()
        except KeyboardInterrupt:
            stopped = "interrupted"
        except OutOfMemory as exc:  # what was decoded is kept, as after an interrupt
            stopped, error = "out-of-memory", str(exc)
        finally:
            cancel.set()  # a read still in flight is not waited for to its end
            for _, pending in queue:
                pending.cancel()
            if stopped != "strict":  # done, or interrupted: drop the batch in flight
                batcher.close()
    if stopped == "strict":
        try:
            batcher.finish()
        finally:
            batcher.close()
    waiting = {r.source for r in results if r.pending}
    done = [r for r in results if not r.pending]
    complete = [name for name in loaded if name not in waiting]
    return Decoding(done, failures, complete, stopped, error)
