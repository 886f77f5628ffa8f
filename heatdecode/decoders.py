"""Heatmap decoders: hard argmax and soft-argmax, batched, in pure torch.

Every decoder takes heatmaps shaped ``(..., H, W)`` (``spatial_dims=2``) or
``(..., D, H, W)`` (``spatial_dims=3``, torch's order for volumes) with any number
of leading batch dimensions, and returns coordinates shaped ``(..., 2)`` ordered
``(x, y)`` or ``(..., 3)`` ordered ``(x, y, z)``: x indexes W, y indexes H and z
indexes D. The full result is a :class:`PointEstimates`.

Four coordinate frames are offered (the ``frame=`` keyword; ``coords=`` is its
deprecated old name and still works):

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

The kernels shared with the refining decoders are in :mod:`heatdecode.reductions`,
the soft-argmax's chunked softmax in :mod:`heatdecode.softmax`.

Pure core: imports only the standard library, numpy, torch and other core
modules; no I/O and no module state, so it can be used without the CLI stack
(``tests/test_package.py``).
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from heatdecode.options import (  # noqa: F401  (the choices and BETA_MAX are re-exported)
    BETA_MAX,
    COORD_CHOICES,
    NORMALIZE_CHOICES,
    check_beta,
    check_coords,
    check_normalize,
)
from heatdecode.reductions import argmax_extremes, check_input, compute_dtype, unravel
from heatdecode.softmax import moments, softmax_marginals
from heatdecode.status import (
    estimate_flags,
    should_check,
    statuses,
    warn_if_background_dominated,
)

__all__ = [
    "BETA_MAX",
    "COORD_CHOICES",
    "NORMALIZE_CHOICES",
    "CoordFrame",
    "Decoded",
    "Normalize",
    "PointEstimates",
    "SoftArgmax",
    "argmax_decode",
    "hard_argmax",
    "resolve_frame",
    "soft_argmax",
    "softargmax_decode",
    "to_frame",
    "unravel",
]

Normalize = Literal["none", "max", "minmax"]
CoordFrame = Literal["pixel", "half-pixel", "normalized", "normalized-edges"]


class PointEstimates(NamedTuple):
    """What a decoder returns for a batch of maps: for every map, its coordinates,
    score, spread and flags.

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
        low_contrast: ``(...)`` from :func:`~heatdecode.registry.decode`, for
            the soft-argmax decoders: True where the softmax is dominated by
            the background (β·(max x̂ − min x̂) < ln N); else ``None``.
        multimodal: ``(...)`` from :func:`~heatdecode.registry.decode`: True
            where the map has a second separated peak at least half as high;
            else ``None`` (the decoder functions themselves don't compute it).

    ``(...)`` is the maps' batch shape, e.g. ``(B, C)`` for ``(B, C, H, W)``.
    :attr:`flags` and :attr:`status` rank these as the CLI's rows do
    (:mod:`heatdecode.status`).

    Example:
        >>> from heatdecode import decode
        >>> maps = torch.zeros(1, 3, 9, 20)                      # (B, C, H, W)
        >>> maps[0, 0, 4, 5] = 1.0                               # one peak
        >>> maps[0, 1, 4, 3], maps[0, 1, 4, 15] = 1.0, 0.8       # two peaks
        >>> out = decode(maps, "softargmax")                     # channel 2 is flat
        >>> out.status.shape, out.status.tolist()
        ((1, 3), [['ok', 'multimodal', 'flat']])
        >>> decode(maps, "softargmax", beta=2.0).status.tolist()
        [['low-contrast', 'low-contrast', 'flat']]
    """

    coords: Tensor
    score: Tensor
    spread: Tensor | None
    flat: Tensor
    finite: Tensor
    border: Tensor | None = None
    skipped: Tensor | None = None
    low_contrast: Tensor | None = None
    multimodal: Tensor | None = None

    @property
    def flags(self) -> dict[str, Tensor]:
        """The flags behind :attr:`status`, by status name, each ``(...)`` bool;
        those this result doesn't carry (``None`` fields) are left out."""
        return estimate_flags(self)

    @property
    def status(self) -> np.ndarray:
        """``(...)`` numpy array of each map's most serious status name
        (:data:`heatdecode.status.STATUSES` order); ``"ok"`` if none applies."""
        return statuses(self.flags)


#: The old name of :class:`PointEstimates`, kept so existing code keeps working.
Decoded = PointEstimates


def resolve_frame(frame: str | None, coords: str | None, default: str | None = "pixel") -> str:
    """The output frame asked for by ``frame=`` or by its deprecated alias ``coords=``.

    Neither given: ``default``; both given: ``TypeError``.

    Example:
        >>> resolve_frame(None, "normalized"), resolve_frame("half-pixel", None)
        ('normalized', 'half-pixel')
    """
    if coords is not None:
        if frame is not None:
            raise TypeError("give frame= or coords= (its deprecated old name), not both")
        frame = coords
    if frame is None:
        if default is None:
            raise TypeError("missing the output frame: frame=")
        frame = default
    return check_coords(frame)


def to_frame(
    pixel_coords: Tensor,
    spatial: tuple[float, ...],
    frame: str | None = None,
    *,
    coords: str | None = None,
) -> Tensor:
    """Convert ``(..., d)`` pixel coordinates ordered (x, y[, z]) to the frame ``frame``.

    ``spatial`` is the map's shape in array order, ``(H, W)`` or ``(D, H, W)``
    (it may be fractional, for an image that a strided heatmap covers).
    ``coords=`` is the deprecated old name of ``frame``.

    Example:
        >>> pixel = torch.tensor([[0.0, 2.0], [9.0, 1.0]])   # on a 3 x 10 map
        >>> to_frame(pixel, (3, 10), "normalized").tolist()
        [[-1.0, 1.0], [1.0, 0.0]]
        >>> to_frame(pixel, (3, 10), "normalized-edges").mul(60).round().tolist()
        [[-54.0, 40.0], [54.0, 0.0]]
        >>> to_frame(pixel, (3, 10), frame="half-pixel").tolist()
        [[0.5, 2.5], [9.5, 1.5]]
    """
    frame = resolve_frame(frame, coords, default=None)
    if frame == "pixel":
        return pixel_coords
    if frame == "half-pixel":
        return pixel_coords + 0.5
    sizes = torch.tensor(
        list(reversed(spatial)), dtype=pixel_coords.dtype, device=pixel_coords.device
    )
    if frame == "normalized-edges":
        return (2 * pixel_coords + 1) / sizes - 1
    # An axis of a single pixel has no extent between centres: its only centre is 0.
    half = torch.clamp(sizes - 1, min=1) / 2
    centred = pixel_coords - (sizes - 1) / 2
    return centred / half


def argmax_decode(
    heatmaps: Tensor, spatial_dims: int = 2, frame: str | None = None, *, coords: str | None = None
) -> PointEstimates:
    """Hard argmax with its score; see :func:`hard_argmax` for the contract.

    Shape:
        ``(..., H, W)`` or ``(..., D, H, W)`` -> :class:`PointEstimates` with
        ``coords`` of shape ``(..., spatial_dims)`` and per-map fields of
        shape ``(...)``.

    Example:
        >>> maps = torch.zeros(1, 3, 4)
        >>> maps[0, 2, 1] = 5.0
        >>> out = argmax_decode(maps)
        >>> out.coords.tolist(), out.score.tolist(), out.flat.tolist()
        ([[1.0, 2.0]], [5.0], [False])
    """
    frame = resolve_frame(frame, coords)
    lead, spatial = check_input(heatmaps, spatial_dims)
    index, hi, lo = argmax_extremes(heatmaps.reshape(-1, spatial.numel()))
    cdtype = compute_dtype(heatmaps.dtype, heatmaps.device)
    return PointEstimates(
        coords=to_frame(unravel(index, spatial).to(cdtype), spatial, frame).reshape(
            *lead, spatial_dims
        ),
        score=hi.to(cdtype).reshape(lead),
        spread=None,
        flat=(hi == lo).reshape(lead),
        finite=(torch.isfinite(hi) & torch.isfinite(lo)).reshape(lead),
    )


def softargmax_decode(
    heatmaps: Tensor,
    beta: float = 1.0,
    spatial_dims: int = 2,
    normalize: str = "none",
    frame: str | None = None,
    *,
    coords: str | None = None,
) -> PointEstimates:
    """Soft-argmax with its score and spread; see :func:`soft_argmax` for the contract.

    Shape:
        ``(..., H, W)`` or ``(..., D, H, W)`` -> :class:`PointEstimates` with
        ``coords`` of shape ``(..., spatial_dims)`` and per-map fields of
        shape ``(...)``.

    Example:
        >>> maps = torch.zeros(2, 3)
        >>> out = softargmax_decode(maps)  # a constant map: the centre, flagged
        >>> out.coords.tolist(), out.flat.item()
        ([1.0, 0.5], True)
    """
    frame = resolve_frame(frame, coords)
    return _softargmax(heatmaps, beta, spatial_dims, normalize, frame)[0]


def _softargmax(
    heatmaps: Tensor, beta: float, spatial_dims: int, normalize: str, frame: str
) -> tuple[PointEstimates, Tensor]:
    """:func:`softargmax_decode`, with each map's minimum ``(...)`` (for the warning)."""
    check_normalize(normalize)
    beta = check_beta(beta)
    lead, spatial = check_input(heatmaps, spatial_dims)
    cdtype = compute_dtype(heatmaps.dtype, heatmaps.device)
    flat = heatmaps.reshape(-1, spatial.numel()).to(cdtype)
    # softmax(β·x̂) with its maximum subtracted: exp() only ever sees values
    # ≤ 0. Only per-axis marginals of the weights are kept: no H×W coordinate
    # grid is ever built.
    marginals, hi, lo = softmax_marginals(flat, beta, normalize, spatial)
    pixel, spread = moments(marginals, cdtype)
    hi, lo = hi.detach()[:, 0], lo.detach()[:, 0]
    finite = torch.isfinite(hi) & torch.isfinite(lo)
    estimates = PointEstimates(
        coords=to_frame(pixel, spatial, frame).reshape(*lead, spatial_dims),
        score=hi.reshape(lead),
        spread=spread.reshape(lead),
        flat=(hi == lo).reshape(lead),
        finite=finite.reshape(lead),
    )
    return estimates, lo.reshape(lead)


def hard_argmax(
    heatmaps: Tensor, spatial_dims: int = 2, frame: str | None = None, *, coords: str | None = None
) -> Tensor:
    """Coordinates of each map's maximum (not differentiable).

    Ties go to the first maximum in row-major order, as ``numpy.argmax`` on the
    flattened map does; a constant map therefore gives index 0 (use
    :func:`argmax_decode` to get the ``flat`` flag).

    Args:
        heatmaps: ``(..., H, W)`` or ``(..., D, H, W)`` real tensor.
        spatial_dims: 2 for images, 3 for volumes.
        frame: the output frame, ``"pixel"`` (default: centres at integers),
            ``"half-pixel"``, ``"normalized"`` ([-1, 1] with ±1 at the outer
            pixel centres) or ``"normalized-edges"``; see :func:`to_frame`.
        coords: deprecated old name of ``frame``.

    Shape:
        ``(..., H, W) -> (..., 2)`` ordered (x, y);
        ``(..., D, H, W) -> (..., 3)`` ordered (x, y, z).

    Example:
        >>> maps = torch.zeros(2, 1, 4, 6)          # (B, C, H, W), non-square
        >>> maps[0, 0, 3, 5] = 1.0                  # row 3, column 5
        >>> maps[1, 0, 1, 2] = 1.0
        >>> hard_argmax(maps).tolist()
        [[[5.0, 3.0]], [[2.0, 1.0]]]
        >>> hard_argmax(maps, frame="normalized")[0, 0].tolist()
        [1.0, 1.0]
    """
    frame = resolve_frame(frame, coords)
    return argmax_decode(heatmaps, spatial_dims=spatial_dims, frame=frame).coords


def soft_argmax(
    heatmaps: Tensor,
    beta: float = 1.0,
    spatial_dims: int = 2,
    normalize: str = "none",
    frame: str | None = None,
    *,
    coords: str | None = None,
    warn: bool = True,
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

    A map whose softmax is nearly uniform, ``β·(max x̂ − min x̂) < ln N`` (N
    positions), gives nearly the map's centre: the call then warns with
    :class:`~heatdecode.status.BackgroundDominatedWarning`, once per calling
    line (Python's default filter). The check is cheap and never breaks a
    training step: it is skipped when autograd flows into ``heatmaps``, when
    compiling or tracing, and on accelerators, where it would be a device sync
    (:func:`~heatdecode.status.should_check`). ``warn=False`` or
    ``warnings.simplefilter("ignore", BackgroundDominatedWarning)`` silences it.

    Args:
        heatmaps: ``(..., H, W)`` or ``(..., D, H, W)`` real tensor.
        beta: inverse temperature β > 0; larger is closer to the hard argmax.
        spatial_dims: 2 for images, 3 for volumes.
        normalize: ``"none"``, ``"max"`` or ``"minmax"``, see above.
        frame: the output frame, as in :func:`hard_argmax` (default ``"pixel"``).
        coords: deprecated old name of ``frame``.
        warn: whether to check for a background-dominated map (see above).

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
    frame = resolve_frame(frame, coords)
    estimates, lo = _softargmax(heatmaps, beta, spatial_dims, normalize, frame)
    if warn and should_check(heatmaps):
        n = math.prod(heatmaps.shape[-spatial_dims:])
        warn_if_background_dominated(estimates.score, lo, beta, normalize, n)
    return estimates.coords


class SoftArgmax(nn.Module):
    """``nn.Module`` wrapper of :func:`soft_argmax`, for models and losses.

    ``frame`` is the output frame (``coords=`` is its deprecated old name,
    and :attr:`coords` an alias of the attribute); ``warn`` is
    :func:`soft_argmax`'s (the background check).

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
        frame: str | None = None,
        *,
        coords: str | None = None,
        warn: bool = True,
    ) -> None:
        super().__init__()
        check_normalize(normalize)
        self.frame = resolve_frame(frame, coords)
        self.beta = check_beta(beta)
        self.spatial_dims = spatial_dims
        self.normalize = normalize
        self.warn = warn

    @property
    def coords(self) -> str:
        """Deprecated alias of :attr:`frame`."""
        return self.frame

    @coords.setter
    def coords(self, value: str) -> None:
        self.frame = value

    def forward(self, heatmaps: Tensor) -> Tensor:
        return soft_argmax(
            heatmaps,
            beta=self.beta,
            spatial_dims=self.spatial_dims,
            normalize=self.normalize,
            frame=self.frame,
            warn=self.warn,
        )

    def extra_repr(self) -> str:
        return (
            f"beta={self.beta}, spatial_dims={self.spatial_dims}, "
            f"normalize={self.normalize!r}, frame={self.frame!r}"
        )
