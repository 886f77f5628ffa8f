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
(``spatial_dims=3``) and return a :class:`~heatdecode.decoders.Decoded` whose
``coords`` are ordered ``(x, y)`` or ``(x, y, z)`` (x indexes W, y indexes H, z
indexes D), in the frame ``coords`` names (pixel centres at integers by
default; see :func:`~heatdecode.decoders.to_frame`). ``score`` is the
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

Pure core: imports only the standard library, numpy, torch and other core
modules (decoders, refine, status, layouts, frames, family); no I/O and no
module state, so it can be used without the CLI stack (``tests/test_package.py``).
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

from heatdecode.decoders import (
    Decoded,
    SoftArgmax,
    _argmax_extremes,
    _check_input,
    _compute_dtype,
    _logits,
    to_frame,
    unravel,
)
from heatdecode.options import (  # noqa: F401  (LOCAL_* and DARK_SIGMA_MAX are re-exported)
    DARK_SIGMA_MAX,
    LOCAL_BETA,
    LOCAL_NORMALIZE,
    LOCAL_RADIUS,
    check_beta,
    check_coords,
    check_normalize,
    check_radius,
    check_sigma,
)

# Logs are taken of max(value, peak·LOG_FLOOR): a zero or negative neighbour of
# the peak then reads as "27.6 nepers below the peak" instead of -inf or NaN.
LOG_FLOOR = 1e-12

# The range an estimated DARK σ is clamped to, and the σ used for a map that
# allows no estimate (the σ most pose heatmaps are trained with).
DARK_SIGMA_RANGE = (0.5, 10.0)
DARK_SIGMA_FALLBACK = 2.0
# The smoothing kernel is truncated at this many σ, rounded to whole pixels
# (the mass beyond is < 1e-4).
DARK_TRUNCATE = 4.0


# ---------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------


class _Peak:
    """The hard argmax of a batch of maps, flattened to ``M`` maps.

    ``values`` is the ``(M, N)`` view of the maps in their own dtype (gathered
    values are converted afterwards, so no full-size copy is made), ``index``
    the ``(M, d)`` integer argmax ordered (x, y[, z]), ``sizes`` the axis
    lengths in that order.
    """

    def __init__(self, heatmaps: Tensor, spatial_dims: int) -> None:
        _check_input(heatmaps, spatial_dims)
        self.spatial = heatmaps.shape[-spatial_dims:]
        self.lead = heatmaps.shape[:-spatial_dims]
        self.dims = spatial_dims
        self.cdtype = _compute_dtype(heatmaps.dtype, heatmaps.device)
        self.values = heatmaps.reshape(-1, self.spatial.numel())
        device = heatmaps.device
        # one pass for the argmax, the max and the min (argmax_decode's)
        index, hi, lo = _argmax_extremes(self.values)
        self.index = unravel(index, self.spatial)
        self.score = hi.to(self.cdtype)
        self.low = lo.to(self.cdtype)  # the map's minimum, for minmax normalisation
        self.flat = hi == lo
        self.finite = torch.isfinite(hi) & torch.isfinite(lo)
        self.sizes = torch.tensor(list(reversed(self.spatial)), device=device)
        strides = [1]
        for n in list(reversed(self.spatial))[:-1]:
            strides.append(strides[-1] * n)
        self.strides = torch.tensor(strides, device=device)
        # singleton axes have no neighbours and nothing to refine
        self.extent = self.sizes > 1

    def gather(self, offsets: Tensor, values: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Values at ``index + offsets`` (``(K, d)``, x first): ``(M, K)`` and a validity mask.

        Positions outside the map read the nearest pixel's value; ``valid``
        says which ones were inside.
        """
        source = self.values if values is None else values
        where = self.index[:, None, :] + offsets[None]
        valid = ((where >= 0) & (where < self.sizes)).all(-1)
        where = torch.minimum(torch.clamp(where, min=0), self.sizes - 1)
        picked = source.gather(1, (where * self.strides).sum(-1))
        return picked.to(self.cdtype), valid

    def on_edge(self) -> Tensor:
        """``(M, d)``: the argmax is on the first or last index of a longer-than-1 axis."""
        edge = (self.index == 0) | (self.index == self.sizes - 1)
        return edge & self.extent

    def decoded(
        self,
        pixel: Tensor,
        coords: str,
        border: Tensor,
        skipped: Tensor,
        spread: Tensor | None = None,
    ) -> Decoded:
        lead, d = self.lead, self.dims
        return Decoded(
            coords=to_frame(pixel, self.spatial, coords).reshape(*lead, d),
            score=self.score.reshape(lead),
            spread=None if spread is None else spread.reshape(lead),
            flat=self.flat.reshape(lead),
            finite=self.finite.reshape(lead),
            border=border.reshape(lead),
            skipped=skipped.reshape(lead),
        )


def _axis_offsets(peak: _Peak) -> Tensor:
    """``(2d, d)`` offsets ``-e_0, +e_0, -e_1, +e_1, …`` (x first)."""
    eye = torch.eye(peak.dims, dtype=torch.long, device=peak.index.device)
    return torch.stack([eye, -eye], 1).flip(1).reshape(-1, peak.dims)


def _floored_log(values: Tensor, peak: Tensor) -> Tensor:
    """``log(max(values / peak, LOG_FLOOR))`` for ``(M, K)`` values and ``(M,)`` positive peaks.

    Relative to the peak, so the peak's own log is 0 and a tiny positive peak
    (1e-40, say) can't underflow the floor to 0 and give log(0) = -inf; the
    derivatives that use these logs only ever need differences.
    """
    return torch.log(torch.clamp(values / peak[:, None], min=LOG_FLOOR))


# ---------------------------------------------------------------------------
# Local soft-argmax
# ---------------------------------------------------------------------------


def _window_radii(radius: int, spatial: torch.Size) -> list[int]:
    """The window's radius on each axis, x first: ``radius`` clamped to the axis.

    Offsets beyond ``n − 1`` on an axis of ``n`` pixels fall outside the map
    from any argmax and get zero weight, so leaving them out changes nothing,
    and a huge ``radius`` costs at most ``(2n − 1)`` offsets per axis instead
    of ``2r + 1``: the window never has more than 2^d times the map's pixels.
    """
    return [min(radius, n - 1) for n in reversed(spatial)]


def _window_offsets(radii: list[int], device: torch.device) -> Tensor:
    """``(K, d)`` offsets of the window, x first, x varying fastest (row-major order)."""
    spans = [torch.arange(-r, r + 1, device=device) for r in reversed(radii)]
    grids = torch.meshgrid(*spans, indexing="ij")  # array order: x (the last) fastest
    return torch.stack([g.reshape(-1) for g in reversed(grids)], -1)


def local_softargmax_decode(
    heatmaps: Tensor,
    beta: float = LOCAL_BETA,
    spatial_dims: int = 2,
    normalize: str = LOCAL_NORMALIZE,
    coords: str = "pixel",
    radius: int = LOCAL_RADIUS,
) -> Decoded:
    """Soft-argmax restricted to the ``(2r+1)^d`` window around the hard argmax.

    Inside the window the estimate is ``Σᵢ i · softmax(β · x̂)ᵢ``, exactly as
    in :func:`~heatdecode.decoders.soft_argmax`; outside it every pixel has
    zero weight, so the background cannot pull the estimate toward the map's
    centre. ``x̂`` is the map after ``normalize`` (``"none"``, ``"max"`` or
    ``"minmax"``), computed with the minimum and maximum of the *whole* map so
    β means the same as in the global soft-argmax.

    Window positions outside the map get zero weight and ``border`` is True
    where that happened (on an axis longer than one pixel). ``spread`` is the
    standard deviation of the windowed distribution in pixels. The result is
    differentiable w.r.t. the map values; the window's position comes from the
    hard argmax and carries no gradient. A constant map has uniform weights
    over its window around index 0, so it gives ``min(r, n-1)/2`` on each axis
    (and a gradient, which matters for a freshly initialised network).

    Defaults: ``beta=11, normalize="minmax", radius=2``, measured rather than
    guessed. The window is cut around the argmax, not around the true centre,
    so it holds more of the peak on the argmax's side; at low β the weights
    are nearly uniform and the mean sinks to the window's centre (the argmax:
    0.38 px mean error at β→0, as bad as the argmax itself), at high β the
    softmax collapses onto the argmax again. In between the two biases cancel.
    Mean Euclidean error on random sub-pixel σ=2 Gaussians (noise-free,
    float64; 200 maps of 48×64 / 50 volumes of 20×28×36), radius 2, minmax:

    =====  =====  =====  =====  =====  =====  =====  =====
    β      1      5      8      10     11     12     15
    =====  =====  =====  =====  =====  =====  =====  =====
    2D     0.288  0.066  0.017  0.009  0.008  0.009  0.018
    3D     0.398  0.111  0.031  0.014  0.012  0.011  0.021
    =====  =====  =====  =====  =====  =====  =====  =====

    (``normalize="none"`` on these 0–1 maps is within 0.003 px of minmax;
    minmax is the default because it makes β scale-free.) The best β grows
    with the peak's width: at β=11 the 2D error is 0.040 px for σ=1.5 and
    0.035 px for σ=3 (best β ≈ 8 and ≈ 15 there).

    Args:
        heatmaps: ``(..., H, W)`` or ``(..., D, H, W)`` real tensor.
        beta: inverse temperature β > 0.
        spatial_dims: 2 for images, 3 for volumes.
        normalize: ``"none"``, ``"max"`` or ``"minmax"``.
        coords: the output frame, as in :func:`~heatdecode.decoders.to_frame`.
        radius: the window's half-width r ≥ 1 in pixels.

    Shape:
        ``(..., H, W) -> Decoded`` with ``coords`` ``(..., 2)`` ordered (x, y);
        ``(..., D, H, W) -> Decoded`` with ``coords`` ``(..., 3)`` ordered
        (x, y, z); per-map fields ``(...)``.

    Example:
        >>> x, y = torch.arange(9.0), torch.arange(7.0)[:, None]
        >>> maps = torch.exp(-((x - 4.3) ** 2 + (y - 2.8) ** 2) / 8).double()  # σ=2
        >>> out = local_softargmax_decode(maps)
        >>> out.coords.round(decimals=1).tolist(), out.border.item()
        ([4.3, 2.8], False)
    """
    check_coords(coords)
    check_normalize(normalize)
    beta = check_beta(beta)
    radius = check_radius(radius)
    peak = _Peak(heatmaps, spatial_dims)
    device = peak.index.device
    radii = _window_radii(radius, peak.spatial)
    offsets = _window_offsets(radii, device)
    window, valid = peak.gather(offsets)
    if torch.is_grad_enabled() and peak.values.requires_grad and normalize != "none":
        # minmax/max scale with the map's max and min: their gradients count
        hi = peak.values.amax(-1, keepdim=True).to(peak.cdtype)
        lo = peak.values.amin(-1, keepdim=True).to(peak.cdtype)
    else:  # the argmax pass already found them
        hi, lo = peak.score[:, None], peak.low[:, None]
    # the argmax itself is in the window with logit 0, so every map's weights
    # sum to at least 1: no division by zero, even for constant maps
    weights = torch.exp(_logits(window, hi, lo, beta, normalize)) * valid
    p = weights / weights.sum(-1, keepdim=True)
    offset = offsets.to(peak.cdtype)
    # elementwise sums, not a matmul: a map's result must not depend on its batch
    mean = (p[:, :, None] * offset).sum(1)  # (M, d)
    variance = (p[:, :, None] * (offset - mean[:, None, :]) ** 2).sum(1).sum(-1)
    pixel = peak.index.to(peak.cdtype) + mean
    reach = torch.tensor(radii, device=device)
    clipped = ((peak.index < reach) | (peak.index > peak.sizes - 1 - reach)) & peak.extent
    return peak.decoded(
        pixel,
        coords,
        border=clipped.any(-1),
        skipped=~peak.finite,
        spread=torch.sqrt(variance),
    )


def local_soft_argmax(
    heatmaps: Tensor,
    beta: float = LOCAL_BETA,
    spatial_dims: int = 2,
    normalize: str = LOCAL_NORMALIZE,
    coords: str = "pixel",
    radius: int = LOCAL_RADIUS,
) -> Tensor:
    """Coordinates of :func:`local_softargmax_decode` alone.

    Shape:
        ``(..., H, W) -> (..., 2)`` ordered (x, y);
        ``(..., D, H, W) -> (..., 3)`` ordered (x, y, z).

    Example:
        >>> maps = torch.zeros(2, 1, 4, 6)
        >>> maps[0, 0, 1, 4] = maps[1, 0, 2, 1] = 1.0
        >>> local_soft_argmax(maps, beta=100.0).round(decimals=4).tolist()
        [[[4.0, 1.0]], [[1.0, 2.0]]]
    """
    return local_softargmax_decode(
        heatmaps,
        beta=beta,
        spatial_dims=spatial_dims,
        normalize=normalize,
        coords=coords,
        radius=radius,
    ).coords


class LocalSoftArgmax(SoftArgmax):
    """``nn.Module`` wrapper of :func:`local_soft_argmax`, for models and losses.

    Shape:
        ``(..., H, W) -> (..., 2)`` or ``(..., D, H, W) -> (..., 3)``.

    Example:
        >>> layer = LocalSoftArgmax(beta=1.0, normalize="none")
        >>> logits = torch.randn(2, 17, 64, 48, requires_grad=True)
        >>> xy = layer(logits)
        >>> xy.shape
        torch.Size([2, 17, 2])
        >>> xy.sum().backward(); logits.grad.shape
        torch.Size([2, 17, 64, 48])
    """

    def __init__(
        self,
        beta: float = LOCAL_BETA,
        spatial_dims: int = 2,
        normalize: str = LOCAL_NORMALIZE,
        coords: str = "pixel",
        radius: int = LOCAL_RADIUS,
    ) -> None:
        super().__init__(beta, spatial_dims, normalize, coords)
        self.radius = check_radius(radius)

    def forward(self, heatmaps: Tensor) -> Tensor:
        return local_soft_argmax(
            heatmaps,
            beta=self.beta,
            spatial_dims=self.spatial_dims,
            normalize=self.normalize,
            coords=self.coords,
            radius=self.radius,
        )

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, radius={self.radius}"


# ---------------------------------------------------------------------------
# Quarter offset and parabola fit: one axis at a time
# ---------------------------------------------------------------------------


def quarter_decode(heatmaps: Tensor, spatial_dims: int = 2, coords: str = "pixel") -> Decoded:
    """The argmax moved 0.25 px toward the higher neighbour on each axis.

    ``p += 0.25 · sign(f[p+1] − f[p−1])`` per axis, as in HRNet's
    ``get_final_preds`` and mmpose's ``refine_keypoints``: equal neighbours
    leave the axis where it is. On an axis where the argmax is on the first
    or last index there is no second neighbour: that axis is not moved and
    ``border`` is True (the other axes are still refined). Not
    differentiable. On a Gaussian peak the mean error is about 0.2 px, half
    the argmax's.

    Shape:
        ``(..., H, W) -> Decoded`` with ``coords`` ``(..., 2)`` ordered (x, y);
        ``(..., D, H, W) -> Decoded`` with ``coords`` ``(..., 3)`` ordered
        (x, y, z); per-map fields ``(...)``.

    Example:
        >>> maps = torch.zeros(1, 3, 5)
        >>> maps[0, 1, 2], maps[0, 1, 3] = 1.0, 0.5   # right neighbour higher
        >>> out = quarter_decode(maps)
        >>> out.coords.tolist(), out.border.tolist()
        ([[2.25, 1.0]], [False])
    """
    check_coords(coords)
    peak = _Peak(heatmaps.detach(), spatial_dims)
    around, _ = peak.gather(_axis_offsets(peak))
    below, above = around[:, 0::2], around[:, 1::2]  # (M, d) each, x first
    edge = peak.on_edge()
    move = ~edge & peak.extent & peak.finite[:, None]
    step = torch.where(move, 0.25 * torch.sign(above - below), 0.0)
    return peak.decoded(
        peak.index.to(peak.cdtype) + step, coords, border=edge.any(-1), skipped=~peak.finite
    )


def parabola_decode(heatmaps: Tensor, spatial_dims: int = 2, coords: str = "pixel") -> Decoded:
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
        ``(..., H, W) -> Decoded`` with ``coords`` ``(..., 2)`` ordered (x, y);
        ``(..., D, H, W) -> Decoded`` with ``coords`` ``(..., 3)`` ordered
        (x, y, z); per-map fields ``(...)``.

    Example:
        >>> x, y = torch.arange(7.0), torch.arange(4.0)[:, None]
        >>> maps = torch.exp(-((x - 2.3) ** 2 + (y - 1.8) ** 2) / 8)  # a Gaussian at (2.3, 1.8)
        >>> parabola_decode(maps.double()).coords.round(decimals=6).tolist()
        [2.3, 1.8]
    """
    check_coords(coords)
    peak = _Peak(heatmaps.detach(), spatial_dims)
    around, _ = peak.gather(_axis_offsets(peak))
    positive = peak.finite & (peak.score > 0)
    top = torch.where(positive, peak.score, 1.0)
    logs = _floored_log(around, top)  # relative to the peak: its own log is 0
    below, above = logs[:, 0::2], logs[:, 1::2]
    curvature = below + above
    edge = peak.on_edge()
    fit = ~edge & peak.extent & positive[:, None]
    concave = curvature < 0
    move = fit & concave
    offset = 0.5 * (below - above) / torch.where(move, curvature, -1.0)
    offset = torch.where(move, offset.clamp(-0.5, 0.5), 0.0)
    skipped = ~positive | (fit & ~concave).any(-1)
    return peak.decoded(
        peak.index.to(peak.cdtype) + offset, coords, border=edge.any(-1), skipped=skipped
    )


# ---------------------------------------------------------------------------
# DARK
# ---------------------------------------------------------------------------


def _kernel_dtype(device: torch.device) -> torch.dtype:
    # σ and the kernel's weights in float64 where there is one (MPS has none)
    return torch.float32 if device.type == "mps" else torch.float64


def _estimate_sigma(peak: _Peak) -> Tensor:
    """Each map's own heatmap σ, ``(M,)``, from the curvature of its log at the argmax.

    For ``f = exp(−x²/2σ²)`` the second difference of ``log f`` is exactly
    ``−1/σ²``, so a map gets ``σ² = mean over axes of −1/(l[p−1] − 2·l[p] +
    l[p+1])``, clamped to ``DARK_SIGMA_RANGE``. A map that is not finite, is
    flat, has a peak ≤ 0 or on an edge, or whose log is not strictly concave
    on every longer axis allows no estimate and gets ``DARK_SIGMA_FALLBACK``.
    Every step is elementwise per map, so a map's σ doesn't depend on its batch.
    """
    around, _ = peak.gather(_axis_offsets(peak))
    positive = peak.finite & ~peak.flat & (peak.score > 0)
    top = torch.where(positive, peak.score, 1.0)
    logs = _floored_log(around, top)  # relative to the peak: its own log is 0
    curvature = logs[:, 0::2] + logs[:, 1::2]
    usable = ~peak.on_edge() & ((curvature < 0) | ~peak.extent)
    votes = positive & usable.all(-1) & peak.extent.any()
    variance = -1 / torch.where(peak.extent, curvature, -1.0)
    # the mean over the longer axes, summed one axis after the other (a fixed order)
    longer = [k for k in range(peak.dims) if peak.spatial[-1 - k] > 1]
    total = torch.zeros_like(variance[:, 0])
    for k in longer:
        total = total + variance[:, k]
    variance = (total / max(len(longer), 1)).to(_kernel_dtype(variance.device))
    low, high = DARK_SIGMA_RANGE
    sigma = torch.sqrt(variance).clamp(low, high)
    return torch.where(votes, sigma, DARK_SIGMA_FALLBACK)


def _gaussian_kernels(sigma: Tensor) -> tuple[Tensor, Tensor]:
    """Each map's Gaussian: one-sided weights ``(M, R+1)`` (tap ``j`` is used at ``±j``)
    and the radius ``(M,)``.

    Map ``m``'s kernel is truncated at ``r = ⌊4σ + ½⌋`` px (rounded, not
    ceil'd: the usual σ 1, 1.5, 2, … give an integer 4σ, and an estimated σ of
    2 ± rounding must not flip the width) and normalised over its own
    ``2r + 1`` taps; ``R`` is the largest ``r`` of the batch and the weights
    beyond a map's own ``r`` are exactly 0. The normalising sum runs over the
    taps in a fixed order (the exact zeros of a wider batch add nothing), so a
    map's kernel is the same bits in any batch.
    """
    radius = torch.floor(DARK_TRUNCATE * sigma + 0.5)
    widest = int(radius.max()) if radius.numel() else 0
    taps = torch.arange(widest + 1, dtype=sigma.dtype, device=sigma.device)
    weights = torch.exp(taps**2 / (-2 * sigma**2)[:, None])
    weights = torch.where(taps <= radius[:, None], weights, 0.0)
    side = torch.zeros_like(sigma)
    for j in range(widest, 0, -1):  # smallest first
        side = side + weights[:, j]
    return weights / (weights[:, 0] + 2 * side)[:, None], radius.long()


def _smooth(maps: Tensor, kernels: Tensor, radius: Tensor) -> Tensor:
    """``maps`` ``(M, *spatial)`` convolved with separable Gaussians, zero-padded, same size.

    ``kernels`` ``(M, R+1)`` and ``radius`` ``(M,)`` are each map's one-sided
    weights and truncation radius (see :func:`_gaussian_kernels`). Zero
    padding, as in DARK's reference code: the map is taken to be 0 outside,
    so a bright edge doesn't spill inward as it would with replicate padding.

    Each axis is a sum of shifted copies of the map times its own weight per
    tap, accumulated in a fixed order (centre, +1, −1, +2, −2, … up to the
    map's own radius): elementwise arithmetic within each map, so a map's
    result is the same bits in any batch, where a convolution routine's
    summation order could depend on the batch. The maps are sorted by radius,
    widest first, so the maps that use tap ``j`` are a leading slice of the
    batch: each map costs its own radius, not the batch's widest, and never
    meets a tap beyond it. The shifts stay inside a map, so a NaN or Inf
    can't reach another map.
    """
    widest = kernels.shape[1] - 1
    if widest == 0:
        return maps
    order = torch.argsort(radius, descending=True, stable=True)
    taps = torch.arange(widest + 1, device=radius.device)
    users = (radius[:, None] >= taps).sum(0).tolist()  # maps using tap j: users[j]
    view = (-1,) + (1,) * (maps.ndim - 1)
    kernels = kernels[order].to(maps.dtype)
    weights = [kernels[:, j].reshape(view) for j in range(widest + 1)]
    out = maps[order]
    for axis in range(1, maps.ndim):
        n = out.shape[axis]
        total = out * weights[0]
        # zero padding without the zeros: tap ±j reaches only the n − j pixels
        # that have a neighbour j away. addcmul_ is one fused multiply-add per
        # element, the same in torch's vectorised loop and in its scalar tail
        # (the batch tests check it)
        for j in range(1, min(widest, n - 1) + 1):
            m, w = users[j], weights[j][: users[j]]
            near, far = out[:m].narrow(axis, 0, n - j), out[:m].narrow(axis, j, n - j)
            total[:m].narrow(axis, 0, n - j).addcmul_(far, w)
            total[:m].narrow(axis, j, n - j).addcmul_(near, w)
        out = total
    return torch.empty_like(out).index_copy_(0, order, out)


# A map is smoothed only in a window of (2r + 3)^d pixels around its argmax
# when that window is smaller than this fraction of the map; the rest of the
# map can't reach the 3^d values the Newton step reads.
DARK_WINDOW_FRACTION = 0.5


def _smoothed_cube(
    peak: _Peak, absmax: Tensor, top: Tensor, kernels: Tensor, radius: Tensor, offsets: Tensor
) -> tuple[Tensor, Tensor]:
    """The smoothed, ``absmax``-scaled map at the argmax's ``3^d`` cube, and the smoothed max.

    Returns ``cube`` ``(M, 3^d)`` (ordered as ``offsets``) and ``smooth_top``
    ``(M,)``. DARK rescales the smoothed map by ``top / smooth_top`` before
    its log, which moves every log by the same constant (the Newton step
    doesn't see it) except through the floor at ``top·1e-12``, and only
    where a cube value is below ``smooth_top·1e-12``.

    So a map whose window of ``2r + 3`` px per axis around its argmax is
    small (:data:`DARK_WINDOW_FRACTION`) is smoothed in that window alone
    (zeros outside the map, the zero padding; the same sums in the same
    order as the whole map's, see :func:`_smooth`, so the same cube), and
    its cube's max stands in for ``smooth_top``: the steps agree up to
    rounding, as long as the floor can't apply. It can't where every cube
    value is at least ``top·1e-12`` (with a margin), since a normalised
    Gaussian never smooths a map above its maximum. The other maps (wide
    kernels, cubes that reach the floor) are smoothed whole, as before.
    Every choice is made per map, from the map alone: a map's result is the
    same in any batch.
    """
    m, d = peak.index.shape
    n = peak.spatial.numel()
    device = offsets.device
    cube = torch.zeros((m, offsets.shape[0]), dtype=peak.cdtype, device=device)
    smooth_top = torch.zeros(m, dtype=peak.cdtype, device=device)
    windowed = (2 * radius + 3) ** d < DARK_WINDOW_FRACTION * n
    # non-finite maps and peaks <= 0 are never refined: their window will do
    needed = peak.finite & (top > 0)
    whole = ~windowed
    # maps of similar radius share a window size (the result doesn't depend on it)
    bucket = torch.bucketize(radius, torch.tensor(_DARK_BUCKETS, device=device))
    for b in torch.unique(bucket[windowed]).tolist():
        picked = (windowed & (bucket == b)).nonzero()[:, 0]
        widest = int(radius[picked].max())
        half = widest + 1
        side = 2 * half + 1
        window, valid = _window(peak, picked, half)
        window = torch.where(valid, window / absmax[picked, None], 0.0)
        smooth = _smooth(
            window.view(-1, *([side] * d)), kernels[picked, : widest + 1], radius[picked]
        ).reshape(picked.numel(), -1)
        strides = torch.tensor([side**k for k in range(d)], device=device)
        values = smooth[:, ((offsets + half) * strides).sum(-1)]
        floor = top[picked] * LOG_FLOOR * (1 + 1e-3)
        fine = (values >= floor[:, None]).all(-1) | ~needed[picked]
        cube[picked] = values
        smooth_top[picked] = values.amax(-1)
        whole[picked[~fine]] = True
    rest = whole.nonzero()[:, 0]
    if rest.numel():
        maps = peak.values[rest].to(peak.cdtype) / absmax[rest, None]
        smooth = _smooth(maps.reshape(-1, *peak.spatial), kernels[rest], radius[rest])
        smooth = smooth.reshape(rest.numel(), -1)
        cube[rest] = _gather_rows(peak, rest, offsets, smooth)[0]
        smooth_top[rest] = smooth.amax(-1)
    return cube, smooth_top


def _gather_rows(
    peak: _Peak, rows: Tensor, offsets: Tensor, source: Tensor
) -> tuple[Tensor, Tensor]:
    """:meth:`_Peak.gather` of ``source`` (holding just the maps ``rows``) around their argmax."""
    where = peak.index[rows, None, :] + offsets[None]
    valid = ((where >= 0) & (where < peak.sizes)).all(-1)
    where = torch.minimum(torch.clamp(where, min=0), peak.sizes - 1)
    picked = source.gather(1, (where * peak.strides).sum(-1))
    return picked.to(peak.cdtype), valid


# upper ends of the radius buckets that share a window size (≤ 2× the area apart)
_DARK_BUCKETS = (2, 4, 6, 8, 11, 16, 23, 32, 45)


def _window(peak: _Peak, rows: Tensor, half: int) -> tuple[Tensor, Tensor]:
    """The ``(2·half + 1)^d`` pixels around the argmax of the maps ``rows``, and which are inside.

    ``(len(rows), side^d)`` in array order (x fastest), positions outside
    the map read pixel 0 and are marked invalid.
    """
    side = 2 * half + 1
    d = peak.dims
    device = peak.index.device
    steps = torch.arange(-half, half + 1, device=device)
    index = peak.index[rows]  # (R, d), x first
    # flat offsets of the window's pixels, and each axis' inside-mask, separably
    table = torch.zeros((), dtype=torch.long, device=device)
    valid = torch.ones((rows.numel(),) + (1,) * d, dtype=torch.bool, device=device)
    for k in range(d):  # x, y[, z]: axis k of the window is dimension d - k
        shape = [1] * d
        shape[d - 1 - k] = side
        table = table + (steps * peak.strides[k]).reshape(shape)
        inside = (index[:, k : k + 1] + steps >= 0) & (index[:, k : k + 1] + steps < peak.sizes[k])
        valid = valid & inside.reshape(rows.numel(), *shape)
    valid = valid.reshape(rows.numel(), -1)
    centre = (index * peak.strides).sum(-1) + rows * peak.values.shape[1]
    where = torch.where(valid, centre[:, None] + table.reshape(1, -1), 0)
    return torch.take(peak.values, where).to(peak.cdtype), valid


def dark_decode(
    heatmaps: Tensor,
    spatial_dims: int = 2,
    coords: str = "pixel",
    sigma: float | None = None,
) -> Decoded:
    """DARK: one Newton step on the log of the Gaussian-smoothed map, from the argmax.

    Zhang et al., "Distribution-Aware Coordinate Representation for Human
    Pose Estimation", CVPR 2020. Steps, for every map of the batch at once:

    1. smooth the map with a Gaussian of standard deviation ``sigma``:
       separable 1-D convolutions along each axis, kernel truncated at
       ``⌊4σ + ½⌋`` px and normalised to sum 1, zero padding (the map is 0
       beyond its edge, as in DARK's code), output the map's size (where
       ``2r + 3`` px per axis around the argmax is under half the map, only
       that window is smoothed: the step reads nothing else, see
       :func:`_smoothed_cube`);
    2. rescale the smoothed map so its maximum is the original map's maximum,
       and take its log with a floor at ``maximum · 1e-12``;
    3. at the hard argmax ``p`` of the *original* map, take the gradient ``g``
       and Hessian ``H`` of the log-map by central differences (step 1 px;
       mixed terms ``¼·(l[+,+] − l[+,−] − l[−,+] + l[−,−])``; 2×2 for images,
       3×3 for volumes) and report ``p − H⁻¹g``.

    The step is skipped (the argmax reported, ``skipped`` True) where the map
    is not finite, its maximum or its smoothed maximum is ≤ 0, ``H`` is not
    negative definite (singular included: a flat top, a saddle), or the step
    is longer than 1 px on any axis (the argmax pixel is the maximum, so a
    trustworthy vertex is within about half a pixel; a longer step means the
    quadratic model doesn't describe the peak). Where the argmax is on the
    first or last index of any axis no central difference exists: the map is
    not refined at all and ``border`` is True. Axes of a single pixel are left
    out of the Newton system.

    ``sigma=None`` (default) smooths each map with its *own* σ: ``σ² =
    −1/(l[p−1] − 2·l[p] + l[p+1])`` per axis with ``l`` the log of the
    *unsmoothed* map, averaged over the axes (exact for a Gaussian peak),
    clamped to [0.5, 10]; 2.0 for a map that allows no estimate (not finite,
    flat, peak ≤ 0 or on an edge, or not strictly concave on every axis). The
    batch is still smoothed at once, each map with its own kernel, and every
    step is elementwise within a map in a fixed order, so a map's result is
    bit for bit the same alone or in any batch. A given ``sigma`` is used as
    is for every map; ``sigma=0`` skips the smoothing.

    Smoothing a Gaussian of σ_h with one of σ gives a Gaussian of
    ``√(σ_h² + σ²)``: its log is exactly quadratic, so the Newton step lands
    on the centre (mean error < 1e-3 px on noise-free σ=2 peaks away from the
    edge). Not differentiable.

    Shape:
        ``(..., H, W) -> Decoded`` with ``coords`` ``(..., 2)`` ordered (x, y);
        ``(..., D, H, W) -> Decoded`` with ``coords`` ``(..., 3)`` ordered
        (x, y, z); per-map fields ``(...)``.

    Example:
        >>> x, y = torch.arange(24.0), torch.arange(20.0)[:, None]
        >>> maps = torch.exp(-((x - 11.3) ** 2 + (y - 8.6) ** 2) / 8).double()  # σ=2
        >>> out = dark_decode(maps)
        >>> out.coords.round(decimals=4).tolist(), out.skipped.item(), out.border.item()
        ([11.3, 8.6], False, False)
    """
    check_coords(coords)
    sigma = check_sigma(sigma)
    peak = _Peak(heatmaps.detach(), spatial_dims)
    d = spatial_dims
    if sigma is None:
        sigmas = _estimate_sigma(peak)
    else:
        kind = _kernel_dtype(peak.index.device)
        sigmas = torch.full((peak.index.shape[0],), sigma, dtype=kind, device=peak.index.device)
    # divided by max|x| first, so the convolution's sums can't overflow for
    # values near the dtype's limit; the log's differences don't see the scale
    absmax = torch.maximum(peak.score.abs(), peak.low.abs())
    absmax = torch.where(torch.isfinite(absmax) & (absmax > 0), absmax, 1.0)
    kernels, radius = _gaussian_kernels(sigmas)
    top = peak.score / absmax
    device = peak.index.device
    offsets = torch.tensor(
        [o[::-1] for o in itertools.product((-1, 0, 1), repeat=d)], device=device
    )
    cube, smooth_top = _smoothed_cube(peak, absmax, top, kernels, radius, offsets)
    positive = peak.finite & (top > 0) & (smooth_top > 0)
    gain = torch.where(positive, top / torch.where(positive, smooth_top, 1.0), 1.0)
    logs = _floored_log(cube * gain[:, None], torch.where(positive, top, 1.0))

    def at(shift: dict[int, int]) -> Tensor:
        # the offsets run x fastest: (x, y[, z]) sits at (x+1) + 3·(y+1) [+ 9·(z+1)]
        return logs[:, sum(3**k * (1 + shift.get(k, 0)) for k in range(d))]

    centre = at({})
    grad = torch.stack([0.5 * (at({k: 1}) - at({k: -1})) for k in range(d)], -1)
    hess = torch.empty(logs.shape[0], d, d, dtype=logs.dtype, device=device)
    for k in range(d):
        hess[:, k, k] = at({k: 1}) - 2 * centre + at({k: -1})
        for j in range(k + 1, d):
            mixed = 0.25 * (
                at({k: 1, j: 1}) - at({k: 1, j: -1}) - at({k: -1, j: 1}) + at({k: -1, j: -1})
            )
            hess[:, k, j] = hess[:, j, k] = mixed
    # a singleton axis is constant: decouple it (unit curvature, zero gradient)
    # so the Newton system is that of the remaining axes
    lone = ~peak.extent
    grad = torch.where(lone, 0.0, grad)
    pair = lone[:, None] | lone[None, :]
    eye = torch.eye(d, dtype=logs.dtype, device=device)
    hess = torch.where(pair, -eye, hess)
    edge = peak.on_edge().any(-1)
    fit = positive & ~edge
    # -H positive definite <=> H negative definite; cholesky_ex reports it
    # without raising, and invalid maps get -I so the solve stays finite
    safe = torch.where(fit[:, None, None], -hess, eye)
    safe = torch.where(torch.isfinite(safe).all((-2, -1), keepdim=True), safe, eye)
    factor, info = torch.linalg.cholesky_ex(safe)
    definite = info == 0
    step = torch.cholesky_solve(grad.unsqueeze(-1), factor).squeeze(-1)  # = -H⁻¹g
    good = fit & definite & torch.isfinite(step).all(-1) & (step.abs() <= 1).all(-1)
    step = torch.where(good[:, None], step, 0.0)
    return peak.decoded(
        peak.index.to(peak.cdtype) + step,
        coords,
        border=edge,
        skipped=~peak.finite | (~edge & ~good),
    )
