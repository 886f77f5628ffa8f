"""Batches of maps decoded in a background thread: maps of one spatial shape
and dtype are stacked into batches of at most ``batch_size`` maps and
``batch_bytes``, decoded on the device, and copied back into each array's
:class:`~heatdecode.results.ArrayResult` in batch order.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from heatdecode.decoders import Decoded
from heatdecode.family import decode
from heatdecode.options import DecoderSelection, DecoderSpec, PeakOptions
from heatdecode.results import ArrayResult, DecoderColumns, MapColumns, PeakColumns
from heatdecode.status import decoder_low_contrast, multimodal

#: The default byte limit of a batch (of the maps as loaded): 256 maps of
#: 64 MB would otherwise be 16 GB on the device, with its temporaries on top.
BATCH_BYTES = 256 * 2**20


@dataclass
class Work:
    """An array being decoded: its result, its maps (for ``on_complete``) and
    how many of its maps are still in a batch."""

    result: ArrayResult
    maps: np.ndarray
    pending: int


@dataclass
class _Piece:
    work: Work
    maps: np.ndarray  # (k, *spatial), a view into the loaded array
    start: int  # index of maps[0] within the array


@dataclass
class BatchResult:
    """A decoded batch: per decoder label its columns, and the per-map flags
    (every decoder agrees on which maps are flat or hold NaN/Inf)."""

    columns: dict[str, DecoderColumns]
    per_map: MapColumns
    peaks: dict[str, PeakColumns] | None = None  # peaks mode, instead of columns

    def copy_into(self, result: ArrayResult, rows: slice, src: slice) -> None:
        """Copy the batch's maps ``src`` into ``result``'s maps ``rows``."""
        for label, part in self.columns.items():
            _copy_columns(result.columns[label], part, rows, src)
        if self.peaks is not None and result.peak_parts is not None:
            for label, points in self.peaks.items():
                shifted = points.select(src.start, src.stop, rows.start - src.start)
                result.peak_parts[label].append(shifted)
        target = result.per_map
        target.flat[rows] = self.per_map.flat[src]
        target.finite[rows] = self.per_map.finite[src]
        target.multimodal[rows] = self.per_map.multimodal[src]
        target.maximum[rows] = self.per_map.maximum[src]
        target.truncated[rows] = self.per_map.truncated[src]


def _copy_columns(target: DecoderColumns, part: DecoderColumns, rows: slice, src: slice) -> None:
    target.coords[rows] = part.coords[src]
    target.score[rows] = part.score[src]
    target.spread[rows] = part.spread[src]
    target.border[rows] = part.border[src]
    target.skipped[rows] = part.skipped[src]
    target.low_contrast[rows] = part.low_contrast[src]


class Batcher:
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
        settings: DecoderSelection,
        device: torch.device,
        batch_size: int,
        on_complete: Callable[[ArrayResult, np.ndarray], None],
        batch_bytes: int = BATCH_BYTES,
        peaks: PeakOptions | None = None,
    ) -> None:
        self.runs = settings.resolved_runs()
        self.peaks = peaks
        self.device = device
        self.batch_size = batch_size
        self.batch_bytes = batch_bytes
        self.limits: dict[tuple, int] = {}  # maps per batch, for each bucket
        self.on_complete = on_complete
        self.buckets: dict[tuple, deque[_Piece]] = {}
        self.counts: dict[tuple, int] = {}
        self.executor: ThreadPoolExecutor | None = None
        self.pending: tuple[Future, list[_Piece]] | None = None  # the batch being decoded
        self.scratch: np.ndarray | None = None  # bytes reused for each batch (decode thread)

    def add(self, result: ArrayResult, maps: np.ndarray) -> Work:
        flat = maps.reshape(result.maps, *result.spatial_shape)
        key = (result.spatial_shape, flat.dtype.str)
        work = Work(result, maps, result.maps)
        self.buckets.setdefault(key, deque()).append(_Piece(work, flat, 0))
        self.counts[key] = self.counts.get(key, 0) + result.maps
        if key not in self.limits:
            per_map = math.prod(result.spatial_shape) * flat.dtype.itemsize
            self.limits[key] = max(1, min(self.batch_size, self.batch_bytes // max(1, per_map)))
        while self.counts[key] >= self.limits[key]:
            self._submit(key, self.limits[key])
        return work

    def finish(self) -> None:
        for key in list(self.buckets):
            while self.counts[key] > 0:
                self._submit(key, self.limits[key])
        self.collect()

    def close(self) -> None:
        """Wait for the batch in flight, if any, and drop it (an interrupted run)."""
        self.pending = None
        if self.executor is not None:
            self.executor.shutdown(wait=True)
            self.executor = None
        self.scratch = None

    def _submit(self, key: tuple, limit: int) -> None:
        bucket = self.buckets[key]
        taken: list[_Piece] = []
        count = 0
        while bucket and count < limit:
            piece = bucket[0]
            k = min(len(piece.maps), limit - count)
            taken.append(_Piece(piece.work, piece.maps[:k], piece.start))
            count += k
            if k == len(piece.maps):
                bucket.popleft()
            else:
                bucket[0] = _Piece(piece.work, piece.maps[k:], piece.start + k)
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
            batch = future.result()
        except (MemoryError, RuntimeError) as exc:
            if not _out_of_memory(exc):
                raise
            maps = sum(len(p.maps) for p in pieces)
            shape = "×".join(map(str, pieces[0].maps.shape[1:]))
            raise OutOfMemory(
                f"out of memory on {self.device} decoding a batch of {maps} map(s) of {shape}; "
                "lower --batch-bytes or --batch-size (or --workers)"
            ) from None
        self._hand_out(batch, pieces)

    def _compute(self, parts: list[np.ndarray]) -> BatchResult:
        batch = parts[0] if len(parts) == 1 else self._concatenate(parts)
        tensor = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
        with torch.no_grad():  # grad mode is per thread
            if self.peaks is not None:
                # loaded in peaks mode only: a single-point run never needs it
                from heatdecode.peak_batches import peak_batch

                peaks, per_map = peak_batch(tensor, self.runs, self.peaks)
                return BatchResult({}, per_map, peaks)
            multimodal_maps = _numpy(multimodal(tensor))
            outputs = [(spec, _decode(tensor, spec)) for spec in self.runs]
            columns = {spec.label: _columns(tensor, spec, out) for spec, out in outputs}
        first = outputs[0][1]
        k = len(tensor)
        nothing = np.zeros(k, dtype=bool)
        per_map = MapColumns(
            _numpy(first.flat), _numpy(first.finite), multimodal_maps, np.full(k, np.nan), nothing
        )
        return BatchResult(columns, per_map)

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

    def _hand_out(self, batch: BatchResult, pieces: list[_Piece]) -> None:
        offset = 0
        for piece in pieces:
            k = len(piece.maps)
            work = piece.work
            batch.copy_into(
                work.result, slice(piece.start, piece.start + k), slice(offset, offset + k)
            )
            offset += k
            work.pending -= k
            if work.pending == 0:
                work.result.finish_peaks()
                self.on_complete(work.result, work.maps)


def _decode(maps: torch.Tensor, spec: DecoderSpec) -> Decoded:
    # the options the spec records (settings.runs), filled in once; the flags
    # are computed per batch by the same functions decode's flags use
    options = spec.options()
    return decode(maps, spec.decoder, spatial_dims=maps.ndim - 1, flags=False, **options)


def _columns(maps: torch.Tensor, spec: DecoderSpec, out: Decoded) -> DecoderColumns:
    """A decoder's results as numpy columns; a flag or spread it doesn't give is
    False/NaN."""
    m = len(maps)
    absent = np.zeros(m, dtype=bool)
    low = decoder_low_contrast(maps, spec.options())
    return DecoderColumns(
        coords=_numpy(out.coords),
        score=_numpy(out.score),
        spread=np.full(m, np.nan) if out.spread is None else _numpy(out.spread),
        border=absent if out.border is None else _numpy(out.border),
        skipped=absent if out.skipped is None else _numpy(out.skipped),
        low_contrast=absent if low is None else _numpy(low),
    )


class OutOfMemory(Exception):
    """The device ran out of memory decoding a batch; the message says what to lower."""


def _out_of_memory(exc: BaseException) -> bool:
    # torch reports a failed CPU allocation as a plain RuntimeError, CUDA's as
    # torch.OutOfMemoryError (a RuntimeError too); only their text tells them apart
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or "out of memory" in text or "allocate memory" in text


def _numpy(value: torch.Tensor) -> np.ndarray:
    if value.is_floating_point():
        value = value.double()
    return value.cpu().numpy()
