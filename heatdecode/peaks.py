"""Many peaks per map: :func:`find_peaks`, scikit-image's ``peak_local_max`` in torch,
batched over maps and devices, with an optional sub-pixel refinement of each peak.

Which pixels are peaks is scikit-image's rule exactly (:mod:`heatdecode.peaks_detect`
says how the greedy thinning is reproduced in a few batched rounds); the
refinement cuts a masked window around each peak and runs a point decoder of
the family there (:mod:`heatdecode.peaks_refine`).

Pure core: imports only the standard library, numpy, torch and other core
modules; no I/O and no module state.
"""

from __future__ import annotations

import math
import numbers
import operator
from typing import Any, NamedTuple

import torch
from torch import Tensor

from heatdecode.decoders import resolve_frame, to_frame
from heatdecode.options import OPTIONS, OptionError, resolve_options
from heatdecode.peaks_detect import detect
from heatdecode.peaks_refine import REFINERS, refine_peaks
from heatdecode.reductions import check_input, compute_dtype

__all__ = ["Peaks", "find_peaks"]


class Peaks(NamedTuple):
    """The peaks of a batch of maps, one row per peak, ordered by map, then rank.

    Attributes:
        coords: ``(P, d)`` ordered ``(x, y[, z])``, in the frame asked for;
            integer-valued pixel positions when not refined.
        score: ``(P,)`` the map's value at the (integer) peak.
        map_index: ``(P,)`` the row-major index of the peak's map among the
            leading dimensions (0 for a single map).
        rank: ``(P,)`` 0 for a map's highest peak, then 1, 2, …
        counts: ``(...)`` (the leading shape) the peaks of each map.
        border: ``(P,)`` the refinement reached the map's edge (as the point
            decoder's ``border``); all False when not refined.
        skipped: ``(P,)`` the refinement was not applied for another reason
            (as the point decoder's ``skipped``); all False when not refined.
        spread: ``(P,)`` the refinement's spread in pixels (local
            soft-argmax), NaN where it gives none.
    """

    coords: Tensor
    score: Tensor
    map_index: Tensor
    rank: Tensor
    counts: Tensor
    border: Tensor
    skipped: Tensor
    spread: Tensor

    def padded(self, k: int | None = None) -> tuple[Tensor, Tensor]:
        """The coordinates as a ``(..., K, d)`` tensor and which slots hold a peak ``(..., K)``.

        Slot ``j`` of a map holds its peak of rank ``j``; ``K`` is the most peaks
        of any map (``k=None``) or ``k`` (a map's peaks beyond it are left out);
        empty slots are NaN and not ``valid``.

        Shape:
            ``coords`` ``(..., K, d)``, ``valid`` ``(..., K)`` with ``...`` the
            maps' leading shape (:attr:`counts`'s).

        Example:
            >>> maps = torch.zeros(2, 5, 5)
            >>> maps[0, 1, 1] = maps[0, 3, 3] = maps[1, 2, 2] = 1.0
            >>> coords, valid = find_peaks(maps, exclude_border=False).padded()
            >>> coords.shape, valid.tolist()
            (torch.Size([2, 2, 2]), [[True, True], [True, False]])
            >>> coords[1].tolist()
            [[2.0, 2.0], [nan, nan]]
        """
        lead, d = self.counts.shape, self.coords.shape[-1]
        if k is None:
            k = int(self.counts.max()) if self.counts.numel() else 0
        elif isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 0:
            raise ValueError(f"k must be an integer >= 0 or None, got {k!r}")
        m, k = self.counts.numel(), int(k)
        device = self.coords.device
        coords = torch.full((m, k, d), math.nan, dtype=self.coords.dtype, device=device)
        valid = torch.zeros((m, k), dtype=torch.bool, device=device)
        slot = self.rank < k
        coords[self.map_index[slot], self.rank[slot]] = self.coords[slot]
        valid[self.map_index[slot], self.rank[slot]] = True
        return coords.reshape(*lead, k, d), valid.reshape(*lead, k)


def find_peaks(
    heatmaps: Tensor,
    spatial_dims: int = 2,
    min_distance: int = 1,
    threshold_abs: float | None = None,
    threshold_rel: float | None = None,
    exclude_border: bool | int | tuple[int, ...] = True,
    num_peaks: int | None = None,
    refine: str | None = None,
    frame: str | None = None,
    *,
    coords: str | None = None,
    **refine_options: Any,
) -> Peaks:
    """Every peak of every map, as ``skimage.feature.peak_local_max`` finds them,
    optionally refined to sub-pixel positions.

    **Which pixels** (exactly ``peak_local_max(map, min_distance, threshold_abs,
    threshold_rel, exclude_border, num_peaks)`` with ``p_norm=inf``, map by
    map, in its order): a pixel equal to the maximum of its ``(2·min_distance
    + 1)^d`` neighbourhood (clipped to the map), strictly above ``max(threshold_abs,
    threshold_rel · max)`` (``threshold_abs`` defaults to the map's minimum,
    so a constant map has none), not within ``exclude_border`` px of an edge
    (``True``: ``min_distance``; ``False``/0: none; a tuple: per axis, array
    order), then thinned so that no two are closer than ``min_distance``
    (Chebyshev): higher first, equal heights in row-major order, a peak kept
    unless a kept one is too close; then a map's first ``num_peaks``. Ties and
    plateaus give scikit-image's answer. On purpose different: a map holding
    NaN or ±Inf has no peaks; on integer maps the order is by value even
    where scikit-image's ``-intensities`` wraps around (unsigned 0, signed
    minimum: only reachable with ``threshold_abs`` below them).

    **Refinement** (``refine=``): ``None`` or ``"argmax"`` keep the integer
    pixel; ``"quarter"``, ``"parabola"``, ``"dark"`` and ``"local-softargmax"``
    refine each peak like the point decoder of that name (``refine_options``:
    its ``beta``, ``normalize``, ``radius``, ``sigma``; options it doesn't take
    are ignored, as in :func:`~heatdecode.registry.decode`), with the peak
    fixed at its pixel and only in a window around it: ``radius`` px for the
    local soft-argmax, 1 for quarter and parabola, DARK's kernel radius + 1
    (each peak's own σ when estimated). In the window, every pixel closer
    (Chebyshev) to another peak of the result than to this one (ties to the
    higher peak), farther than the window's radius, or higher than this peak
    is replaced with the map's minimum first, so a strong neighbour can't
    drag a weak peak. ``border``/``skipped`` are the decoder's flags; the
    local soft-argmax normalises with the peak's value and the map's minimum.
    ``"softargmax"`` sums over the whole map: no meaning per peak, refused.
    Mean error on noise-free σ=1.5 px Gaussian spots, many per map, ≥ 4σ
    apart: parabola < 0.001 px; DARK 0.012 (2D), 0.017 (3D), as its
    smoothing meets the mask at a close neighbour (< 0.001 with ``sigma=0``);
    local soft-argmax (defaults) 0.04; quarter 0.2; the integer pixel 0.36.

    Not differentiable (the maps are detached). All work is batched: no
    loop over maps or peaks, only over chunks of maps or peaks for memory,
    the thinning's rounds and DARK's few kernel widths.

    Args:
        heatmaps: ``(..., H, W)`` or ``(..., D, H, W)`` real tensor, any device.
        spatial_dims: 2 for images, 3 for volumes.
        min_distance: integer ≥ 1.
        threshold_abs, threshold_rel: finite numbers or ``None``.
        exclude_border: ``True``, ``False``, an integer ≥ 0 or a tuple of them.
        num_peaks: the most peaks per map (integer ≥ 1) or ``None``: all.
        refine: a decoder's name (see above) or ``None``.
        frame: the output frame (default ``"pixel"``: pixel centres at the
            integers, x indexing W, y H, z D; ``"half-pixel"``,
            ``"normalized"``, ``"normalized-edges"``, see
            :func:`~heatdecode.decoders.to_frame`), relative to the map.
        coords: deprecated old name of ``frame``.

    Shape:
        ``(..., H, W)`` -> :class:`Peaks` with ``coords`` ``(P, 2)`` ordered (x, y),
        ``(..., D, H, W)`` -> ``coords`` ``(P, 3)`` ordered (x, y, z); per-peak
        fields ``(P,)``, ``counts`` ``(...)``. :meth:`Peaks.padded` gives
        ``(..., K, d)``.

    Example:
        >>> maps = torch.zeros(2, 6, 7)
        >>> maps[0, 2, 4], maps[0, 4, 2], maps[1, 3, 3] = 0.5, 1.0, 1.0
        >>> found = find_peaks(maps)
        >>> found.coords.tolist(), found.map_index.tolist(), found.rank.tolist()
        ([[2.0, 4.0], [4.0, 2.0], [3.0, 3.0]], [0, 0, 1], [0, 1, 0])
        >>> found.counts.tolist()
        [2, 1]
        >>> x, y = torch.arange(20.0, dtype=torch.float64), torch.arange(16.0)[:, None]
        >>> spot = lambda cx, cy: torch.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 4.5)
        >>> maps = spot(5.3, 4.6) + 0.6 * spot(13.8, 10.2)   # sigma 1.5
        >>> find_peaks(maps, min_distance=3, refine="parabola").coords.round(decimals=3).tolist()
        [[5.3, 4.6], [13.8, 10.2]]
    """
    frame = resolve_frame(frame, coords)
    lead, spatial = check_input(heatmaps, spatial_dims)
    min_distance = _count("min_distance", min_distance)
    num_peaks = None if num_peaks is None else _count("num_peaks", num_peaks)
    threshold_abs = _finite("threshold_abs", threshold_abs)
    threshold_rel = _finite("threshold_rel", threshold_rel)
    border = _border_widths(exclude_border, min_distance, spatial_dims)
    decoder, options = _refiner(refine, refine_options)
    maps = _widened(heatmaps.detach().reshape(-1, spatial.numel()))
    widths = torch.tensor(border[::-1], device=maps.device)
    found = detect(maps, spatial, min_distance, threshold_abs, threshold_rel, widths, num_peaks)
    cdtype = compute_dtype(maps.dtype, maps.device)
    p = found.row.numel()
    if decoder is None:
        pixel = found.index.to(cdtype)
        flags = torch.zeros(p, dtype=torch.bool, device=maps.device)
        border_hit, skipped = flags, flags.clone()
        spread = torch.full((p,), math.nan, dtype=cdtype, device=maps.device)
    else:
        refined = refine_peaks(maps, spatial, found, decoder, options, min_distance)
        pixel, border_hit, skipped = refined.coords, refined.border, refined.skipped
        spread = refined.spread
    return Peaks(
        coords=to_frame(pixel, spatial, frame),
        score=torch.take(maps, found.row * maps.shape[1] + found.flat).to(cdtype),
        map_index=found.row,
        rank=found.rank,
        counts=found.counts.reshape(lead),
        border=border_hit,
        skipped=skipped,
        spread=spread,
    )


#: unsigned dtypes torch has few kernels for, and an exact wider dtype for each
WIDENED = {torch.uint16: torch.int32, torch.uint32: torch.int64, torch.uint64: torch.float64}


def _widened(maps: Tensor) -> Tensor:
    """``maps`` in a dtype torch can filter and sort: 16- and 32-bit unsigned maps (16-bit
    PNGs) as the next signed integer, exactly; 64-bit ones as float64 (exact to 2^53)."""
    return maps.to(WIDENED[maps.dtype]) if maps.dtype in WIDENED else maps


def _count(name: str, value: Any) -> int:
    """An integer ≥ 1 (numpy integers too), else ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise OptionError(name, f"must be an integer >= 1, got {value!r}")
    return int(value)


def _finite(name: str, value: Any) -> float | None:
    """``None`` or a finite real number as a float, else ``ValueError`` naming ``name``."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise OptionError(name, f"must be a finite number or None, got {value!r}")
    if not math.isfinite(float(value)):
        raise OptionError(name, f"must be a finite number or None, got {value!r}")
    return float(value)


def _border_widths(exclude_border: Any, min_distance: int, d: int) -> list[int]:
    """Each axis' excluded border in pixels, array order (scikit-image's rule)."""
    if isinstance(exclude_border, bool):
        return [min_distance if exclude_border else 0] * d
    if isinstance(exclude_border, tuple):
        if len(exclude_border) != d:
            raise OptionError(
                "exclude_border", f"as a tuple needs {d} values (array order), got {exclude_border}"
            )
        widths = list(exclude_border)
    else:
        widths = [exclude_border] * d
    for width in widths:
        if isinstance(width, bool) or not isinstance(width, numbers.Integral):
            raise TypeError(
                f"exclude_border must be a bool, an integer or a tuple of integers, "
                f"got {exclude_border!r}"
            )
        if width < 0:
            raise OptionError("exclude_border", f"must be >= 0, got {exclude_border!r}")
    return [operator.index(w) for w in widths]


def _refiner(refine: str | None, given: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """The decoder refining each peak (``None``: none) and its checked options."""
    unknown = sorted(set(given) - set(OPTIONS))
    if unknown:
        raise TypeError(f"find_peaks() got an unexpected keyword argument {unknown[0]!r}")
    if refine is None or refine == "argmax":
        return None, {}
    if refine == "softargmax":
        raise OptionError(
            "refine",
            "can't be 'softargmax': the global soft-argmax sums over the whole map, "
            "it has no meaning at one peak of many (use 'local-softargmax')",
        )
    if refine not in REFINERS:
        choices = ", ".join(["argmax", *REFINERS])
        raise OptionError("refine", f"must be None or one of {choices}, got {refine!r}")
    return refine, resolve_options(refine, **given)
