"""The hard argmax of a batch of maps and its neighbourhood: what every refining decoder
(:mod:`heatdecode.local`, :mod:`heatdecode.refine`, :mod:`heatdecode.dark`) starts from.

Pure core: imports only the standard library, numpy, torch and other core
modules; no I/O and no module state, so it can be used without the CLI stack
(``tests/test_package.py``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from heatdecode.decoders import PointEstimates, to_frame
from heatdecode.reductions import argmax_extremes, check_input, compute_dtype, gather, unravel

#: Logs are taken of max(value, peak·LOG_FLOOR): a zero or negative neighbour of
#: the peak then reads as "27.6 nepers below the peak" instead of -inf or NaN.
LOG_FLOOR = 1e-12


class Peak:
    """The hard argmax of a batch of maps, flattened to ``M`` maps.

    ``values`` is the ``(M, N)`` view of the maps in their own dtype (gathered
    values are converted afterwards, so no full-size copy is made), ``index``
    the ``(M, d)`` integer argmax ordered (x, y[, z]), ``sizes`` the axis
    lengths in that order, ``score`` and ``low`` each map's max and min in
    the compute dtype ``cdtype``.

    ``index`` (``(M, d)`` integer positions, x first) puts each map's peak
    there instead of at its argmax, ``score`` then being the value there;
    ``low`` replaces each map's minimum (the minmax normalisation's floor).
    :func:`heatdecode.peaks.find_peaks` refines each of many peaks this way,
    in a window of the map cut around it. ``flat`` and ``finite`` stay the
    map's own.

    Example:
        >>> maps = torch.zeros(2, 3, 4)
        >>> maps[0, 2, 1] = maps[1, 0, 3] = 1.0
        >>> Peak(maps, 2).index.tolist()
        [[1, 2], [3, 0]]
        >>> Peak(maps, 2, index=torch.tensor([[0, 0], [3, 0]])).score.tolist()
        [0.0, 1.0]
    """

    def __init__(
        self,
        heatmaps: Tensor,
        spatial_dims: int,
        *,
        index: Tensor | None = None,
        low: Tensor | None = None,
    ) -> None:
        check_input(heatmaps, spatial_dims)
        self.spatial = heatmaps.shape[-spatial_dims:]
        self.lead = heatmaps.shape[:-spatial_dims]
        self.dims = spatial_dims
        self.cdtype = compute_dtype(heatmaps.dtype, heatmaps.device)
        self.values = heatmaps.reshape(-1, self.spatial.numel())
        device = heatmaps.device
        # one pass for the argmax, the max and the min (argmax_decode's)
        argmax, hi, lo = argmax_extremes(self.values)
        self.index = unravel(argmax, self.spatial)
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
        if index is not None:  # a given peak instead of the argmax (find_peaks' windows)
            self.index = index.to(device=device, dtype=torch.long)
            at = (self.index * self.strides).sum(-1, keepdim=True)
            self.score = self.values.gather(1, at)[:, 0].to(self.cdtype)
        if low is not None:
            self.low = low.to(device=device, dtype=self.cdtype)

    def gather(
        self, offsets: Tensor, values: Tensor | None = None, rows: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Values at ``index + offsets`` (``(K, d)``, x first): ``(M, K)`` and a validity mask.

        From :attr:`values`, or from ``values`` ``(M, N)`` (the maps
        transformed); with ``rows``, only for those maps, ``values`` then
        holding just them. Positions outside the map read the nearest
        pixel's value; ``valid`` says which ones were inside.
        """
        source = self.values if values is None else values
        index = self.index if rows is None else self.index[rows]
        picked, valid = gather(source, index, offsets, self.sizes, self.strides)
        return picked.to(self.cdtype), valid

    def on_edge(self) -> Tensor:
        """``(M, d)``: the argmax is on the first or last index of a longer-than-1 axis."""
        edge = (self.index == 0) | (self.index == self.sizes - 1)
        return edge & self.extent

    def estimates(
        self,
        pixel: Tensor,
        frame: str,
        border: Tensor,
        skipped: Tensor,
        spread: Tensor | None = None,
    ) -> PointEstimates:
        """The result for refined ``(M, d)`` pixel coordinates, in the batch's shape."""
        lead, d = self.lead, self.dims
        return PointEstimates(
            coords=to_frame(pixel, self.spatial, frame).reshape(*lead, d),
            score=self.score.reshape(lead),
            spread=None if spread is None else spread.reshape(lead),
            flat=self.flat.reshape(lead),
            finite=self.finite.reshape(lead),
            border=border.reshape(lead),
            skipped=skipped.reshape(lead),
        )


def axis_offsets(peak: Peak) -> Tensor:
    """``(2d, d)`` offsets ``-e_0, +e_0, -e_1, +e_1, …`` (x first).

    Example:
        >>> axis_offsets(Peak(torch.zeros(3, 4), 2)).tolist()
        [[-1, 0], [1, 0], [0, -1], [0, 1]]
    """
    eye = torch.eye(peak.dims, dtype=torch.long, device=peak.index.device)
    return torch.stack([eye, -eye], 1).flip(1).reshape(-1, peak.dims)


def floored_log(values: Tensor, peak: Tensor) -> Tensor:
    """``log(max(values / peak, LOG_FLOOR))`` for ``(M, K)`` values and ``(M,)`` positive peaks.

    Relative to the peak, so the peak's own log is 0 and a tiny positive peak
    (1e-40, say) can't underflow the floor to 0 and give log(0) = -inf; the
    derivatives that use these logs only ever need differences.
    """
    return torch.log(torch.clamp(values / peak[:, None], min=LOG_FLOOR))
