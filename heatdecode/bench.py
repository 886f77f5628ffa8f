"""Timing heatdecode's decoders on your device and your shape (``heatdecode bench``).

:func:`bench_decoders` is the whole of it: synthetic maps of the shape asked
for (Gaussian peaks plus noise, float32), every decoder asked for timed
round-robin after a warm-up, and the median per decoder as milliseconds and
maps per second. :func:`time_round_robin` and :func:`synthetic_maps` are the
pieces ``benchmarks/bench_decoders.py`` shares, so the suite and the command
measure the same way.

Times are wall-clock medians: on a shared machine compare the decoders of one
run with each other, not with another machine's numbers.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from heatdecode.devices import resolve_device
from heatdecode.family import DECODERS, decode
from heatdecode.options import check_decoder

#: The largest batch benchmarked, in bytes of float32 maps: they are made in
#: float64 on the CPU first (a few times this while they are made), and every
#: decoder's temporaries come on top. 1 GiB is e.g. 8 volumes of 256³.
BENCH_MAX_BYTES = 2**30
#: The most timed calls per decoder.
BENCH_MAX_REPEATS = 10_000


def check_bench(shape: Sequence[int], repeats: int) -> None:
    """Refuse a batch over :data:`BENCH_MAX_BYTES` or repeats outside [1, 10⁴], before allocating.

    Example:
        >>> check_bench((10**5, 10**5, 10**5), 20)
        Traceback (most recent call last):
        ...
        ValueError: shape (100000, 100000, 100000) is 4e+15 bytes of float32 maps; ...
    """
    nbytes = 4 * math.prod(int(s) for s in shape)
    if nbytes > BENCH_MAX_BYTES:
        raise ValueError(
            f"shape {tuple(shape)} is {nbytes:.3g} bytes of float32 maps; "
            f"the most bench makes is {BENCH_MAX_BYTES // 2**30} GiB"
        )
    if not 1 <= repeats <= BENCH_MAX_REPEATS:
        raise ValueError(f"repeats must be from 1 to {BENCH_MAX_REPEATS}, got {repeats}")


class BenchRow(NamedTuple):
    """One decoder's timing: ``(decoder, median_ms, maps_per_s)``."""

    decoder: str
    median_ms: float
    maps_per_s: float


def synchronizer(device: torch.device) -> Callable[[], None]:
    """A function that waits for ``device``'s queued work (a no-op on CPU)."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    if device.type == "mps":
        return torch.mps.synchronize
    return lambda: None


def synthetic_maps(
    shape: Sequence[int],
    spatial_dims: int,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
    sigma: float = 2.0,
    noise: float = 0.05,
) -> Tensor:
    """Heatmaps of ``shape``: one Gaussian peak of height 1 per map plus Gaussian noise.

    Each peak sits at a random sub-pixel position at least 2 px inside the map,
    with standard deviation ``sigma`` px; the noise has standard deviation
    ``noise``. Made on the CPU from ``seed`` (the same maps on every device),
    then moved to ``device``.

    Example:
        >>> maps = synthetic_maps((2, 3, 16, 12), spatial_dims=2)
        >>> maps.shape, maps.dtype
        (torch.Size([2, 3, 16, 12]), torch.float32)
    """
    shape = tuple(int(s) for s in shape)
    if spatial_dims not in (2, 3) or len(shape) < spatial_dims or min(shape, default=1) < 1:
        raise ValueError(f"shape {shape} doesn't hold {spatial_dims} spatial axes")
    spatial = shape[len(shape) - spatial_dims :]
    m = math.prod(shape[: len(shape) - spatial_dims])
    gen = torch.Generator().manual_seed(seed)
    maps = torch.ones((m, *spatial), dtype=torch.float64)
    for axis, n in enumerate(spatial):
        low, high = min(2.0, (n - 1) / 2), max(n - 3.0, (n - 1) / 2)
        centre = low + (high - low) * torch.rand(m, 1, generator=gen, dtype=torch.float64)
        profile = torch.exp(-((torch.arange(n, dtype=torch.float64) - centre) ** 2) / sigma**2 / 2)
        view = [m] + [1] * spatial_dims
        view[axis + 1] = n
        maps = maps * profile.reshape(view)
    maps = maps + noise * torch.randn(maps.shape, generator=gen, dtype=torch.float64)
    return maps.to(dtype).reshape(shape).to(device)


def time_round_robin(
    calls: Mapping[str, Callable[[], object]],
    repeats: int = 20,
    warmup: int = 2,
    sync: Callable[[], None] | None = None,
) -> dict[str, list[float]]:
    """Seconds per call of every entry of ``calls``, measured interleaved.

    Every call runs ``warmup`` times first, then ``repeats`` rounds follow; each
    round calls every entry once, starting one entry later than the round
    before, so a slow spell of a shared machine is spread over all entries
    instead of landing on one. ``sync`` (e.g. ``torch.cuda.synchronize``) is
    called after each call, inside its time.

    Example:
        >>> times = time_round_robin({"noop": lambda: None}, repeats=3, warmup=1)
        >>> len(times["noop"])
        3
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    sync = sync or (lambda: None)
    names = list(calls)
    for _ in range(warmup):
        for name in names:
            calls[name]()
            sync()
    times: dict[str, list[float]] = {name: [] for name in names}
    clock = time.perf_counter
    for round_ in range(repeats):
        for k in range(len(names)):
            name = names[(round_ + k) % len(names)]
            call = calls[name]
            start = clock()
            call()
            sync()
            times[name].append(clock() - start)
    return times


def median_ms(samples: Sequence[float]) -> float:
    """The median of ``samples`` (seconds) in milliseconds."""
    return statistics.median(samples) * 1e3


def bench_decoders(
    shape: Sequence[int],
    device: str | torch.device = "cpu",
    decoders: Sequence[str] | None = None,
    repeats: int = 20,
    *,
    spatial_dims: int | None = None,
    warmup: int = 2,
    seed: int = 0,
) -> list[BenchRow]:
    """Median time of each decoder on synthetic float32 maps of ``shape`` on ``device``.

    Args:
        shape: the batch's shape, e.g. ``(64, 17, 64, 48)``; the last 2 axes
            (3 for ``spatial_dims=3``) are the map. At most 1 GiB of float32
            (:data:`BENCH_MAX_BYTES`): a bigger one is a ValueError.
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``; a ValueError if
            it isn't available.
        decoders: names from :data:`~heatdecode.family.DECODERS` (default: all),
            each run with its own default options.
        repeats: timed calls per decoder (after ``warmup`` untimed ones),
            interleaved round-robin (see :func:`time_round_robin`); at most 10⁴.
        spatial_dims: 2 or 3; default 3 for shapes of 5 or more axes, else 2.
        seed: the maps' seed (see :func:`synthetic_maps`).

    Returns:
        One ``(decoder, median_ms, maps_per_s)`` per decoder, in the order asked.

    Example:
        >>> rows = bench_decoders((2, 8, 8), decoders=["argmax"], repeats=2, warmup=0)
        >>> [(r.decoder, r.median_ms > 0) for r in rows]
        [('argmax', True)]
    """
    shape = tuple(int(s) for s in shape)
    check_bench(shape, repeats)
    if spatial_dims is None:
        spatial_dims = 3 if len(shape) >= 5 else 2
    names = list(DECODERS) if decoders is None else list(decoders)
    for name in names:
        check_decoder(name)
    device = resolve_device(device)
    maps = synthetic_maps(shape, spatial_dims, device=device, seed=seed)
    count = math.prod(shape[: len(shape) - spatial_dims])

    def call(name: str) -> Callable[[], object]:
        return lambda: decode(maps, name, spatial_dims=spatial_dims, flags=False)

    with torch.no_grad():
        times = time_round_robin(
            {name: call(name) for name in names},
            repeats=repeats,
            warmup=warmup,
            sync=synchronizer(device),
        )
    rows = []
    for name in names:
        ms = median_ms(times[name])
        rows.append(BenchRow(name, ms, count / (ms / 1e3) if ms > 0 else math.inf))
    return rows
