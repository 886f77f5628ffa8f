"""Per-map warnings that a decoded point should not be trusted as a peak.

Each row of the outputs carries one ``status``, the most serious that applies:

==============  =============================================================
``nonfinite``   the map holds NaN or ±Inf (not decoded), or the decoded
                point came out NaN/±Inf in the output frame (numbers empty)
``flat``        the map is constant: there is no peak
``border``      the peak is on the map's edge and the refinement fell back
                to the argmax on that axis (refining decoders)
``unrefined``   the refinement was skipped (e.g. a singular Hessian in DARK,
                a non-concave peak for the parabola); the argmax is reported
``low-contrast`` soft-argmax is dominated by the background:
                β·(max x̂ − min x̂) < ln N for N positions in its support
``multimodal``  a second, separated local maximum at least half as high
                (above the map's minimum) as the highest one
``ok``          none of the above
==============  =============================================================

The flags are computed here for both front ends, so a rule has one home:
the CLI's batches (:mod:`heatdecode.batching`) call :func:`multimodal` and
:func:`decoder_low_contrast`, and the library's
:func:`~heatdecode.registry.decode` calls :func:`with_flags`, which calls the
same two; :func:`statuses` ranks flags by :data:`STATUSES` as
:func:`row_status` does for one row. :class:`BackgroundDominatedWarning` is
the library's warning for the ``low-contrast`` condition
(:func:`warn_if_background_dominated`).

Pure core: imports only the standard library, numpy, torch and other core
modules (the ``CORE`` list of ``tests/test_package.py``); no I/O and no module
state, so it can be used without the CLI stack.
"""

from __future__ import annotations

import itertools
import math
import os
import sys
import warnings
from collections.abc import Mapping
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor

from heatdecode.reductions import unravel

E = TypeVar("E")

#: Every status, most serious first: the one home of their order (see row_status).
STATUSES = (
    "nonfinite",
    "flat",
    "no-peak",  # peaks mode: nothing above the threshold
    "border",
    "unrefined",
    "low-contrast",
    "multimodal",
    "ok",
)


def row_status(flags: Mapping[str, bool]) -> str:
    """The most serious status whose flag is set, in :data:`STATUSES` order; ``ok`` if none.

    ``flags`` maps status names to whether they apply; a missing name doesn't.

    Example:
        >>> row_status({"multimodal": True, "border": True, "flat": False})
        'border'
        >>> row_status({})
        'ok'
    """
    if not flags.keys() <= _FLAGS:
        unknown = sorted(set(flags) - _FLAGS)
        raise ValueError(f"unknown status flag(s) {unknown}; known: {STATUSES[:-1]}")
    for status in STATUSES[:-1]:
        if flags.get(status):
            return status
    return "ok"


_FLAGS = frozenset(STATUSES[:-1])


def multimodal(maps: Tensor) -> Tensor:
    """True for maps with a second separated local maximum at least half as high.

    Heights are measured above the map's minimum, so a background offset does
    not count. "Separated" means further from the highest peak, along some
    axis, than 1.5 times the radius of its half-maximum region (at least 2 px):
    two Gaussians of σ are only resolved as two maxima when more than 2σ
    apart, beyond that. Extra memory is two or three boolean masks (bytes per
    pixel) and a few MB for the candidates, tested in slabs, whatever the map
    holds (flat, noisy or peaked), so huge volumes stay affordable.

    Shape:
        ``(M, H, W)`` or ``(M, D, H, W)`` -> ``(M,)`` bool.

    Example:
        >>> maps = torch.zeros(2, 9, 20)
        >>> maps[:, 4, 3] = 1.0
        >>> maps[1, 4, 15] = 0.6          # a second peak, 12 px away
        >>> multimodal(maps).tolist()
        [False, True]
    """
    m = maps.shape[0]
    spatial = maps.shape[1:]
    d = len(spatial)
    if m == 0:  # an empty batch: reshape(0, -1) is ambiguous
        return torch.zeros(0, dtype=torch.bool, device=maps.device)
    x = maps.float() if not maps.is_floating_point() or maps.dtype == torch.float16 else maps
    x = x.detach()
    flat = x.reshape(m, -1)
    lo, hi = flat.amin(-1), flat.amax(-1)
    ones = [1] * d
    high = x >= (lo + 0.5 * (hi - lo)).reshape(m, *ones)
    # radius of the main peak's half-maximum region, from its area (2D) or volume (3D)
    count = _count_true(high.reshape(m, -1), spatial[-1]).to(x.dtype)
    radius = torch.sqrt(count / math.pi) if d == 2 else torch.pow(3 * count / (4 * math.pi), 1 / 3)
    separation = torch.clamp(1.5 * radius, min=2.0)
    # far from the top along at least one axis: built from 1-D masks, no distance grid
    far = torch.zeros_like(high)
    rest = flat.argmax(-1)
    for axis in reversed(range(d)):
        centre = (rest % spatial[axis]).to(x.dtype)
        rest = torch.div(rest, spatial[axis], rounding_mode="floor")
        index = torch.arange(spatial[axis], device=x.device, dtype=x.dtype)
        away = (index[None, :] - centre[:, None]).abs() > separation[:, None]  # (M, n_axis)
        far |= away.reshape([m] + [spatial[axis] if k == axis else 1 for k in range(d)])
    far &= high
    del high
    # only high, far positions can make a map multimodal: test just those for
    # being local maxima (on a clean map there are none at all). far.nonzero()
    # scans every voxel, so first find the (usually no) maps holding any; a
    # constant map can't be multimodal (and would make every pixel a candidate)
    rows = (far.reshape(m, -1).view(torch.uint8).amax(-1).bool() & (hi > lo)).nonzero()[:, 0]
    result = torch.zeros(m, dtype=torch.bool, device=x.device)
    if rows.numel():
        _test_candidates(x, far.reshape(m, -1)[rows], rows, result)
    return result


# Candidate positions tested per step: their indices take 8·(1 + d) bytes each,
# so a flat-topped or noisy map (half its pixels candidates) costs a few MB
# more, not 30 bytes a pixel.
_CANDIDATE_CHUNK = 1 << 18


def _test_candidates(x: Tensor, far: Tensor, rows: Tensor, result: Tensor) -> None:
    """Set ``result[rows[i]]`` where row ``i`` of the ``(R, N)`` mask ``far`` marks
    a local maximum of ``x``, a slab of ``_CANDIDATE_CHUNK`` mask entries at a time."""
    n = far.shape[1]
    spatial = x.shape[1:]
    flat = far.reshape(-1)
    for start in range(0, flat.numel(), _CANDIDATE_CHUNK):
        where = flat[start : start + _CANDIDATE_CHUNK].nonzero()[:, 0] + start
        if not where.numel():
            continue
        row = torch.div(where, n, rounding_mode="floor")
        at = unravel(where % n, spatial).flip(-1)  # unravel gives x first: array order here
        candidates = torch.cat([rows[row][:, None], at], -1)
        found = _local_maxima_at(x, candidates)
        result[candidates[found, 0]] = True


def _count_true(mask: Tensor, row: int = 1, chunk: int = 1 << 22) -> Tensor:
    """Per-row count of a ``(M, N)`` boolean mask, summed in column chunks:
    torch widens a whole boolean tensor to int64 to sum it (8 bytes a voxel).

    ``row`` (a divisor of N, e.g. the map's width) lets each chunk be summed
    in runs of ``row`` columns in int16 first, which is several times faster
    than one int64 sum; the counts are exact either way.
    """
    n = mask.shape[1]
    if row < 2 or row > 32767 or n % row:
        return sum(mask[:, i : i + chunk].sum(-1) for i in range(0, n, chunk))
    step = max(1, chunk // row) * row
    return sum(
        mask[:, i : i + step].reshape(len(mask), -1, row).sum(-1, dtype=torch.int16).sum(-1)
        for i in range(0, n, step)
    )


def _local_maxima_at(x: Tensor, where: Tensor) -> Tensor:
    """For ``(K, 1 + d)`` indices into ``x`` (map, then position): at least as
    high as every neighbour in the 3×3 (3×3×3) neighbourhood?"""
    spatial = torch.tensor(x.shape[1:], device=x.device)
    value = x[tuple(where.T)]
    peak = torch.ones(len(where), dtype=torch.bool, device=x.device)
    for offset in itertools.product((-1, 0, 1), repeat=x.ndim - 1):
        if not any(offset):
            continue
        position = where[:, 1:] + torch.tensor(offset, device=x.device)
        inside = ((position >= 0) & (position < spatial)).all(-1)
        position = torch.minimum(position.clamp(min=0), spatial - 1)
        neighbour = x[(where[:, 0], *position.T)]
        peak &= ~inside | (value >= neighbour)
    return peak


def low_contrast(maps: Tensor, beta: float, normalize: str, support: int | None = None) -> Tensor:
    """True where soft-argmax is dominated by the background.

    With x̂ the normalised map, the peak's softmax weight relative to one
    background position is at most ``exp(β·(max x̂ − min x̂))``; when that is
    below N (the number of positions the softmax runs over, ``support``,
    default the whole map), the background together outweighs the peak.

    Shape:
        ``(M, ...)`` -> ``(M,)`` bool.

    Example:
        >>> maps = torch.zeros(1, 48, 64); maps[0, 10, 10] = 1.0
        >>> low_contrast(maps, 5.0, "minmax").item(), low_contrast(maps, 20.0, "minmax").item()
        (True, False)
    """
    m = maps.shape[0]
    flat = maps.detach().reshape(m, math.prod(maps.shape[1:]))
    # the extremes in the map's own dtype (no float64 copy of the map)
    n = flat.shape[-1] if support is None else support
    return background_dominated(flat.amax(-1), flat.amin(-1), beta, normalize, n)


def background_dominated(hi: Tensor, lo: Tensor, beta: float, normalize: str, n: int) -> Tensor:
    """The rule of :func:`low_contrast` from each map's max and min: ``β·(max x̂ −
    min x̂) < ln n``, for maps that aren't constant (``flat`` is their status).

    Shape:
        ``hi``, ``lo`` ``(...)`` -> ``(...)`` bool.
    """
    hi, lo = hi.detach().to(torch.float64), lo.detach().to(torch.float64)
    if normalize == "none":
        contrast = beta * (hi - lo)
    else:
        absmax = torch.maximum(hi.abs(), lo.abs())
        span = (hi - lo) / torch.where(absmax > 0, absmax, 1.0)
        contrast = beta * (span if normalize == "max" else (span > 0).to(hi.dtype))
    return (contrast < math.log(n)) & (hi > lo)


def decoder_low_contrast(maps: Tensor, options: Mapping[str, Any]) -> Tensor | None:
    """The ``low-contrast`` flag of a decoder run with its resolved ``options``.

    ``None`` for decoders without a softmax (no ``beta``). A local window's
    softmax runs over ``(2r+1)^d`` positions (at most the map's), the global
    soft-argmax's over the whole map. The CLI's batches and :func:`with_flags`
    both call this.

    Shape:
        ``(M, *spatial)`` -> ``(M,)`` bool, or ``None``.

    Example:
        >>> maps = torch.zeros(1, 48, 64); maps[0, 10, 10] = 1.0
        >>> decoder_low_contrast(maps, {"beta": 5.0, "normalize": "minmax"}).tolist()
        [True]
        >>> decoder_low_contrast(maps, {"beta": 5.0, "normalize": "minmax", "radius": 2}).tolist()
        [False]
        >>> decoder_low_contrast(maps, {}) is None
        True
    """
    if "beta" not in options:
        return None
    support = None
    if "radius" in options:  # a local window: (2r+1)^d positions
        support = min(math.prod(maps.shape[1:]), (2 * options["radius"] + 1) ** (maps.ndim - 1))
    return low_contrast(maps, options["beta"], options["normalize"], support)


def with_flags(estimates: E, heatmaps: Tensor, spatial_dims: int, options: Mapping[str, Any]) -> E:
    """``estimates`` (a :class:`~heatdecode.decoders.PointEstimates` of
    ``heatmaps``) with ``low_contrast`` and ``multimodal`` filled in, by the
    functions the CLI's batches call, for a decoder run with ``options``.

    Shape:
        ``heatmaps`` ``(..., H, W)`` or ``(..., D, H, W)``; the flags ``(...)`` bool.
    """
    lead = heatmaps.shape[: heatmaps.ndim - spatial_dims]
    maps = heatmaps.reshape(-1, *heatmaps.shape[heatmaps.ndim - spatial_dims :])
    low = decoder_low_contrast(maps, options)
    return estimates._replace(
        low_contrast=None if low is None else low.reshape(lead),
        multimodal=multimodal(maps).reshape(lead),
    )


def estimate_flags(estimates: Any) -> dict[str, Tensor]:
    """The status flags a :class:`~heatdecode.decoders.PointEstimates` carries,
    by status name; a flag it doesn't hold (``None``) is left out.

    ``nonfinite`` is set where the map held NaN/±Inf or the coordinates came
    out NaN/±Inf, as in the CLI's rows.
    """
    nonfinite = ~estimates.finite | ~torch.isfinite(estimates.coords).all(-1)
    flags = {
        "nonfinite": nonfinite,
        "flat": estimates.flat,
        "border": estimates.border,
        "unrefined": estimates.skipped,
        "low-contrast": estimates.low_contrast,
        "multimodal": estimates.multimodal,
    }
    return {name: flag for name, flag in flags.items() if flag is not None}


def statuses(flags: Mapping[str, Tensor | np.ndarray]) -> np.ndarray:
    """:func:`row_status` for every map at once: per map the most serious status
    whose flag is set, in :data:`STATUSES` order.

    Shape:
        flags ``(...)`` bool each (broadcast together) -> ``(...)`` str array.

    Example:
        >>> statuses({"multimodal": torch.tensor([True, True, False]),
        ...           "border": torch.tensor([False, True, False])}).tolist()
        ['multimodal', 'border', 'ok']
    """
    if not flags.keys() <= _FLAGS:
        unknown = sorted(set(flags) - _FLAGS)
        raise ValueError(f"unknown status flag(s) {unknown}; known: {STATUSES[:-1]}")
    arrays = {
        name: np.asarray(flag.detach().cpu() if isinstance(flag, Tensor) else flag, dtype=bool)
        for name, flag in flags.items()
    }
    shape = np.broadcast_shapes(*(a.shape for a in arrays.values()))
    out = np.full(shape, "ok", dtype=f"<U{max(map(len, STATUSES))}")
    for status in reversed(STATUSES[:-1]):  # the most serious is written last
        if status in arrays:
            out[np.broadcast_to(arrays[status], shape)] = status
    return out


class BackgroundDominatedWarning(UserWarning):
    """A soft-argmax call was dominated by the background (status ``low-contrast``).

    ``β·(max x̂ − min x̂) < ln N`` for some map: the softmax is nearly uniform
    and the point is pulled toward the map's centre. Raised once per calling
    line by Python's default warning filter; silence it with ``warn=False`` or
    ``warnings.simplefilter("ignore", BackgroundDominatedWarning)``.
    """


def should_check(heatmaps: Tensor) -> bool:
    """Whether a soft-argmax call on ``heatmaps`` checks for a background-dominated map.

    Not while compiling, tracing or scripting; not when autograd flows into
    the maps (a training step: freshly initialised logits are nearly uniform
    by design); not on accelerators, where the check would be a device-to-host
    sync in every call (``decode``'s ``low_contrast`` flag carries the same
    rule there, and a call on CPU warns); on CPU always: a comparison of two
    numbers a map, beside the softmax over all of it. Pure: no counters, so a
    call warns or not by its arguments alone.
    """
    if _is_compiling() or (torch.is_grad_enabled() and heatmaps.requires_grad):
        return False
    return heatmaps.device.type == "cpu"


def _is_compiling() -> bool:
    compiler = getattr(torch, "compiler", None)
    compiling = getattr(compiler, "is_compiling", None)
    return bool(torch.jit.is_scripting() or torch.jit.is_tracing() or (compiling and compiling()))


def warn_if_background_dominated(
    hi: Tensor, lo: Tensor, beta: float, normalize: str, n: int
) -> None:
    """Warn (:class:`BackgroundDominatedWarning`) if any map with these extremes is
    background-dominated (:func:`background_dominated`) for a softmax over ``n``
    positions. The warning points at the first caller outside heatdecode and torch.
    """
    if not bool(background_dominated(hi, lo, beta, normalize, n).any()):
        return
    warnings.warn(
        f"soft-argmax is dominated by the background: β·(max x̂ − min x̂) < ln N = "
        f"{math.log(n):.2f} (beta={beta:g}, normalize={normalize!r}), so the softmax is "
        "nearly uniform and pulls the point toward the map's centre. Raise beta, or use "
        "normalize='minmax' with beta=20 (the CLI's default); decode(maps, 'softargmax') "
        "flags each map (low_contrast). Silence: warn=False or "
        "warnings.simplefilter('ignore', BackgroundDominatedWarning).",
        BackgroundDominatedWarning,
        stacklevel=_outside_level(),
    )


_INTERNAL = tuple(
    os.path.dirname(os.path.abspath(path)) + os.sep for path in (__file__, torch.__file__)
)


def _outside_level() -> int:
    """The ``stacklevel`` of the first frame, above the caller, outside heatdecode and torch."""
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_INTERNAL):
        frame, level = frame.f_back, level + 1
    return level
