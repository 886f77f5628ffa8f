"""Refining each of many peaks of a map with a point decoder, in a window around it.

:func:`refine_peaks` cuts a window around every peak (a batched gather, no
loop over peaks), masks it so that a neighbouring peak can't pull the
estimate, and runs the decoder's refinement on all windows at once with the
peak *fixed* at its own position in the window (:class:`~heatdecode.peak.Peak`'s
``index``), so the window's own argmax never moves it.

The window: ``(2R+1)`` px per axis around the peak (``R`` = 1 for ``quarter``
and ``parabola``, ``radius`` for ``local-softargmax``, the smoothing kernel's
radius + 1 for ``dark``, from each peak's own σ when ``sigma`` is estimated),
shifted inside the map where the peak is near an edge and cut to the axis
where the map is shorter. So the window holds every pixel of the map the
decoder reads, and its edges are the map's edges exactly where the decoder
reaches the map's: ``border`` is set as the single-point decoder sets it.

The mask: a window pixel is replaced with the map's minimum (its floor) where

* it is closer (Chebyshev) to another of the map's peaks than to this one,
  ties going to the lower rank (the higher peak);
* it is farther than ``R`` from the peak (a window shifted at an edge);
* it is higher than the peak: a hill beyond ``min_distance`` that is no peak
  of the result (cut by the border, the threshold or ``num_peaks``).

The first matters only where two peaks can be ``2R`` or fewer px apart
(``min_distance ≤ 2R``). It is found by pairs where a chunk of maps has few
peaks (each peak against the others of its map: the rivals within ``2R``),
else with a Chebyshev distance transform of the peaks' ranks (``R`` rounds
of a ``3^d`` min-filter over the chunk). The local soft-argmax's min-max
normalisation uses the map's minimum and the peak's own value: β means what
it means for one peak alone on its map.

Cost: a gather of ``(2R+1)^d`` values per peak and the decoder on them, on
chunks of at most :data:`PATCH_ELEMENTS` values; about 0.4 µs per peak for
parabola on 2 CPU threads.

Pure core: imports only the standard library, numpy, torch and other core
modules; no I/O and no module state.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from heatdecode.dark import DARK_BUCKETS, dark_kernel_radius, dark_refine
from heatdecode.decoders import PointEstimates
from heatdecode.local import local_softargmax_refine
from heatdecode.peak import Peak
from heatdecode.peaks_detect import CHUNK_ELEMENTS, Found
from heatdecode.reductions import compute_dtype
from heatdecode.refine import parabola_refine, quarter_refine

#: window elements cut at once (peaks × window pixels)
PATCH_ELEMENTS = 1 << 22
#: the most peak pairs of a chunk compared directly; beyond, a distance transform
PAIR_ELEMENTS = 1 << 21
#: DARK's largest kernel radius: σ is clamped to 10 px, ⌊4·10 + ½⌋
DARK_RADIUS_MAX = 40

REFINERS: dict[str, Callable[..., PointEstimates]] = {
    "quarter": quarter_refine,
    "parabola": parabola_refine,
    "local-softargmax": local_softargmax_refine,
    "dark": dark_refine,
}


class Refined:
    """The refinement's results for ``P`` peaks: map-pixel ``coords`` ``(P, d)`` and
    the ``border``, ``skipped`` flags and ``spread`` (NaN where none) ``(P,)``."""

    def __init__(self, p: int, d: int, cdtype: torch.dtype, device: torch.device) -> None:
        self.coords = torch.zeros((p, d), dtype=cdtype, device=device)
        self.border = torch.zeros(p, dtype=torch.bool, device=device)
        self.skipped = torch.zeros(p, dtype=torch.bool, device=device)
        self.spread = torch.full((p,), math.nan, dtype=cdtype, device=device)

    def put(self, which: Tensor, out: PointEstimates, corner: Tensor) -> None:
        coords = out.coords.to(self.coords.dtype) + corner.to(self.coords.dtype)
        self.coords.index_copy_(0, which, coords)
        self.border.index_copy_(0, which, out.border)
        self.skipped.index_copy_(0, which, out.skipped)
        if out.spread is not None:
            self.spread.index_copy_(0, which, out.spread.to(self.spread.dtype))


def refine_peaks(
    maps: Tensor,
    spatial: torch.Size,
    found: Found,
    decoder: str,
    options: dict[str, Any],
    min_distance: int,
) -> Refined:
    """Every peak of ``found`` on the ``(M, N)`` maps refined by ``decoder`` (its checked
    ``options``) in its masked window; coordinates in the map's pixel frame.

    Example:
        >>> from heatdecode.peaks_detect import detect
        >>> x, y = torch.arange(14.0, dtype=torch.float64), torch.arange(6.0)[:, None]
        >>> spot = lambda cx, cy: torch.exp(-((x - cx) ** 2 + (y - cy) ** 2) / 2)
        >>> maps = (spot(3.2, 2.4) + 0.5 * spot(9.7, 3.1)).reshape(1, -1)
        >>> found = detect(maps, torch.Size([6, 14]), 2, None, None, 0, None)
        >>> out = refine_peaks(maps, torch.Size([6, 14]), found, "parabola", {}, 2)
        >>> out.coords.round(decimals=2).tolist()
        [[3.2, 2.4], [9.7, 3.1]]
    """
    d, device = len(spatial), maps.device
    cdtype = compute_dtype(maps.dtype, device)
    result = Refined(found.row.numel(), d, cdtype, device)
    m, n = maps.shape
    ends = torch.cumsum(found.counts, 0).tolist()
    per_chunk = max(1, CHUNK_ELEMENTS // max(n, 1))
    for start in range(0, m, per_chunk):
        stop = min(m, start + per_chunk)
        first, last = (ends[start - 1] if start else 0), ends[stop - 1]
        if last > first:
            chunk = Chunk(maps[start:stop], spatial, found, start, first, last, min_distance)
            chunk.refine(decoder, options, result)
    return result


class Chunk:
    """Some maps and their peaks (``first:last`` of ``found``), refined together."""

    def __init__(
        self,
        maps: Tensor,
        spatial: torch.Size,
        found: Found,
        start: int,
        first: int,
        last: int,
        min_distance: int,
    ) -> None:
        self.maps, self.spatial, self.dims = maps, spatial, len(spatial)
        self.cdtype = compute_dtype(maps.dtype, maps.device)
        self.row = found.row[first:last] - start
        self.index = found.index[first:last]
        self.rank = found.rank[first:last]
        self.first = first
        self.floor = maps.amin(-1).to(self.cdtype)
        self.sizes = torch.tensor(list(reversed(spatial)), device=maps.device)
        self.strides = torch.tensor(
            [math.prod(spatial[len(spatial) - k :]) for k in range(len(spatial))],
            device=maps.device,
        )
        self.counts = found.counts[start : start + maps.shape[0]]
        self.min_distance = min_distance
        self.owners: Owners | None = None
        self.rivals: Rivals | None = None

    def refine(self, decoder: str, options: dict[str, Any], result: Refined) -> None:
        """Refine every peak of the chunk into ``result``, grouped by window radius."""
        reach = max(self.spatial) - 1
        radius = self._radii(decoder, options, reach)
        groups = torch.bucketize(radius, torch.tensor(DARK_BUCKETS, device=radius.device) + 1)
        for g in torch.bincount(groups).nonzero()[:, 0].tolist():
            which = (groups == g).nonzero()[:, 0]
            r = max(1, min(int(radius[which].max()), reach))
            side = math.prod(min(2 * r + 1, s) for s in self.spatial)
            for part in which.split(max(1, PATCH_ELEMENTS // side)):
                peak, corner = self.window(part, r)
                out = REFINERS[decoder](peak, frame="pixel", **options)
                result.put(part + self.first, out, corner)

    def _radii(self, decoder: str, options: dict[str, Any], reach: int) -> Tensor:
        """Each peak's window radius ``(P,)``."""
        p, device = self.row.numel(), self.row.device
        if decoder == "local-softargmax":
            radius = torch.full((p,), min(options["radius"], max(reach, 1)), device=device)
        elif decoder != "dark":
            radius = torch.ones(p, dtype=torch.long, device=device)
        elif options["sigma"] is not None:
            sigma = options["sigma"]
            radius = torch.full((p,), math.floor(4 * sigma + 0.5) + 1, device=device)
        else:  # each peak's own σ, from its masked 3^d neighbourhood
            radius = torch.zeros(p, dtype=torch.long, device=device)
            for part in torch.arange(p, device=device).split(PATCH_ELEMENTS // 3**self.dims):
                peak, _ = self.window(part, 1)
                radius[part] = dark_kernel_radius(peak, None) + 1
        return radius.clamp(max=max(reach, 1))

    def window(self, part: Tensor, r: int) -> tuple[Peak, Tensor]:
        """The masked windows of radius ``r`` of the peaks ``part`` as a :class:`Peak`
        at each one's position, and the windows' corners ``(len(part), d)``."""
        d, device = self.dims, self.maps.device
        shape = [min(2 * r + 1, s) for s in self.spatial]  # array order
        index, row = self.index.index_select(0, part), self.row.index_select(0, part)
        corner = torch.minimum((index - r).clamp(min=0), self.sizes - index.new_tensor(shape[::-1]))
        # the window's coordinates along each axis, x first: (P, side)
        axes = [
            corner[:, k, None] + torch.arange(shape[d - 1 - k], device=device) for k in range(d)
        ]
        terms = [a * stride for a, stride in zip(axes, self.strides.tolist(), strict=True)]
        terms[0] = terms[0] + row[:, None] * self.maps.shape[1]
        where = outer(terms, torch.add)  # (P, S) flat in the chunk
        values = torch.take(self.maps, where).to(self.cdtype)
        centre = index - corner
        steps = centre.new_tensor([math.prod(shape[d - k :]) for k in range(d)])
        keep = values <= values.gather(1, (centre * steps).sum(-1, keepdim=True))
        shifted = (corner != index - r).any(-1).nonzero()[:, 0]  # at an edge: some pixels > r
        if shifted.numel():
            keep[shifted] &= distances(axes, index, shifted) <= r
        if self.min_distance <= 2 * r:
            keep &= self._owned(part, axes, where, r)
        values = torch.where(keep, values, self.floor.index_select(0, row)[:, None])
        peak = Peak(
            values.reshape(-1, *shape), d, index=centre, low=self.floor.index_select(0, row)
        )
        return peak, corner

    def _owned(self, part: Tensor, axes: list[Tensor], where: Tensor, r: int) -> Tensor:
        """Which window pixels ``(P, S)`` are nearest to their own peak (ties to the lower rank)."""
        rank = self.rank.index_select(0, part)
        if self.row.numel() * int(self.counts.max()) > PAIR_ELEMENTS:  # many peaks: densely
            if self.owners is None:
                self.owners = Owners(self.maps, self.spatial, self.row, self.index, self.rank)
            self.owners.grow(r)
            return self.owners.owned(where, rank)
        if self.rivals is None or self.rivals.reach != 2 * r:
            self.rivals = Rivals(self.row, self.index, self.rank, self.counts, 2 * r)
        return self.rivals.owned(part, axes, self.index.index_select(0, part), rank)


def distances(axes: list[Tensor], index: Tensor, rows: Tensor) -> Tensor:
    """The Chebyshev distance ``(R, S)`` of the window pixels to their peak ``index``,
    for the windows ``rows``; ``axes`` are the windows' per-axis coordinates."""
    terms = [(a[rows] - index[rows, k, None]).abs() for k, a in enumerate(axes)]
    return outer(terms, torch.maximum)


def outer(terms: list[Tensor], combine: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """``combine`` over axes of per-axis terms ``(P, side_k, *rest)`` (x first): the
    ``(P, S, *rest)`` values over the window in row-major order (x fastest).

    Example:
        >>> xs, ys = torch.tensor([[0, 1, 2]]), torch.tensor([[10, 20]])
        >>> outer([xs, ys], torch.add).tolist()
        [[10, 11, 12, 20, 21, 22]]
    """
    d, p, rest = len(terms), terms[0].shape[0], terms[0].shape[2:]
    out = None
    for k, term in enumerate(terms):
        view = [p] + [1] * d + list(rest)
        view[d - k] = term.shape[1]
        out = term.reshape(view) if out is None else combine(out, term.reshape(view))
    return out.reshape(p, math.prod(t.shape[1] for t in terms), *rest)


class Rivals:
    """Each peak's rivals, the other peaks of its map within ``reach`` (Chebyshev),
    found by pairs: for chunks with at most :data:`PAIR_ELEMENTS` peak pairs."""

    def __init__(
        self, row: Tensor, index: Tensor, rank: Tensor, counts: Tensor, reach: int
    ) -> None:
        self.reach = reach
        k, d = int(counts.max()), index.shape[1]
        table = index.new_zeros((counts.numel(), k, d))
        table[row, rank] = index
        slots = torch.arange(k, device=index.device)
        rival = (slots < counts[row, None]) & (slots != rank[:, None])
        for axis in range(d):  # Chebyshev: within reach on every axis
            rival &= (index[:, axis, None] - table[row, :, axis]).abs() <= reach
        most = int(rival.sum(-1).max()) if rival.numel() else 0
        order = torch.sort(rival.to(torch.uint8), dim=-1, descending=True, stable=True).indices
        self.rank = order[:, :most]  # a rival's rank is its slot
        self.valid = rival.gather(1, self.rank)
        self.index = table[row[:, None], self.rank]  # (P, most, d)

    def owned(self, part: Tensor, axes: list[Tensor], index: Tensor, rank: Tensor) -> Tensor:
        """Which pixels ``(P, S)`` of the windows of ``part`` (peaks at ``index``, of rank
        ``rank``) no rival is nearer to (or as near, with a lower rank)."""
        side = math.prod(a.shape[1] for a in axes)
        owned = torch.ones((len(part), side), dtype=torch.bool, device=index.device)
        most = self.rank.shape[1]
        crowded = self.valid[part].any(-1).nonzero()[:, 0]  # rows with a rival at all
        for rows in crowded.split(max(1, PATCH_ELEMENTS // (side * max(most, 1)))):
            if not rows.numel():
                continue
            rivals, peer = self.index[part[rows]], self.rank[part[rows]]
            apart = outer(
                [(a[rows, :, None] - rivals[:, None, :, k]).abs() for k, a in enumerate(axes)],
                torch.maximum,
            )  # (R, S, most)
            near = distances(axes, index, rows)[:, :, None]
            wins = (apart < near) | ((apart == near) & (peer[:, None, :] < rank[rows, None, None]))
            owned[rows] = ~(wins & self.valid[part[rows], None, :]).any(-1)
        return owned


class Owners:
    """Each pixel's nearest peak (Chebyshev, ties to the lower rank), within ``reach``,
    for chunks with too many peaks to pair.

    ``keys`` holds ``distance · step + rank`` of the nearest peak (``step`` = the
    most peaks of a map): a distance transform grown one pixel per round by a
    ``3^d`` min-filter, exact within ``reach`` rounds (the Chebyshev distance
    is the 8/26-neighbour grid's path length).
    """

    def __init__(
        self, maps: Tensor, spatial: torch.Size, row: Tensor, index: Tensor, rank: Tensor
    ) -> None:
        self.step = int(rank.max()) + 1
        self.cap = max(spatial) + 1  # no distance inside the map is longer
        kind = torch.int32 if (self.cap + 3) * self.step < 2**31 else torch.int64
        self.infinity = (self.cap + 2) * self.step
        shape = (maps.shape[0], *spatial)
        self.keys = torch.full(shape, self.infinity, dtype=kind, device=maps.device)
        strides = [math.prod(spatial[len(spatial) - k :]) for k in range(len(spatial))]
        flat = (index * index.new_tensor(strides)).sum(-1) + row * maps.shape[1]
        self.keys.view(-1)[flat] = rank.to(kind)
        self.reach = 0

    def grow(self, reach: int) -> None:
        """Make every key within ``reach`` of its nearest peak exact."""
        while self.reach < min(reach, self.cap):
            near = self.keys
            for axis in range(1, self.keys.ndim):
                near = _shifted_min(near, axis)
            near += self.step
            if not (near < self.keys).any():  # every pixel reached: nothing more to grow
                self.reach = self.cap
                break
            torch.minimum(self.keys, near, out=self.keys)
            self.reach += 1

    def owned(self, where: Tensor, rank: Tensor) -> Tensor:
        """Whether the pixels ``where`` ``(P, S)`` (flat in the chunk) are nearest to the
        peak of rank ``rank`` ``(P,)`` of their map."""
        return torch.take(self.keys, where) % self.step == rank[:, None]


def _shifted_min(x: Tensor, axis: int) -> Tensor:
    n = x.shape[axis]
    out = x.clone()
    if n > 1:
        ahead = out.narrow(axis, 1, n - 1)
        torch.minimum(ahead, x.narrow(axis, 0, n - 1), out=ahead)
        behind = out.narrow(axis, 0, n - 1)
        torch.minimum(behind, x.narrow(axis, 1, n - 1), out=behind)
    return out
