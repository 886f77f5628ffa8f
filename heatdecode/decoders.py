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
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn

Normalize = Literal["none", "max", "minmax"]
CoordFrame = Literal["pixel", "half-pixel", "normalized", "normalized-edges"]

NORMALIZE_CHOICES: tuple[str, ...] = ("none", "max", "minmax")
COORD_CHOICES: tuple[str, ...] = ("pixel", "half-pixel", "normalized", "normalized-edges")


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


def _check_coords(coords: str) -> None:
    if coords not in COORD_CHOICES:
        raise ValueError(f"coords must be one of {COORD_CHOICES}, got {coords!r}")


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
    _check_coords(coords)
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
    _check_coords(coords)
    lead, spatial = _check_input(heatmaps, spatial_dims)
    n = spatial.numel()
    flat = heatmaps.reshape(-1, n)
    cdtype = _compute_dtype(heatmaps.dtype, heatmaps.device)
    # torch.argmax documents the first maximal index on every backend; this is
    # numpy's tie rule on the flattened (row-major) map.
    index = flat.detach().argmax(-1)
    hi, lo = flat.detach().amax(-1), flat.detach().amin(-1)
    finite = torch.isfinite(hi) & torch.isfinite(lo)
    axes = []
    rest = index
    for size in reversed(spatial):  # x (W) first, then y (H), then z (D)
        axes.append(rest % size)
        rest = torch.div(rest, size, rounding_mode="floor")
    pixel = torch.stack(axes, -1).to(cdtype)
    out_coords = to_frame(pixel, spatial, coords)
    return Decoded(
        coords=out_coords.reshape(*lead, spatial_dims),
        score=hi.to(cdtype).reshape(lead),
        spread=None,
        flat=(hi == lo).reshape(lead),
        finite=finite.reshape(lead),
    )


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
        if out is None:
            return (flat - hi) * beta
        return torch.sub(flat, hi, out=out).mul_(beta)
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


def _chunked_marginals(
    flat: Tensor, hi: Tensor, lo: Tensor, beta: float, normalize: str, spatial: torch.Size
) -> list[Tensor]:
    """:func:`_marginals` of ``exp(logits)`` without autograd, a few maps at a time.

    On CPU each chunk's weights stay in cache and one buffer is reused, which is
    several times faster than materialising the whole batch's softmax and keeps
    the extra memory to a few MB; on GPUs chunks are large so launches stay few.
    """
    m, n = flat.shape
    if m == 0:  # an empty batch: empty marginals, as the unchunked path gives
        return _marginals(flat.reshape(0, *spatial))
    budget = _CHUNK_ELEMENTS_GPU if flat.device.type != "cpu" else _CHUNK_ELEMENTS_CPU
    rows = max(1, min(m, budget // n))
    buffer = torch.empty((rows, n), dtype=flat.dtype, device=flat.device)
    parts: list[list[Tensor]] = [[] for _ in spatial]
    for start in range(0, m, rows):
        stop = min(m, start + rows)
        chunk = slice(start, stop)
        weights = buffer[: stop - start]
        _logits(flat[chunk], hi[chunk], lo[chunk], beta, normalize, out=weights).exp_()
        for k, marginal in enumerate(_marginals(weights.view(-1, *spatial))):
            parts[k].append(marginal)
    return [torch.cat(p) if len(p) > 1 else p[0] for p in parts]


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
    _check_coords(coords)
    if normalize not in NORMALIZE_CHOICES:
        raise ValueError(f"normalize must be one of {NORMALIZE_CHOICES}, got {normalize!r}")
    beta = float(beta)
    if not (beta > 0 and beta < float("inf")):
        raise ValueError(f"beta must be a finite number > 0, got {beta}")
    lead, spatial = _check_input(heatmaps, spatial_dims)
    n = spatial.numel()
    cdtype = _compute_dtype(heatmaps.dtype, heatmaps.device)
    flat = heatmaps.reshape(-1, n).to(cdtype)
    tracking = torch.is_grad_enabled() and flat.requires_grad
    # amax + amin, not aminmax: on CPU the fused op is several times slower
    hi, lo = flat.amax(-1, keepdim=True), flat.amin(-1, keepdim=True)
    # softmax(β·x̂) with its maximum subtracted: exp() only ever sees values
    # ≤ 0. Only per-axis marginals of the weights are kept: no H×W coordinate
    # grid is ever built.
    if tracking:
        weights = torch.exp(_logits(flat, hi, lo, beta, normalize))
        marginals = _marginals(weights.reshape(-1, *spatial))
    else:
        marginals = _chunked_marginals(flat, hi, lo, beta, normalize, spatial)
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
        if normalize not in NORMALIZE_CHOICES:
            raise ValueError(f"normalize must be one of {NORMALIZE_CHOICES}, got {normalize!r}")
        _check_coords(coords)
        self.beta = float(beta)
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
