"""The kernels every decoder shares: input checks, the compute dtype, the argmax
with each map's extremes, softmax logits, unravelling and gathering.

A map's result must never depend on the other maps of its batch: every kernel
here reduces each row (map) on its own, with elementwise arithmetic in a fixed
order, never a matmul or a routine whose summation order depends on the batch.

Pure core: imports only the standard library, numpy, torch and other core
modules; no I/O and no module state, so it can be used without the CLI stack
(``tests/test_package.py``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

#: dtypes whose numpy argmax/min are SIMD loops (numpy's float16 ones are scalar)
NUMPY_FAST = frozenset(
    {
        torch.float32,
        torch.float64,
        torch.int8,
        torch.uint8,
        torch.int16,
        torch.int32,
        torch.int64,
    }
)
#: 1 MB of float32: the min re-reads the block from cache
ARGMAX_CHUNK_ELEMENTS = 1 << 18
#: numpy's single-threaded argmax + min cost about what torch's argmax + amax +
#: amin cost on 4 threads: with more, torch's parallel reductions win
NUMPY_MAX_THREADS = 4


def check_input(heatmaps: Tensor, spatial_dims: int) -> tuple[torch.Size, torch.Size]:
    """The batch shape and the spatial shape of ``heatmaps``, after checking it is a real
    tensor with ``spatial_dims`` (2 or 3) non-empty trailing axes.

    Example:
        >>> check_input(torch.zeros(2, 5, 3, 4), 2)
        (torch.Size([2, 5]), torch.Size([3, 4]))
    """
    if not isinstance(heatmaps, Tensor):
        raise TypeError(f"heatmaps must be a torch.Tensor, got {type(heatmaps).__name__}")
    if spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    if heatmaps.ndim < spatial_dims:
        raise ValueError(
            f"heatmaps need at least {spatial_dims} dimensions for spatial_dims={spatial_dims}, "
            f"got shape {tuple(heatmaps.shape)}"
        )
    if heatmaps.is_complex() or heatmaps.dtype == torch.bool:
        raise TypeError(f"heatmaps must be real numbers, got dtype {heatmaps.dtype}")
    spatial = heatmaps.shape[-spatial_dims:]
    if any(s == 0 for s in spatial):
        raise ValueError(f"heatmaps have an empty spatial axis: shape {tuple(heatmaps.shape)}")
    return heatmaps.shape[:-spatial_dims], spatial


def compute_dtype(dtype: torch.dtype, device: torch.device) -> torch.dtype:
    """The dtype maps of ``dtype`` on ``device`` are decoded in.

    Example:
        >>> cpu = torch.device("cpu")
        >>> compute_dtype(torch.float16, cpu), compute_dtype(torch.int64, cpu)
        (torch.float32, torch.float64)
    """
    # float64 and wide integers stay exact in float64 (gradcheck, references);
    # half precision and small integers are computed in float32 so exp() and the
    # sums don't lose the peak. MPS has no float64.
    wide = dtype == torch.float64 or (not dtype.is_floating_point and dtype.itemsize >= 4)
    if wide and device.type != "mps":
        return torch.float64
    return torch.float32


def unravel(index: Tensor, spatial: torch.Size) -> Tensor:
    """``(M,)`` flat row-major indices into a map of shape ``spatial`` -> ``(M, d)``, x first.

    Example:
        >>> unravel(torch.tensor([0, 5, 11]), torch.Size([3, 4])).tolist()
        [[0, 0], [1, 1], [3, 2]]
    """
    axes = []
    rest = index
    for size in reversed(spatial):  # x (W) first, then y (H), then z (D)
        axes.append(rest % size)
        rest = torch.div(rest, size, rounding_mode="floor")
    return torch.stack(axes, -1)


def extremes(block: Tensor) -> tuple[Tensor, Tensor]:
    """Each row's max and min, ``(M, 1)``; amax + amin, not aminmax: on CPU that is slower."""
    return block.amax(-1, keepdim=True), block.amin(-1, keepdim=True)


def argmax_extremes(flat: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Each row's first maximum (row-major, NaN counting as the maximum), max and min.

    ``flat`` is ``(M, N)``; returns ``index`` ``(M,)`` int64, ``hi`` and ``lo``
    ``(M,)`` in ``flat``'s dtype, detached. A row holding NaN has NaN as its
    maximum and minimum and the first NaN as its index, as ``torch.argmax``,
    ``torch.amax`` and ``torch.amin`` give.

    On CPU, for the dtypes numpy has vectorised loops for, the rows go through
    numpy's ``argmax`` and ``min`` (several times faster per element than
    ``torch.argmax`` there), a cache-sized block at a time so the minimum
    re-reads the block from cache. One thread: helper threads lost to torch's
    OpenMP workers, still spinning after the op before, in every interleaved
    measurement. Elsewhere (other devices and dtypes, more than
    :data:`NUMPY_MAX_THREADS` torch threads) torch's own reductions run, with
    the same results: indices, maxima and minima are exact.

    Example:
        >>> index, hi, lo = argmax_extremes(torch.tensor([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]]))
        >>> index.tolist(), hi.tolist(), lo.tolist()
        ([1, 0], [3.0, 2.0], [1.0, 0.0])
    """
    flat = flat.detach()
    m, n = flat.shape
    if (
        flat.device.type != "cpu"
        or flat.dtype not in NUMPY_FAST
        or m == 0
        or torch.get_num_threads() > NUMPY_MAX_THREADS
    ):
        return flat.argmax(-1), flat.amax(-1), flat.amin(-1)
    values = flat.contiguous().numpy()
    index = np.empty(m, dtype=np.int64)
    lo = np.empty(m, dtype=values.dtype)
    hi = np.empty(m, dtype=values.dtype)
    rows = max(1, ARGMAX_CHUNK_ELEMENTS // n)
    ramp = np.arange(rows)
    with np.errstate(invalid="ignore"):
        for s in range(0, m, rows):
            e = min(m, s + rows)
            block, where = values[s:e], index[s:e]
            block.argmax(axis=-1, out=where)
            block.min(axis=-1, out=lo[s:e])
            hi[s:e] = block[ramp[: e - s], where]
    return torch.from_numpy(index), torch.from_numpy(hi), torch.from_numpy(lo)


def logits(
    flat: Tensor, hi: Tensor, lo: Tensor, beta: float, normalize: str, out: Tensor | None = None
) -> Tensor:
    """``β·(x̂ − max x̂)`` for each row of ``flat``: softmax logits, all ≤ 0.

    ``hi`` and ``lo`` are the rows' max and min, ``(M, 1)``; ``normalize`` is
    ``"none"`` (``x̂ = x``), ``"max"`` or ``"minmax"``. For ``max``/``minmax``
    the map is divided by max|x| *before* anything is subtracted, so every
    intermediate stays in [-2, 1] even for values at the dtype's limit or
    subnormal ones; β is never divided by a tiny number. A constant map gets
    all-zero logits (a uniform softmax). With ``out`` the work is done in
    place in that buffer (no autograd).

    Example:
        >>> flat = torch.tensor([[0.0, 5.0, 10.0]])
        >>> hi, lo = extremes(flat)
        >>> logits(flat, hi, lo, 2.0, "minmax").tolist()
        [[-2.0, -1.0, 0.0]]
    """
    if normalize == "none":
        # β = 1 (the training default) skips the multiplication: x·1 is x exactly
        if out is None:
            return flat - hi if beta == 1.0 else (flat - hi) * beta
        torch.sub(flat, hi, out=out)
        return out if beta == 1.0 else out.mul_(beta)
    absmax = torch.maximum(hi.abs(), lo.abs())
    safe = torch.where(absmax > 0, absmax, torch.ones_like(absmax))
    top = hi / safe
    if normalize == "max":
        scale: Tensor | float = beta
    else:
        span = top - lo / safe  # in [0, 2]; zero only for a constant map
        scale = torch.where(span > 0, beta / torch.where(span > 0, span, 1.0), 0.0)
    if out is None:
        return (flat / safe - top) * scale
    return torch.div(flat, safe, out=out).sub_(top).mul_(scale)


def gather(
    source: Tensor, index: Tensor, offsets: Tensor, sizes: Tensor, strides: Tensor
) -> tuple[Tensor, Tensor]:
    """Each row's values at ``index + offsets``, and which of them lie inside the map.

    ``source`` is ``(M, N)`` (flattened maps), ``index`` ``(M, d)`` a position
    in each, ``offsets`` ``(K, d)``, ``sizes`` and ``strides`` ``(d,)`` the
    axes' lengths and flat strides; all ordered x first. Returns ``(M, K)``
    values in ``source``'s dtype and an ``(M, K)`` mask. Positions outside
    the map read the nearest pixel's value and are marked invalid.

    Example:
        >>> source = torch.arange(12.0).reshape(1, 12)   # one 3 x 4 map
        >>> sizes, strides = torch.tensor([4, 3]), torch.tensor([1, 4])
        >>> at, offsets = torch.tensor([[3, 1]]), torch.tensor([[-1, 0], [1, 0]])
        >>> values, valid = gather(source, at, offsets, sizes, strides)
        >>> values.tolist(), valid.tolist()
        ([[6.0, 7.0]], [[True, False]])
    """
    where = index[:, None, :] + offsets[None]
    valid = ((where >= 0) & (where < sizes)).all(-1)
    where = torch.minimum(torch.clamp(where, min=0), sizes - 1)
    return source.gather(1, (where * strides).sum(-1)), valid
