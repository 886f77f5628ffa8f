"""DARK (Zhang et al., CVPR 2020): Gaussian smoothing, then one Newton step on the
log of the smoothed map, from the hard argmax. :func:`dark_decode` is also
importable from :mod:`heatdecode.refine`, with the other refining decoders.

Every map of the batch is smoothed at once, each with its own kernel, and
every step is elementwise within a map in a fixed order, so a map's result is
bit for bit the same alone or in any batch. Python loops run only over the 2
or 3 axes, the smoothing kernel's taps and a few groups of similar kernel widths.

Pure core: imports only the standard library, numpy, torch and other core
modules; no I/O and no module state, so it can be used without the CLI stack
(``tests/test_package.py``).
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

from heatdecode.decoders import PointEstimates, resolve_frame
from heatdecode.options import DARK_SIGMA_MAX, check_sigma  # noqa: F401  (re-exported)
from heatdecode.peak import LOG_FLOOR, Peak, axis_offsets, floored_log

#: The range an estimated σ is clamped to, and the σ used for a map that allows
#: no estimate (the σ most pose heatmaps are trained with).
DARK_SIGMA_RANGE = (0.5, 10.0)
DARK_SIGMA_FALLBACK = 2.0
#: The smoothing kernel is truncated at this many σ, rounded to whole pixels
#: (the mass beyond is < 1e-4).
DARK_TRUNCATE = 4.0
#: A map is smoothed only in a window of (2r + 3)^d pixels around its argmax
#: when that window is smaller than this fraction of the map; the rest of the
#: map can't reach the 3^d values the Newton step reads.
DARK_WINDOW_FRACTION = 0.5
#: upper ends of the radius buckets that share a window size (≤ 2× the area apart)
DARK_BUCKETS = (2, 4, 6, 8, 11, 16, 23, 32, 45)


def dark_decode(
    heatmaps: Tensor,
    spatial_dims: int = 2,
    frame: str | None = None,
    sigma: float | None = None,
    *,
    coords: str | None = None,
) -> PointEstimates:
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
    is for every map; ``sigma=0`` skips the smoothing. ``frame`` is the output
    frame (default ``"pixel"``, see :func:`~heatdecode.decoders.to_frame`);
    ``coords=`` is its deprecated old name.

    Smoothing a Gaussian of σ_h with one of σ gives a Gaussian of
    ``√(σ_h² + σ²)``: its log is exactly quadratic, so the Newton step lands
    on the centre (mean error < 1e-3 px on noise-free σ=2 peaks away from the
    edge). Not differentiable.

    Shape:
        ``(..., H, W) -> PointEstimates`` with ``coords`` ``(..., 2)`` ordered (x, y);
        ``(..., D, H, W) -> PointEstimates`` with ``coords`` ``(..., 3)`` ordered
        (x, y, z); per-map fields ``(...)``.

    Example:
        >>> x, y = torch.arange(24.0), torch.arange(20.0)[:, None]
        >>> maps = torch.exp(-((x - 11.3) ** 2 + (y - 8.6) ** 2) / 8).double()  # σ=2
        >>> out = dark_decode(maps)
        >>> out.coords.round(decimals=4).tolist(), out.skipped.item(), out.border.item()
        ([11.3, 8.6], False, False)
    """
    frame = resolve_frame(frame, coords)
    sigma = check_sigma(sigma)
    return dark_refine(Peak(heatmaps.detach(), spatial_dims), sigma, frame)


def dark_refine(peak: Peak, sigma: float | None, frame: str = "pixel") -> PointEstimates:
    """:func:`dark_decode`'s step at the peak ``peak`` holds: its argmax, or the
    position it was given (:class:`~heatdecode.peak.Peak`'s ``index``); ``sigma``
    taken as checked."""
    logs, positive = _smoothed_logs(peak, sigma)
    grad, hess = _derivatives(peak, logs)
    edge = peak.on_edge().any(-1)
    step, good = _newton_step(grad, hess, fit=positive & ~edge)
    return peak.estimates(
        peak.index.to(peak.cdtype) + step,
        frame,
        border=edge,
        skipped=~peak.finite | (~edge & ~good),
    )


def _smoothed_logs(peak: Peak, sigma: float | None) -> tuple[Tensor, Tensor]:
    """Steps 1 and 2: the floored log of the rescaled smoothed map at the argmax's
    ``3^d`` cube ``(M, 3^d)``, x fastest, and where it could be taken (``(M,)``)."""
    device = peak.index.device
    if sigma is None:
        sigmas = _estimate_sigma(peak)
    else:
        kind = _kernel_dtype(device)
        sigmas = torch.full((peak.index.shape[0],), sigma, dtype=kind, device=device)
    # divided by max|x| first, so the convolution's sums can't overflow for
    # values near the dtype's limit; the log's differences don't see the scale
    absmax = torch.maximum(peak.score.abs(), peak.low.abs())
    absmax = torch.where(torch.isfinite(absmax) & (absmax > 0), absmax, 1.0)
    kernels, radius = _gaussian_kernels(sigmas)
    top = peak.score / absmax
    offsets = torch.tensor(
        [o[::-1] for o in itertools.product((-1, 0, 1), repeat=peak.dims)], device=device
    )
    cube, smooth_top = _smoothed_cube(peak, absmax, top, kernels, radius, offsets)
    positive = peak.finite & (top > 0) & (smooth_top > 0)
    gain = torch.where(positive, top / torch.where(positive, smooth_top, 1.0), 1.0)
    return floored_log(cube * gain[:, None], torch.where(positive, top, 1.0)), positive


def _derivatives(peak: Peak, logs: Tensor) -> tuple[Tensor, Tensor]:
    """Step 3's gradient ``(M, d)`` and Hessian ``(M, d, d)`` of the log-map cube, by
    central differences; singleton axes decoupled (zero gradient, unit curvature)."""
    d, device = peak.dims, logs.device

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
    # a singleton axis is constant: decouple it so the Newton system is that of
    # the remaining axes
    lone = ~peak.extent
    grad = torch.where(lone, 0.0, grad)
    pair = lone[:, None] | lone[None, :]
    eye = torch.eye(d, dtype=logs.dtype, device=device)
    return grad, torch.where(pair, -eye, hess)


def _newton_step(grad: Tensor, hess: Tensor, fit: Tensor) -> tuple[Tensor, Tensor]:
    """``−H⁻¹g`` ``(M, d)`` where ``fit`` and the step is trustworthy, else 0; and where it is."""
    eye = torch.eye(hess.shape[-1], dtype=hess.dtype, device=hess.device)
    # -H positive definite <=> H negative definite; cholesky_ex reports it
    # without raising, and invalid maps get -I so the solve stays finite
    safe = torch.where(fit[:, None, None], -hess, eye)
    safe = torch.where(torch.isfinite(safe).all((-2, -1), keepdim=True), safe, eye)
    factor, info = torch.linalg.cholesky_ex(safe)
    definite = info == 0
    step = torch.cholesky_solve(grad.unsqueeze(-1), factor).squeeze(-1)  # = -H⁻¹g
    good = fit & definite & torch.isfinite(step).all(-1) & (step.abs() <= 1).all(-1)
    return torch.where(good[:, None], step, 0.0), good


def dark_kernel_radius(peak: Peak, sigma: float | None) -> Tensor:
    """The smoothing kernel's radius ``⌊4σ + ½⌋`` px that :func:`dark_refine` uses for
    each map of ``peak`` (``(M,)``, int64): σ given, or each map's own estimate."""
    if sigma is None:
        sigmas = _estimate_sigma(peak)
    else:
        kind = _kernel_dtype(peak.index.device)
        sigmas = torch.full((peak.index.shape[0],), sigma, dtype=kind, device=peak.index.device)
    return _gaussian_kernels(sigmas)[1]


def _kernel_dtype(device: torch.device) -> torch.dtype:
    # σ and the kernel's weights in float64 where there is one (MPS has none)
    return torch.float32 if device.type == "mps" else torch.float64


def _estimate_sigma(peak: Peak) -> Tensor:
    """Each map's own heatmap σ, ``(M,)``, from the curvature of its log at the argmax.

    For ``f = exp(−x²/2σ²)`` the second difference of ``log f`` is exactly
    ``−1/σ²``, so a map gets ``σ² = mean over axes of −1/(l[p−1] − 2·l[p] +
    l[p+1])``, clamped to ``DARK_SIGMA_RANGE``. A map that is not finite, is
    flat, has a peak ≤ 0 or on an edge, or whose log is not strictly concave
    on every longer axis allows no estimate and gets ``DARK_SIGMA_FALLBACK``.
    Every step is elementwise per map, so a map's σ doesn't depend on its batch.
    """
    around, _ = peak.gather(axis_offsets(peak))
    positive = peak.finite & ~peak.flat & (peak.score > 0)
    top = torch.where(positive, peak.score, 1.0)
    logs = floored_log(around, top)  # relative to the peak: its own log is 0
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


def _smoothed_cube(
    peak: Peak, absmax: Tensor, top: Tensor, kernels: Tensor, radius: Tensor, offsets: Tensor
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
    device = offsets.device
    cube = torch.zeros((m, offsets.shape[0]), dtype=peak.cdtype, device=device)
    smooth_top = torch.zeros(m, dtype=peak.cdtype, device=device)
    windowed = (2 * radius + 3) ** d < DARK_WINDOW_FRACTION * peak.spatial.numel()
    # non-finite maps and peaks <= 0 are never refined: their window will do
    needed = peak.finite & (top > 0)
    whole = ~windowed
    # maps of similar radius share a window size (the result doesn't depend on it)
    bucket = torch.bucketize(radius, torch.tensor(DARK_BUCKETS, device=device))
    for b in torch.unique(bucket[windowed]).tolist():
        picked = (windowed & (bucket == b)).nonzero()[:, 0]
        values = _window_cube(peak, picked, absmax, kernels, radius, offsets)
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
        cube[rest] = peak.gather(offsets, smooth, rows=rest)[0]
        smooth_top[rest] = smooth.amax(-1)
    return cube, smooth_top


def _window_cube(
    peak: Peak, picked: Tensor, absmax: Tensor, kernels: Tensor, radius: Tensor, offsets: Tensor
) -> Tensor:
    """The cube ``(len(picked), 3^d)`` of the maps ``picked``, each smoothed only in the
    window around its argmax that the widest kernel among them needs."""
    d = peak.dims
    widest = int(radius[picked].max())
    half = widest + 1
    side = 2 * half + 1
    window, valid = _window(peak, picked, half)
    window = torch.where(valid, window / absmax[picked, None], 0.0)
    smooth = _smooth(
        window.view(-1, *([side] * d)), kernels[picked, : widest + 1], radius[picked]
    ).reshape(picked.numel(), -1)
    strides = torch.tensor([side**k for k in range(d)], device=offsets.device)
    return smooth[:, ((offsets + half) * strides).sum(-1)]


def _window(peak: Peak, rows: Tensor, half: int) -> tuple[Tensor, Tensor]:
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
