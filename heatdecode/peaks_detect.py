"""Which pixels are peaks: scikit-image's ``peak_local_max`` rule, batched in torch.

:func:`detect` finds, for every map of a batch at once, the pixels that
``skimage.feature.peak_local_max(map, min_distance, threshold_abs,
threshold_rel, exclude_border, num_peaks)`` returns (``p_norm=inf``,
``labels=None``), in its order. The steps, each scikit-image's:

1. *candidates*: a pixel equal to the maximum of its ``(2·min_distance+1)^d``
   neighbourhood (``ndi.maximum_filter(mode="nearest")``: the window clipped to
   the map), strictly above ``max(threshold_abs, threshold_rel·max)``
   (``threshold_abs`` defaulting to the map's minimum), none at all in a
   constant map, none within ``exclude_border`` px of an edge;
2. *order*: highest first; equal heights in row-major order (the stable
   argsort of ``-intensities`` over ``np.nonzero``'s row-major list);
3. *thinning* (``ensure_spacing``, only for ``min_distance > 1``): greedily, in
   that order, a candidate is kept unless a kept one lies at Chebyshev
   distance ``< min_distance`` from it;
4. the first ``num_peaks`` of a map.

The thinning is a sequential greedy pass in scikit-image (a KD-tree and a
Python loop). Here it is exact and batched (:func:`thin`), from two facts:

* two candidates closer than ``min_distance`` have *equal* values: each lies
  in the other's ``min_distance`` window and is the maximum of its own, so
  each is ≥ the other. Conflicts therefore only ever arise within plateaus
  and ties, where the order is row-major: a candidate's *earlier* conflicting
  neighbours are exactly those at a negative row-major offset;
* the greedy keeps a candidate iff none of its earlier neighbours is kept. So
  rounds in which an undecided candidate is *rejected* if an earlier
  neighbour is kept and *kept* if every earlier neighbour is rejected only
  ever decide as the greedy does (by induction over the order), and every
  round decides at least the earliest undecided candidate. A round is one
  gather of the ``((2·min_distance−1)^d − 1)/2`` earlier neighbours per
  candidate looked at, vectorised over all maps. The first round looks at
  every candidate (almost all, outside plateaus, have no earlier neighbour
  and are kept there); each later one only at the undecided later
  neighbours of what the round before decided, the only candidates that can
  have become decidable. The number of rounds is the longest chain of
  dependent decisions: about ``2·extent/min_distance`` for a plateau of that
  extent (a saturated region of an 8-bit map: 512² with a 300² block of 255
  takes 0.2–0.3 s, scikit-image 1.5–7 s), one or a few on ordinary maps.

Deliberate differences: a map holding NaN or ±Inf has no peaks (scikit-image
gives an unspecified answer there); on integer maps the order is by value
where scikit-image's ``-intensities`` wraps around (unsigned zeros and the
signed minimum would sort first: reachable only with a ``threshold_abs``
below them). Thresholds are compared in the map's dtype for floating maps
(NumPy's rule for a Python float) and in float64 for integer maps.

Memory: the dense passes run on chunks of maps of at most
:data:`CHUNK_ELEMENTS` elements (a converted copy, the filtered copy and a
few boolean masks), the thinning on chunks of :data:`THIN_PAIRS`
candidate-neighbour pairs over one byte per pixel; the candidates themselves
take a few int64 per candidate.

Pure core: imports only the standard library, numpy, torch and other core
modules; no I/O and no module state.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from heatdecode.reductions import unravel

#: map elements handled at once by the dense passes (max filter and masks)
CHUNK_ELEMENTS = 1 << 23
#: candidate × neighbour pairs looked at at once by a thinning round
THIN_PAIRS = 1 << 22
#: a thinning candidate's state in the byte map (0 also for "not a candidate")
REJECTED, UNDECIDED, KEPT = 0, 1, 2


class Found(NamedTuple):
    """The peaks of ``M`` maps, ordered by map, then rank.

    ``row`` ``(P,)`` the map, ``flat`` ``(P,)`` the row-major index in it,
    ``index`` ``(P, d)`` the position ordered x first, ``rank`` ``(P,)`` 0 for
    a map's highest, ``counts`` ``(M,)`` the peaks per map.
    """

    row: Tensor
    flat: Tensor
    index: Tensor
    rank: Tensor
    counts: Tensor


def detect(
    maps: Tensor,
    spatial: torch.Size,
    min_distance: int,
    threshold_abs: float | None,
    threshold_rel: float | None,
    border: Tensor | int,
    num_peaks: int | None,
) -> Found:
    """scikit-image's peaks of each of the ``(M, N)`` maps ``maps`` of shape ``spatial``.

    ``border`` is the excluded border's width, ``(d,)`` x first or one for all axes.

    Example:
        >>> maps = torch.zeros(2, 5, 6)
        >>> maps[0, 2, 3] = maps[1, 1, 1] = maps[1, 3, 4] = 1.0
        >>> found = detect(maps.reshape(2, -1), maps.shape[1:], 1, None, None, 1, None)
        >>> found.index.tolist(), found.counts.tolist()
        ([[3, 2], [1, 1], [4, 3]], [1, 2])
    """
    m, n = maps.shape
    device = maps.device
    rows, flats = [], []
    per_chunk = max(1, CHUNK_ELEMENTS // max(n, 1))
    for start in range(0, m, per_chunk):
        chunk = maps[start : start + per_chunk]
        row, flat = _candidates(chunk, spatial, min_distance, threshold_abs, threshold_rel)
        rows.append(row + start)
        flats.append(flat)
    row = torch.cat(rows) if rows else torch.zeros(0, dtype=torch.long, device=device)
    flat = torch.cat(flats) if flats else torch.zeros(0, dtype=torch.long, device=device)
    index = unravel(flat, spatial)
    sizes = torch.tensor(list(reversed(spatial)), device=device)
    inside = ((index >= border) & (index < sizes - border)).all(-1)
    row, flat, index = row[inside], flat[inside], index[inside]
    if min_distance > 1 and row.numel():
        kept = thin(row, flat, index, m, spatial, min_distance)
        row, flat, index = row[kept], flat[kept], index[kept]
    order = _order(maps, row, flat)
    row, flat, index = row[order], flat[order], index[order]
    counts = torch.bincount(row, minlength=m)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(row.numel(), device=device) - starts[row]
    if num_peaks is not None:
        keep = rank < num_peaks
        row, flat, index, rank = row[keep], flat[keep], index[keep], rank[keep]
        counts = counts.clamp(max=num_peaks)
    return Found(row, flat, index, rank, counts)


def _candidates(
    maps: Tensor,
    spatial: torch.Size,
    min_distance: int,
    threshold_abs: float | None,
    threshold_rel: float | None,
) -> tuple[Tensor, Tensor]:
    """The map and row-major index ``(C,)`` each of the candidates (step 1, but the border)."""
    m, n = maps.shape
    threshold, usable = thresholds(maps, threshold_abs, threshold_rel)
    values = maps.to(_pool_dtype(maps.dtype)).reshape(m, *spatial)
    radii = [min(min_distance, s - 1) for s in spatial]
    top = max_filter(values, radii)
    hits = values == top
    del top
    hits &= maps.reshape(hits.shape) > threshold.reshape((m,) + (1,) * len(spatial))
    hits &= usable.reshape((m,) + (1,) * len(spatial))
    found = hits.reshape(m, n).nonzero()
    return found[:, 0], found[:, 1]


def thresholds(
    maps: Tensor, threshold_abs: float | None, threshold_rel: float | None
) -> tuple[Tensor, Tensor]:
    """Each map's threshold ``(M,)`` and whether it can have peaks at all ``(M,)``.

    The threshold is ``threshold_abs`` (default: the map's minimum), raised to
    ``threshold_rel · max`` when given; in the map's dtype for floating maps,
    float64 for integer ones. A map can have peaks if it is finite and not
    constant (a single pixel is never "constant": scikit-image compares it
    with the threshold alone).

    Example:
        >>> maps = torch.tensor([[0.0, 2.0, 4.0], [1.0, 1.0, 1.0]])
        >>> threshold, usable = thresholds(maps, None, 0.25)
        >>> threshold.tolist(), usable.tolist()
        ([1.0, 1.0], [True, False])
    """
    hi, lo = maps.amax(-1), maps.amin(-1)
    kind = maps.dtype if maps.dtype.is_floating_point else torch.float64
    hi, lo = hi.to(kind), lo.to(kind)
    usable = torch.isfinite(hi) & torch.isfinite(lo) & ((hi != lo) | (maps.shape[1] == 1))
    if threshold_abs is None:
        threshold = lo
    else:
        threshold = torch.full_like(hi, threshold_abs)
    if threshold_rel is not None:
        threshold = torch.maximum(threshold, torch.tensor(threshold_rel, dtype=kind) * hi)
    return threshold, usable


def _pool_dtype(dtype: torch.dtype) -> torch.dtype:
    """A dtype the max filter runs in that holds every value of ``dtype`` exactly."""
    if dtype in (torch.float32, torch.float64):
        return dtype
    if dtype.is_floating_point:  # half precision: exact in float32
        return torch.float32
    # integers: exact in float32 up to 16 bits (2^24), in float64 up to 2^53
    return torch.float32 if dtype.itemsize <= 2 else torch.float64


def max_filter(values: Tensor, radii: list[int]) -> Tensor:
    """The maximum over the window ``±radii`` (array order) clipped to the map,
    ``ndi.maximum_filter(mode="nearest")``'s value, for ``(M, *spatial)`` maps.

    Separable: one pass per axis, each of shifted elementwise maxima (``2r``
    of them, or ``log₂(2r+1) + 1`` by doubling for ``r ≥ 3``).

    Example:
        >>> max_filter(torch.tensor([[[0.0, 3.0, 1.0, 0.0, 0.0, 2.0]]]), [0, 1]).tolist()
        [[[3.0, 3.0, 3.0, 1.0, 2.0, 2.0]]]
    """
    out = values
    for axis, r in enumerate(radii, start=1):
        if r >= 3:
            out = _doubling_max(out, axis, r)
        elif r > 0:
            out = _shifted_max(out, axis, r)
    return out if out is not values else values.clone()


def _shifted_max(x: Tensor, axis: int, r: int) -> Tensor:
    n = x.shape[axis]
    out = x.clone()
    for j in range(1, r + 1):
        ahead = out.narrow(axis, j, n - j)
        torch.maximum(ahead, x.narrow(axis, 0, n - j), out=ahead)
        behind = out.narrow(axis, 0, n - j)
        torch.maximum(behind, x.narrow(axis, j, n - j), out=behind)
    return out


def _doubling_max(x: Tensor, axis: int, r: int) -> Tensor:
    """The window max by doubling over the map padded with ``-inf`` (``r ≤ n − 1``)."""
    n, length = x.shape[axis], 2 * r + 1
    shape = list(x.shape)
    shape[axis] = r
    pad = torch.full(shape, -math.inf, dtype=x.dtype, device=x.device)
    g = torch.cat([pad, x, pad], axis)  # g[i] = max of `span` values from i
    span = 1
    while 2 * span <= length:
        size = g.shape[axis] - span
        g = torch.maximum(g.narrow(axis, 0, size), g.narrow(axis, span, size))
        span *= 2
    if span < length:
        g = torch.maximum(g.narrow(axis, 0, n), g.narrow(axis, length - span, n))
    return g


def thin(
    row: Tensor, flat: Tensor, index: Tensor, m: int, spatial: torch.Size, min_distance: int
) -> Tensor:
    """Which candidates ``ensure_spacing`` keeps, ``(C,)``: the greedy rule, in rounds.

    ``row``, ``flat`` ``(C,)`` and ``index`` ``(C, d)`` (x first) are the
    candidates of ``m`` maps of shape ``spatial``. See the module docstring
    for why the rounds give the greedy pass's answer exactly. The first round
    looks at every candidate; each later one only at the undecided later
    neighbours of the candidates the round before decided (nothing else can
    have become decidable), so a plateau costs its candidates times the
    window, not times the rounds.

    Example:
        >>> row, flat = torch.zeros(4, dtype=torch.long), torch.tensor([0, 1, 2, 3])
        >>> index = torch.stack([flat, torch.zeros_like(flat)], -1)  # a plateau row
        >>> thin(row, flat, index, 1, torch.Size([1, 4]), 2).tolist()
        [True, False, True, False]
    """
    device = index.device
    n = math.prod(spatial)
    offsets, steps = _earlier_offsets(spatial, min_distance - 1, device)
    if not len(steps):
        return torch.ones_like(row, dtype=torch.bool)
    sizes = torch.tensor(list(reversed(spatial)), device=device)
    where = row * n + flat
    state = torch.zeros(m * n, dtype=torch.uint8, device=device)
    state[where] = UNDECIDED
    work, index_of = where, index
    size = max(1, THIN_PAIRS // len(steps))
    while work.numel():
        done = _decide(state, work, index_of, offsets, steps, sizes)
        later = []  # the undecided later neighbours of what was just decided
        for part in done.split(size):
            near = unravel(part % n, spatial)[:, None, :] - offsets
            inside = ((near >= 0) & (near < sizes)).all(-1)
            nearby = (part[:, None] - steps)[inside]
            later.append(nearby[state[nearby] == UNDECIDED])
        work = torch.unique(torch.cat(later)) if later else done
        index_of = unravel(work % n, spatial)
    return state[where] == KEPT


def _decide(
    state: Tensor, where: Tensor, index: Tensor, offsets: Tensor, steps: Tensor, sizes: Tensor
) -> Tensor:
    """One round over the undecided candidates at ``where`` ``(U,)`` (positions ``index``
    ``(U, d)``, x first, on maps of ``sizes``): rejected if an earlier neighbour is kept,
    kept if all of them are rejected, else left. Updates ``state``; returns the
    positions it decided. In chunks, each seeing the ones before (as exact)."""
    done = []
    size = max(1, THIN_PAIRS // len(steps))
    for at, position in zip(where.split(size), index.split(size), strict=True):
        near = position[:, None, :] + offsets
        inside = ((near >= 0) & (near < sizes)).all(-1)
        seen = state[torch.where(inside, at[:, None] + steps, at[:, None])] * inside
        blocked = (seen == KEPT).any(-1)
        free = ~blocked & ~(seen == UNDECIDED).any(-1)
        state[at[blocked]] = REJECTED
        state[at[free]] = KEPT
        done.append(at[blocked | free])
    return torch.cat(done)


def _earlier_offsets(
    spatial: torch.Size, radius: int, device: torch.device
) -> tuple[Tensor, Tensor]:
    """The offsets ``(K, d)`` (x first) of the ``±radius`` window that come earlier in
    row-major order, and their row-major steps ``(K,)``. Clipped to the map's axes:
    within them an offset is earlier exactly when its step is negative."""
    radii = [min(radius, s - 1) for s in spatial]  # array order
    spans = [torch.arange(-r, r + 1, device=device) for r in radii]
    grid = torch.stack([g.reshape(-1) for g in torch.meshgrid(*spans, indexing="ij")], -1)
    strides = torch.tensor([math.prod(spatial[k + 1 :]) for k in range(len(spatial))])
    steps = (grid * strides.to(device)).sum(-1)
    earlier = steps < 0
    return grid[earlier].flip(-1), steps[earlier]


def _order(maps: Tensor, row: Tensor, flat: Tensor) -> Tensor:
    """The permutation that sorts peaks by map, then value (highest first), then
    row-major index; ``row``/``flat`` come in (map, row-major) order.

    By integer keys (torch sorts them several times faster than floats): each
    value as an integer of the same order, negated; for values of 32 bits or
    fewer that key and the map make one int64 key, else two stable sorts.
    """
    values = torch.take(maps, row * maps.shape[1] + flat)
    if values.dtype.itemsize <= 4 and values.dtype != torch.uint32:
        key = ~_ordered_bits(values, torch.float32, torch.int32).to(torch.long)
        return torch.sort(row * 2**32 + (key + 2**31), stable=True).indices
    key = ~_ordered_bits(values, torch.float64, torch.int64)
    order = torch.sort(key, stable=True).indices
    return order[torch.sort(row[order], stable=True).indices]


def _ordered_bits(values: Tensor, floating: torch.dtype, integer: torch.dtype) -> Tensor:
    """``values`` as ``integer`` numbers in the same order (equal ones equal): integers
    as they are, floats (finite, as ``floating``) by their bits, the negative ones'
    magnitude bits flipped; -0.0 is made +0.0 first, as it compares equal."""
    if not values.dtype.is_floating_point:
        return values.to(integer)
    bits = (values.to(floating) + 0.0).view(integer)
    sign = bits.element_size() * 8 - 1
    return bits ^ ((bits >> sign) & (2**sign - 1))
