"""Refining decoders: sub-pixel estimates from the neighbourhood of the hard argmax.

The global soft-argmax weighs every pixel, so a map's background pulls its
estimate toward the map's centre. These decoders start from the hard argmax and
look only at a few pixels around it:

* :func:`local_softargmax_decode`: soft-argmax over the ``(2r+1)^d`` window
  around the argmax (differentiable w.r.t. the map values);
* :func:`quarter_decode`: the classic ±0.25 px step toward the higher
  neighbour (HRNet's ``get_final_preds``, mmpose's ``refine_keypoints``);
* :func:`parabola_decode`: a three-point parabola through the log of the map
  on each axis, exact for a Gaussian peak;
* :func:`dark_decode`: DARK (Zhang et al., CVPR 2020): Gaussian smoothing,
  then one Newton step on the log of the smoothed map.

All take ``(..., H, W)`` (``spatial_dims=2``) or ``(..., D, H, W)``
(``spatial_dims=3``) and return a :class:`~heatdecode.decoders.PointEstimates`
whose ``coords`` are ordered ``(x, y)`` or ``(x, y, z)`` (x indexes W, y indexes
H, z indexes D), in the frame ``frame=`` names (pixel centres at integers by
default; see :func:`~heatdecode.decoders.to_frame`; ``coords=`` is the
deprecated old name of ``frame=``). ``score`` is the
map's raw maximum, ``flat`` and ``finite`` are as in
:func:`~heatdecode.decoders.argmax_decode`. ``border`` is True where the peak
sits too close to the map's edge for the refinement on some axis; ``skipped``
is True where the refinement was not applied for any other reason (the map is
not finite, its peak is not positive, the log-map is not concave there, …):
those maps report the hard argmax on the affected axes.

An axis of a single pixel has nothing to refine: its coordinate is 0 and it
never sets ``border``. A constant map has its argmax at index 0, so it is
reported there with ``border`` set on every longer axis (the local soft-argmax
instead reports the centre of its clipped window, see there).

All work is batched: no Python loop over maps, only over the 2 or 3 axes,
the window's offsets, the smoothing kernel's taps or DARK's few groups of
similar kernel widths.

This module holds the quarter offset and the parabola fit; the local
soft-argmax lives in :mod:`heatdecode.local` and DARK in :mod:`heatdecode.dark`,
and both are importable from here. The argmax they all start from is
:class:`heatdecode.peak.Peak`.

Pure core: imports only the standard library, numpy, torch and other core
modules; no I/O and no module state, so it can be used without the CLI stack
(``tests/test_package.py``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from heatdecode.dark import (
    DARK_SIGMA_FALLBACK,
    DARK_SIGMA_MAX,
    DARK_SIGMA_RANGE,
    DARK_TRUNCATE,
    DARK_WINDOW_FRACTION,
    dark_decode,
)
from heatdecode.decoders import PointEstimates, resolve_frame
from heatdecode.local import LocalSoftArgmax, local_soft_argmax, local_softargmax_decode
from heatdecode.options import LOCAL_BETA, LOCAL_NORMALIZE, LOCAL_RADIUS
from heatdecode.peak import LOG_FLOOR, Peak, axis_offsets, floored_log

__all__ = [
    "DARK_SIGMA_FALLBACK",
    "DARK_SIGMA_MAX",
    "DARK_SIGMA_RANGE",
    "DARK_TRUNCATE",
    "DARK_WINDOW_FRACTION",
    "LOCAL_BETA",
    "LOCAL_NORMALIZE",
    "LOCAL_RADIUS",
    "LOG_FLOOR",
    "LocalSoftArgmax",
    "dark_decode",
    "local_soft_argmax",
    "local_softargmax_decode",
    "parabola_decode",
    "quarter_decode",
]


def quarter_decode(
    heatmaps: Tensor, spatial_dims: int = 2, frame: str | None = None, *, coords: str | None = None
) -> PointEstimates:
    """The argmax moved 0.25 px toward the higher neighbour on each axis.

    ``p += 0.25 · sign(f[p+1] − f[p−1])`` per axis, as in HRNet's
    ``get_final_preds`` and mmpose's ``refine_keypoints``: equal neighbours
    leave the axis where it is. On an axis where the argmax is on the first
    or last index there is no second neighbour: that axis is not moved and
    ``border`` is True (the other axes are still refined). Not
    differentiable. On a Gaussian peak the mean error is about 0.2 px, half
    the argmax's.

    Shape:
        ``(..., H, W) -> PointEstimates`` with ``coords`` ``(..., 2)`` ordered (x, y);
        ``(..., D, H, W) -> PointEstimates`` with ``coords`` ``(..., 3)`` ordered
        (x, y, z); per-map fields ``(...)``.

    Example:
        >>> maps = torch.zeros(1, 3, 5)
        >>> maps[0, 1, 2], maps[0, 1, 3] = 1.0, 0.5   # right neighbour higher
        >>> out = quarter_decode(maps)
        >>> out.coords.tolist(), out.border.tolist()
        ([[2.25, 1.0]], [False])
    """
    frame = resolve_frame(frame, coords)
    return quarter_refine(Peak(heatmaps.detach(), spatial_dims), frame)


def quarter_refine(peak: Peak, frame: str = "pixel") -> PointEstimates:
    """:func:`quarter_decode`'s step at the peak ``peak`` holds: its argmax, or the
    position it was given (:class:`~heatdecode.peak.Peak`'s ``index``)."""
    around, _ = peak.gather(axis_offsets(peak))
    below, above = around[:, 0::2], around[:, 1::2]  # (M, d) each, x first
    edge = peak.on_edge()
    move = ~edge & peak.extent & peak.finite[:, None]
    step = torch.where(move, 0.25 * torch.sign(above - below), 0.0)
    return peak.estimates(
        peak.index.to(peak.cdtype) + step, frame, border=edge.any(-1), skipped=~peak.finite
    )


def parabola_decode(
    heatmaps: Tensor, spatial_dims: int = 2, frame: str | None = None, *, coords: str | None = None
) -> PointEstimates:
    """A parabola through the log of the map at the argmax and its two neighbours, per axis.

    With ``l = log f`` along one axis, the vertex of the parabola through
    ``l[p−1], l[p], l[p+1]`` is at ``p + ½·(l[p−1] − l[p+1]) / (l[p−1] − 2·l[p]
    + l[p+1])``: exact for a Gaussian peak, whose log is a parabola. Axes are
    fitted independently (no mixed terms, so a tilted anisotropic peak is not
    exact; :func:`dark_decode` handles that).

    Rules, each reported:

    * values are floored at ``peak · 1e-12`` before the log, so zero or
      negative neighbours give a steep (finite) parabola;
    * a map whose maximum is ≤ 0 has no log: the argmax is reported and
      ``skipped`` is True;
    * an axis where the denominator is not negative (the log-map is not
      strictly concave there, e.g. a flat top) is not moved and ``skipped``
      is True;
    * the offset is clamped to [−0.5, 0.5]: the argmax pixel is the maximum,
      so the vertex of a concave fit can't be farther (only rounding could
      push it there);
    * an axis where the argmax is on the first or last index is not moved and
      ``border`` is True; the other axes are still refined.

    Not differentiable.

    Shape:
        ``(..., H, W) -> PointEstimates`` with ``coords`` ``(..., 2)`` ordered (x, y);
        ``(..., D, H, W) -> PointEstimates`` with ``coords`` ``(..., 3)`` ordered
        (x, y, z); per-map fields ``(...)``.

    Example:
        >>> x, y = torch.arange(7.0), torch.arange(4.0)[:, None]
        >>> maps = torch.exp(-((x - 2.3) ** 2 + (y - 1.8) ** 2) / 8)  # a Gaussian at (2.3, 1.8)
        >>> parabola_decode(maps.double()).coords.round(decimals=6).tolist()
        [2.3, 1.8]
    """
    frame = resolve_frame(frame, coords)
    return parabola_refine(Peak(heatmaps.detach(), spatial_dims), frame)


def parabola_refine(peak: Peak, frame: str = "pixel") -> PointEstimates:
    """:func:`parabola_decode`'s fit at the peak ``peak`` holds: its argmax, or the
    position it was given (:class:`~heatdecode.peak.Peak`'s ``index``)."""
    around, _ = peak.gather(axis_offsets(peak))
    positive = peak.finite & (peak.score > 0)
    top = torch.where(positive, peak.score, 1.0)
    logs = floored_log(around, top)  # relative to the peak: its own log is 0
    below, above = logs[:, 0::2], logs[:, 1::2]
    curvature = below + above
    edge = peak.on_edge()
    fit = ~edge & peak.extent & positive[:, None]
    concave = curvature < 0
    move = fit & concave
    offset = 0.5 * (below - above) / torch.where(move, curvature, -1.0)
    offset = torch.where(move, offset.clamp(-0.5, 0.5), 0.0)
    skipped = ~positive | (fit & ~concave).any(-1)
    return peak.estimates(
        peak.index.to(peak.cdtype) + offset, frame, border=edge.any(-1), skipped=skipped
    )
