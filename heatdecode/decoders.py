"""Heatmap decoders: hard argmax and soft-argmax, batched, in pure torch.

Every decoder takes heatmaps shaped ``(..., H, W)`` (``spatial_dims=2``) or
``(..., D, H, W)`` (``spatial_dims=3``, torch's order for volumes) with any number
of leading batch dimensions, and returns coordinates shaped ``(..., 2)`` ordered
``(x, y)`` or ``(..., 3)`` ordered ``(x, y, z)``: x indexes W, y indexes H and z
indexes D.

Four coordinate frames are offered:

* ``"pixel"`` (default): pixel centres sit at the integers ``0 … W-1``, the frame
  of array indices, so the hard argmax is integer-valued and all decoders are
  directly comparable.
* ``"half-pixel"``: centres at ``i + 0.5``, edges at integers (the convention of
  image libraries such as Pillow and OpenCV's ``remap`` with a 0.5 shift).
* ``"normalized"``: ``[-1, 1]`` with -1 and 1 at the centres of the first and last
  pixel, the frame of ``grid_sample(..., align_corners=True)`` and kornia. An axis
  of size 1 maps to 0.
* ``"normalized-edges"``: ``[-1, 1]`` with ±1 at the outer *edges* of the first
  and last pixel, ``grid_sample(..., align_corners=False)`` and dsntnn.

Pure core: imports only the standard library, numpy, torch and other core
modules (decoders, refine, status, layouts, frames, family); no I/O and no
module state, so it can be used without the CLI stack (``tests/test_package.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from heatdecode.options import (  # noqa: F401  (the choices and BETA_MAX are re-exported)
    BETA_MAX,
    COORD_CHOICES,
    NORMALIZE_CHOICES,
    check_beta,
    check_coords,
    check_normalize,
)

Normalize = Literal["none", "max", "minmax"]
CoordFrame = Literal["pixel", "half-pixel", "normalized", "normalized-edges"]


class Decoded(NamedTuple):
    """What a decoder returns for a batch of maps.

    Attributes:
        coords: ``(..., spatial_dims)`` coordinates ordered ``(x, y[, z])``.
        score: ``(...)`` the raw maximum of each map (a confidence).
        spread: ``(...)`` standard deviation of the softmax distribution in
            pixels, ``sqrt(var_x + var_y [+ var_z])``; ``None`` for decoders
            without a distribution (argmax).
        flat: ``(...)`` True where the map is constant (no peak to report).
        finite: ``(...)`` False where the map holds NaN or ±Inf; its other
            fields are then meaningless.
        border: ``(...)`` for refining decoders, True where the peak is on the
            map's edge and the refinement fell back to the argmax on some
            axis; ``None`` for decoders that don't refine.
        skipped: ``(...)`` for refining decoders, True where the refinement
            was skipped for another reason (e.g. a singular or not negative
            definite Hessian in DARK) and the argmax is reported; else ``None``.
    """

    coords: Tensor
    score: Tensor
    spread: Tensor | None
    flat: Tensor
    finite: Tensor
    border: Tensor | None = None
    skipped: Tensor | None = None


def _check_input(heatmaps: Tensor, spatial_dims: int) -> tuple[torch.Size, torch.Size]:
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


def _compute_dtype(dtype: torch.dtype, device: torch.device) -> torch.dtype:
    # float64 and wide integers stay exact in float64 (gradcheck, references);
    # half precision and small integers are computed in float32 so exp() and the
    # sums don't lose the peak. MPS has no float64.
    wide = dtype == torch.float64 or (not dtype.is_floating_point and dtype.itemsize >= 4)
    if wide and device.type != "mps":
        return torch.float64
    return torch.float32


def to_frame(pixel_coords: Tensor, spatial: tuple[float, ...], coords: str) -> Tensor:
    """Convert ``(..., d)`` pixel coordinates ordered (x, y[, z]) to the frame ``coords``.

    ``spatial`` is the map's shape in array order, ``(H, W)`` or ``(D, H, W)``
    (it may be fractional, for an image that a strided heatmap covers).

    Example:
        >>> pixel = torch.tensor([[0.0, 2.0], [9.0, 1.0]])   # on a 3 x 10 map
        >>> to_frame(pixel, (3, 10), "normalized").tolist()
        [[-1.0, 1.0], [1.0, 0.0]]
        >>> to_frame(pixel, (3, 10), "normalized-edges").mul(60).round().tolist()
        [[-54.0, 40.0], [54.0, 0.0]]
        >>> to_frame(pixel, (3, 10), "half-pixel").tolist()
        [[0.5, 2.5], [9.5, 1.5]]
    """
    check_coords(coords)
    if coords == "pixel":
        return pixel_coords
    if coords == "half-pixel":
        return pixel_coords + 0.5
    sizes = torch.tensor(
        list(reversed(spatial)), dtype=pixel_coords.dtype, device=pixel_coords.device
    )
    if coords == "normalized-edges":
        return (2 * pixel_coords + 1) / sizes - 1
    # An axis of a single pixel has no extent between centres: its only centre is 0.
    half = torch.clamp(sizes - 1, min=1) / 2
    centred = pixel_coords - (sizes - 1) / 2
    return centred / half


def argmax_decode(heatmaps: Tensor, spatial_dims: int = 2, coords: str = "pixel") -> Decoded:
    """Hard argmax with its score; see :func:`hard_argmax` for the contract.

    Shape:
        ``(..., H, W)`` or ``(..., D, H, W)`` -> ``Decoded`` with ``coords`` of
        shape ``(..., spatial_dims)`` and per-map fields of shape ``(...)``.

    Example:
        >>> maps = torch.zeros(1, 3, 4)
        >>> maps[0, 2, 1] = 5.0
        >>> out = argmax_decode(maps)
        >>> out.coords.tolist(), out.score.tolist(), out.flat.tolist()
        ([[1.0, 2.0]], [5.0], [False])
    """
    check_coords(coords)
    lead, spatial = _check_input(heatmaps, spatial_dims)
    index, hi, lo = _argmax_extremes(heatmaps.reshape(-1, spatial.numel()))
    cdtype = _compute_dtype(heatmaps.dtype, heatmaps.device)
    return Decoded(
        coords=to_frame(unravel(index, spatial).to(cdtype), spatial, coords).reshape(
            *lead, spatial_dims
        ),
        score=hi.to(cdtype).reshape(lead),
        spread=None,
        flat=(hi == lo).reshape(lead),
        finite=(torch.isfinite(hi) & torch.isfinite(lo)).reshape(lead),
    )


def unravel(index: Tensor, spatial: torch.Size) -> Tensor:
    """``(M,)`` flat row-major indices into a map of shape ``spatial`` -> ``(M, d)``, x first."""
    axes = []
    rest = index
    for size in reversed(spatial):  # x (W) first, then y (H), then z (D)
        axes.append(rest % size)
        rest = torch.div(rest, size, rounding_mode="floor")
    return torch.stack(axes, -1)


# dtypes whose numpy argmax/min are SIMD loops (numpy's float16 ones are scalar)
_NUMPY_FAST = {
    torch.float32,
    torch.float64,
    torch.int8,
    torch.uint8,
    torch.int16,
    torch.int32,
    torch.int64,
}
_ARGMAX_CHUNK_ELEMENTS = 1 << 18  # 1 MB of float32: the min re-reads it from cache
# numpy's single-threaded argmax + min cost about what torch's argmax + amax +
# amin cost on 4 threads: with more, torch's parallel reductions win
_NUMPY_MAX_THREADS = 4


def _argmax_extremes(flat: Tensor) -> tuple[Tensor, Tensor, Tensor]:
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
    ``_NUMPY_MAX_THREADS`` torch threads) torch's own reductions run, with
    the same results: indices, maxima and minima are exact. Either way every row
    is reduced on its own: the result never depends on the other rows of the
    batch.
    """
    flat = flat.detach()
    m, n = flat.shape
    if (
        flat.device.type != "cpu"
        or flat.dtype not in _NUMPY_FAST
        or m == 0
        or torch.get_num_threads() > _NUMPY_MAX_THREADS
    ):
        return flat.argmax(-1), flat.amax(-1), flat.amin(-1)
    values = flat.contiguous().numpy()
    index = np.empty(m, dtype=np.int64)
    lo = np.empty(m, dtype=values.dtype)
    hi = np.empty(m, dtype=values.dtype)
    rows = max(1, _ARGMAX_CHUNK_ELEMENTS // n)
    ramp = np.arange(rows)
    with np.errstate(invalid="ignore"):
        for s in range(0, m, rows):
            e = min(m, s + rows)
            block, where = values[s:e], index[s:e]
            block.argmax(axis=-1, out=where)
            block.min(axis=-1, out=lo[s:e])
            hi[s:e] = block[ramp[: e - s], where]
    return torch.from_numpy(index), torch.from_numpy(hi), torch.from_numpy(lo)


def _logits(
    flat: Tensor, hi: Tensor, lo: Tensor, beta: float, normalize: str, out: Tensor | None = None
) -> Tensor:
    """``β·(x̂ − max x̂)`` for each row of ``flat``: softmax logits, all ≤ 0.

    For ``max``/``minmax`` the map is divided by max|x| *before* anything is
    subtracted, so every intermediate stays in [-2, 1] even for values at the
    dtype's limit or subnormal ones; β is never divided by a tiny number. A
    constant map gets all-zero logits (a uniform softmax). With ``out`` the
    work is done in place in that buffer (no autograd).
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


def _marginals(weights: Tensor) -> list[Tensor]:
    """Sums of ``(M, [D,] H, W)`` weights onto each axis, ordered x (W), y (H)[, z (D)].

    Two passes over the weights whatever the dimension: one sum over W, one
    over everything but W; the other marginals come from the small remainder.
    """
    over_w = weights.sum(-1)  # (M, [D,] H)
    onto_w = weights.sum(tuple(range(1, weights.ndim - 1)))  # (M, W)
    if weights.ndim == 3:
        return [onto_w, over_w]
    return [onto_w, over_w.sum(-2), over_w.sum(-1)]


def _chunk_rows(flat: Tensor) -> int:
    """Rows (maps) per chunk: a cache-sized chunk on CPU, large ones on GPUs."""
    budget = _CHUNK_ELEMENTS_GPU if flat.device.type != "cpu" else _CHUNK_ELEMENTS_CPU
    return max(1, min(flat.shape[0], budget // max(1, flat.shape[1])))


def _exp_chunks(
    flat: Tensor,
    spatial: torch.Size,
    fill: Callable[[slice, Tensor], object],
    keep: Tensor | None = None,
) -> list[Tensor]:
    """:func:`_marginals` of the weights ``fill`` writes, a chunk of rows at a time.

    ``fill(chunk, out)`` writes the softmax weights (unnormalised) of the rows
    ``chunk`` into ``out``: one reused chunk-sized buffer, or the rows of
    ``keep`` when a backward pass needs them. On CPU each chunk's weights and
    sums stay in cache, which is several times faster than materialising the
    whole batch's softmax and keeps the extra memory to a few MB; on GPUs
    chunks are large so launches stay few. No autograd.
    """
    m, n = flat.shape
    rows = _chunk_rows(flat)
    if keep is None:
        buffer = torch.empty((rows, n), dtype=flat.dtype, device=flat.device)
    parts: list[list[Tensor]] = [[] for _ in spatial]
    for start in range(0, m, rows):
        chunk = slice(start, min(m, start + rows))
        weights = keep[chunk] if keep is not None else buffer[: chunk.stop - start]
        fill(chunk, weights)
        for k, marginal in enumerate(_marginals(weights.view(-1, *spatial))):
            parts[k].append(marginal)
    return [torch.cat(p) if len(p) > 1 else p[0] for p in parts]


# exp(β·x̂) is taken without subtracting the maximum where every logit of the
# map is within ±_DIRECT_EXP_LIMIT: no weight can overflow (e^60·N stays far
# below float32's limit) or lose the peak to underflow, and the softmax is the
# same up to rounding. It saves a pass over the map, and for normalize="none"
# the exp is the first pass, its arithmetic hiding the memory reads.
_DIRECT_EXP_LIMIT = 60.0


class _SoftmaxWeights:
    """``fill`` for :func:`_exp_chunks`: each chunk's softmax weights and each row's max and min.

    A row whose logits stay within ±:data:`_DIRECT_EXP_LIMIT` (and that is
    not constant) gets ``exp(β·x)`` (``normalize="none"``) or ``exp(x·β/(max|x|
    ·span))`` (``max``/``minmax``, span 1 for ``max``); any other row (a
    constant, NaN or ±Inf map, logits beyond the limit) gets the exact
    ``exp(β·(x̂ − max x̂))`` of :func:`_logits`, recomputed by :meth:`finish`.
    Which rows take which path is decided per row from its own max and min,
    and both paths are the same elementwise operations whatever the chunk
    holds, so a map's weights are the same bits in any batch.

    For ``none`` the exp runs first, while the rows are read from memory, and
    the max and min follow from cache. If the first chunk has a row out of
    range the later chunks go max-first instead (a shift of 0 for the rows
    in range, which is exact: their weights don't change), so logits far
    from 0 don't cost two exps. ``max``/``minmax`` need the max and min
    first: they are taken for the whole batch at once.
    """

    def __init__(self, flat: Tensor, beta: float, normalize: str) -> None:
        self.flat, self.beta, self.normalize = flat, beta, normalize
        self.highs: list[Tensor] = []
        self.lows: list[Tensor] = []
        self.exp_first = True
        self.checked_until = 0  # rows before this one need finish()'s check
        if normalize != "none":
            self.hi, self.lo = _extremes(flat)
            self.factor, self.direct = self._factor(self.hi, self.lo)
            self.any_direct = bool(self.direct.any())

    def __call__(self, chunk: slice, out: Tensor) -> None:
        block, beta = self.flat[chunk], self.beta
        if self.normalize != "none":
            if self.any_direct:
                torch.mul(block, self.factor[chunk], out=out).exp_()
            else:
                hi, lo = self.hi[chunk], self.lo[chunk]
                _logits(block, hi, lo, beta, self.normalize, out=out).exp_()
            return
        if self.exp_first:
            if beta == 1.0:
                torch.exp(block, out=out)
            else:
                torch.mul(block, beta, out=out).exp_()
            hi, lo = _extremes(block)
            self.checked_until = chunk.stop
            first, more = chunk.start == 0, chunk.stop < self.flat.shape[0]
            if first and more and not bool(self._in_range(hi, lo).all()):
                self.exp_first = False
        else:
            hi, lo = _extremes(block)
            shift = torch.where(self._in_range(hi, lo), 0.0, hi)
            _logits(block, shift, lo, beta, "none", out=out).exp_()
        self.highs.append(hi)
        self.lows.append(lo)

    def extremes(self) -> tuple[Tensor, Tensor]:
        """Every row's max and min, ``(M, 1)`` each."""
        if self.normalize == "none" and len(self.highs) != 1:
            self.hi, self.lo = torch.cat(self.highs), torch.cat(self.lows)
            self.highs, self.lows = [self.hi], [self.lo]
        elif self.normalize == "none":
            self.hi, self.lo = self.highs[0], self.lows[0]
        return self.hi, self.lo

    def finish(self, marginals: list[Tensor], spatial: torch.Size, keep: Tensor | None) -> None:
        """Recompute, exactly, the rows whose direct exp was out of range (in place)."""
        hi, lo = self.extremes()
        if self.normalize == "none":
            n = self.checked_until
            exact = ~self._in_range(hi[:n], lo[:n])[:, 0]
        elif self.any_direct:
            exact = ~self.direct[:, 0]
        else:
            return
        if not bool(exact.any()):
            return
        redo = exact.nonzero()[:, 0]
        logits = _logits(self.flat[redo], hi[redo], lo[redo], self.beta, self.normalize)
        weights = logits.exp_()
        if keep is not None:
            keep[redo] = weights
        for marginal, exact in zip(marginals, _marginals(weights.view(-1, *spatial)), strict=True):
            marginal[redo] = exact

    def _in_range(self, hi: Tensor, lo: Tensor) -> Tensor:
        return ((hi * self.beta).abs() <= _DIRECT_EXP_LIMIT) & (hi != lo)

    def _factor(self, hi: Tensor, lo: Tensor) -> tuple[Tensor, Tensor]:
        """``β/(max|x|·span)`` per row, and where the direct exp is safe with it."""
        absmax = torch.maximum(hi.abs(), lo.abs())
        safe = torch.where(absmax > 0, absmax, torch.ones_like(absmax))
        if self.normalize == "max":
            scale = torch.full_like(safe, self.beta)
        else:
            span = hi / safe - lo / safe
            scale = self.beta / torch.where(span > 0, span, 1.0)
        factor = scale / safe
        direct = (scale <= _DIRECT_EXP_LIMIT) & torch.isfinite(factor) & (hi != lo)
        return factor, direct


def _extremes(block: Tensor) -> tuple[Tensor, Tensor]:
    """Each row's max and min, ``(M, 1)``; amax + amin, not aminmax: on CPU that is slower."""
    return block.amax(-1, keepdim=True), block.amin(-1, keepdim=True)


def _chunked_marginals(
    flat: Tensor, beta: float, normalize: str, spatial: torch.Size, keep: Tensor | None = None
) -> tuple[list[Tensor], Tensor, Tensor]:
    """:func:`_marginals` of the softmax weights without autograd, with each row's max and min.

    See :class:`_SoftmaxWeights`: for ``normalize="none"`` the max and min
    (``(M, 1)``) are taken chunk by chunk with the weights, so the batch is
    read from memory once. With ``keep`` the weights are written there (for
    a backward pass).
    """
    m, n = flat.shape
    budget = _CHUNK_ELEMENTS_GPU if flat.device.type != "cpu" else _CHUNK_ELEMENTS_CPU
    if m == 0 or (keep is None and n > budget and spatial[0] > 1):
        hi, lo = _extremes(flat)
        if m == 0:  # an empty batch: empty marginals, as the unchunked path gives
            return _marginals(flat.reshape(0, *spatial)), hi, lo
        return _slab_marginals(flat, hi, lo, beta, normalize, spatial, budget), hi, lo
    fill = _SoftmaxWeights(flat, beta, normalize)
    marginals = _exp_chunks(flat, spatial, fill, keep=keep)
    fill.finish(marginals, spatial, keep)
    return (marginals, *fill.extremes())


class _ExpMarginals(torch.autograd.Function):
    """Softmax marginals with a backward pass that needs no autograd graph.

    ``apply(values, beta, "none", spatial)``: the weights of
    :class:`_SoftmaxWeights` for raw logits ``values`` ``(M, N)``, returned
    as ``(hi, lo, *marginals)`` (the rows' max and min carry no gradient: the
    softmax doesn't change when its shift does). ``apply(logits, 1.0,
    "logits", spatial)``: ``exp(logits)`` for logits already shifted (max
    and minmax, whose scale autograd differentiates before this).

    Forward: the same chunked exp and sums as without autograd, the weights
    kept (one copy of the batch, as a softmax's autograd keeps). Backward:
    each weight times the sum of its axes' incoming gradients, ``β·wᵢ·Σₖ
    gₖ[cₖ(i)]``, a chunk at a time: two passes over the batch, where
    autograd through sub, mul, exp and the sums takes about eight.
    """

    @staticmethod
    def forward(ctx, values: Tensor, beta: float, normalize: str, spatial: torch.Size):
        keep = torch.empty(values.shape, dtype=values.dtype, device=values.device)
        if normalize == "logits":
            marginals = _exp_chunks(
                values, spatial, lambda chunk, out: torch.exp(values[chunk], out=out), keep=keep
            )
            hi = lo = values.new_zeros(values.shape[0], 1)
        else:
            marginals, hi, lo = _chunked_marginals(values, beta, normalize, spatial, keep=keep)
        ctx.save_for_backward(keep)
        ctx.beta, ctx.spatial = beta, spatial
        ctx.mark_non_differentiable(hi, lo)
        ctx.set_materialize_grads(False)
        return (hi, lo, *marginals)

    @staticmethod
    @once_differentiable
    def backward(ctx, _hi: Tensor | None, _lo: Tensor | None, *grads: Tensor | None):
        (weights,) = ctx.saved_tensors
        spatial, d = ctx.spatial, len(ctx.spatial)
        m = weights.shape[0]
        terms = []
        for k, grad in enumerate(grads):  # k = 0: x (the last axis)
            if grad is None:
                continue
            shape = [m] + [1] * d
            shape[d - k] = spatial[d - 1 - k]
            terms.append((grad * ctx.beta).reshape(shape))
        if not terms:
            return None, None, None, None
        out = torch.empty_like(weights)
        rows = _chunk_rows(weights)
        for start in range(0, m, rows):
            chunk = slice(start, min(m, start + rows))
            w = weights[chunk].view(-1, *spatial)
            o = out[chunk].view(-1, *spatial)
            torch.mul(w, terms[0][chunk], out=o)
            for term in terms[1:]:
                o.addcmul_(w, term[chunk])
        return out, None, None, None


def _slab_marginals(
    flat: Tensor,
    hi: Tensor,
    lo: Tensor,
    beta: float,
    normalize: str,
    spatial: torch.Size,
    budget: int,
) -> list[Tensor]:
    """:func:`_chunked_marginals` for maps bigger than a chunk: slabs along the first axis.

    A 512³ volume is 512 MB of float32; exponentiating it in slabs keeps the
    extra memory to one slab instead of a second copy of the volume. The
    result depends only on the map's own shape, never on its batch.
    """
    m = flat.shape[0]
    per_slice = flat.shape[1] // spatial[0]
    step = max(1, budget // per_slice)
    buffer = torch.empty(step * per_slice, dtype=flat.dtype, device=flat.device)
    rows: list[list[Tensor]] = [[] for _ in spatial]
    for i in range(m):  # only maps over `budget` elements get here: there are few
        first = torch.zeros(spatial[0], dtype=flat.dtype, device=flat.device)
        rest = [torch.zeros(n, dtype=flat.dtype, device=flat.device) for n in spatial[1:]]
        for start in range(0, spatial[0], step):
            stop = min(spatial[0], start + step)
            weights = buffer[: (stop - start) * per_slice].view(1, -1)
            block = flat[i : i + 1, start * per_slice : stop * per_slice]
            _logits(block, hi[i : i + 1], lo[i : i + 1], beta, normalize, out=weights).exp_()
            slab = weights.view(stop - start, *spatial[1:])
            # marginals of the slab ordered x (W), y (H)[, z (D)], z being the slab axis
            parts = _marginals(slab[None])
            first[start:stop] = parts[-1][0]
            for acc, part in zip(rest, reversed(parts[:-1]), strict=True):
                acc += part[0]
        for k, marginal in enumerate([*reversed(rest), first]):
            rows[k].append(marginal)
    return [torch.stack(r) for r in rows]


_CHUNK_ELEMENTS_CPU = 1 << 19  # 2 MB of float32: fits in L2 with room to spare
_CHUNK_ELEMENTS_GPU = 1 << 26


def softargmax_decode(
    heatmaps: Tensor,
    beta: float = 1.0,
    spatial_dims: int = 2,
    normalize: str = "none",
    coords: str = "pixel",
) -> Decoded:
    """Soft-argmax with its score and spread; see :func:`soft_argmax` for the contract.

    Shape:
        ``(..., H, W)`` or ``(..., D, H, W)`` -> ``Decoded`` with ``coords`` of
        shape ``(..., spatial_dims)`` and per-map fields of shape ``(...)``.

    Example:
        >>> maps = torch.zeros(2, 3)
        >>> out = softargmax_decode(maps)  # a constant map: the centre, flagged
        >>> out.coords.tolist(), out.flat.item()
        ([1.0, 0.5], True)
    """
    check_coords(coords)
    check_normalize(normalize)
    beta = check_beta(beta)
    lead, spatial = _check_input(heatmaps, spatial_dims)
    n = spatial.numel()
    cdtype = _compute_dtype(heatmaps.dtype, heatmaps.device)
    flat = heatmaps.reshape(-1, n).to(cdtype)
    tracking = torch.is_grad_enabled() and flat.requires_grad
    # softmax(β·x̂) with its maximum subtracted: exp() only ever sees values
    # ≤ 0. Only per-axis marginals of the weights are kept: no H×W coordinate
    # grid is ever built.
    if not tracking:
        marginals, hi, lo = _chunked_marginals(flat, beta, normalize, spatial)
    elif flat.shape[0] == 0:
        hi, lo = flat.amax(-1, keepdim=True), flat.amin(-1, keepdim=True)
        weights = torch.exp(_logits(flat, hi, lo, beta, normalize))
        marginals = _marginals(weights.reshape(-1, *spatial))
    elif normalize == "none":
        hi, lo, *marginals = _ExpMarginals.apply(flat, beta, normalize, spatial)
    else:
        # the scale depends on max and min: autograd differentiates through them
        hi, lo = flat.amax(-1, keepdim=True), flat.amin(-1, keepdim=True)
        logits = _logits(flat, hi, lo, beta, normalize)
        _, _, *marginals = _ExpMarginals.apply(logits, 1.0, "logits", spatial)
    total = marginals[0].sum(-1, keepdim=True)
    means, variances = [], []
    for marginal in marginals:
        p = marginal / total
        index = torch.arange(p.shape[-1], dtype=cdtype, device=p.device)
        # an elementwise sum, not a matmul: BLAS blocks by batch size, and a map's
        # coordinates must not depend on which other maps share its batch
        mean = (p * index).sum(-1)
        variances.append((p * (index - mean[:, None]) ** 2).sum(-1))
        means.append(mean)
    pixel = torch.stack(means, -1)
    hi, lo = hi.detach()[:, 0], lo.detach()[:, 0]
    finite = torch.isfinite(hi) & torch.isfinite(lo)
    return Decoded(
        coords=to_frame(pixel, spatial, coords).reshape(*lead, spatial_dims),
        score=hi.reshape(lead),
        spread=torch.sqrt(torch.stack(variances, -1).sum(-1)).reshape(lead),
        flat=(hi == lo).reshape(lead),
        finite=finite.reshape(lead),
    )


def hard_argmax(heatmaps: Tensor, spatial_dims: int = 2, coords: str = "pixel") -> Tensor:
    """Coordinates of each map's maximum (not differentiable).

    Ties go to the first maximum in row-major order, as ``numpy.argmax`` on the
    flattened map does; a constant map therefore gives index 0 (use
    :func:`argmax_decode` to get the ``flat`` flag).

    Args:
        heatmaps: ``(..., H, W)`` or ``(..., D, H, W)`` real tensor.
        spatial_dims: 2 for images, 3 for volumes.
        coords: ``"pixel"`` (centres at integers) or ``"normalized"`` ([-1, 1]
            with ±1 at the outer pixel centres).

    Shape:
        ``(..., H, W) -> (..., 2)`` ordered (x, y);
        ``(..., D, H, W) -> (..., 3)`` ordered (x, y, z).

    Example:
        >>> maps = torch.zeros(2, 1, 4, 6)          # (B, C, H, W), non-square
        >>> maps[0, 0, 3, 5] = 1.0                  # row 3, column 5
        >>> maps[1, 0, 1, 2] = 1.0
        >>> hard_argmax(maps).tolist()
        [[[5.0, 3.0]], [[2.0, 1.0]]]
        >>> hard_argmax(maps, coords="normalized")[0, 0].tolist()
        [1.0, 1.0]
    """
    return argmax_decode(heatmaps, spatial_dims=spatial_dims, coords=coords).coords


def soft_argmax(
    heatmaps: Tensor,
    beta: float = 1.0,
    spatial_dims: int = 2,
    normalize: str = "none",
    coords: str = "pixel",
) -> Tensor:
    """Differentiable soft-argmax: ``Σᵢ i · softmax(β · x̂)ᵢ`` over all positions.

    ``x̂`` is the map after ``normalize``:

    * ``"none"``: ``x̂ = x``, raw logits, the training case (default);
    * ``"max"``: ``x̂ = x / max|x|``;
    * ``"minmax"``: ``x̂ = (x − min) / (max − min)``, so β means the same on a
      0–255 PNG and on a 0–1 float map (the CLI's default).

    The softmax is computed with the maximum subtracted, in float32 for half
    precision and integer input (float64 input stays float64), so any β from
    1e-3 to 1e4 is stable and finite input never gives NaN. A constant map
    gives the centre of the map.

    Args:
        heatmaps: ``(..., H, W)`` or ``(..., D, H, W)`` real tensor.
        beta: inverse temperature β > 0; larger is closer to the hard argmax.
        spatial_dims: 2 for images, 3 for volumes.
        normalize: ``"none"``, ``"max"`` or ``"minmax"``, see above.
        coords: ``"pixel"`` or ``"normalized"``, as in :func:`hard_argmax`.

    Shape:
        ``(..., H, W) -> (..., 2)`` ordered (x, y);
        ``(..., D, H, W) -> (..., 3)`` ordered (x, y, z).

    Example:
        >>> maps = torch.zeros(1, 3, 5)             # H=3, W=5
        >>> maps[0, 1, 3] = 10.0
        >>> soft_argmax(maps, beta=100.0).tolist()  # close to the peak
        [[3.0, 1.0]]
        >>> maps = torch.zeros(1, 1, 4)
        >>> maps[0, 0, 1:3] = 10.0                  # two equal peaks
        >>> soft_argmax(maps, beta=100.0).tolist()  # lands between them
        [[1.5, 0.0]]
    """
    return softargmax_decode(
        heatmaps, beta=beta, spatial_dims=spatial_dims, normalize=normalize, coords=coords
    ).coords


class SoftArgmax(nn.Module):
    """``nn.Module`` wrapper of :func:`soft_argmax`, for models and losses.

    Shape:
        ``(..., H, W) -> (..., 2)`` or ``(..., D, H, W) -> (..., 3)``.

    Example:
        >>> layer = SoftArgmax(beta=10.0)
        >>> logits = torch.randn(2, 17, 64, 48, requires_grad=True)
        >>> xy = layer(logits)
        >>> xy.shape
        torch.Size([2, 17, 2])
        >>> xy.sum().backward(); logits.grad.shape
        torch.Size([2, 17, 64, 48])
    """

    def __init__(
        self,
        beta: float = 1.0,
        spatial_dims: int = 2,
        normalize: str = "none",
        coords: str = "pixel",
    ) -> None:
        super().__init__()
        check_normalize(normalize)
        check_coords(coords)
        self.beta = check_beta(beta)
        self.spatial_dims = spatial_dims
        self.normalize = normalize
        self.coords = coords

    def forward(self, heatmaps: Tensor) -> Tensor:
        return soft_argmax(
            heatmaps,
            beta=self.beta,
            spatial_dims=self.spatial_dims,
            normalize=self.normalize,
            coords=self.coords,
        )

    def extra_repr(self) -> str:
        return (
            f"beta={self.beta}, spatial_dims={self.spatial_dims}, "
            f"normalize={self.normalize!r}, coords={self.coords!r}"
        )
