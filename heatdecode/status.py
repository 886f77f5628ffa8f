"""Per-map warnings that a decoded point should not be trusted as a peak.

Each row of the outputs carries one ``status``, the most serious that applies:

==============  =============================================================
``nonfinite``   the map holds NaN or ±Inf; not decoded
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
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

STATUSES = ("nonfinite", "flat", "border", "unrefined", "low-contrast", "multimodal", "ok")


def multimodal(maps: Tensor) -> Tensor:
    """True for maps with a second separated local maximum at least half as high.

    Heights are measured above the map's minimum, so a background offset does
    not count. "Separated" means further from the highest peak than 1.5 times
    the radius of its half-maximum region (at least 2 px): two Gaussians of σ
    are only resolved as two maxima when more than 2σ apart, beyond that.

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
    x = maps.float() if not maps.is_floating_point() or maps.dtype == torch.float16 else maps
    x = x.detach().reshape(m, 1, *spatial)
    lo = x.reshape(m, -1).amin(-1)
    hi = x.reshape(m, -1).amax(-1)
    height = (hi - lo).reshape(m, *([1] * (d + 1)))
    above = x - lo.reshape(m, *([1] * (d + 1)))
    pool = F.max_pool2d if d == 2 else F.max_pool3d
    peaks = (x == pool(x, 3, stride=1, padding=1)) & (above >= 0.5 * height) & (height > 0)
    # radius of the main peak's half-maximum region, from its area (2D) or volume (3D)
    count = (above >= 0.5 * height).reshape(m, -1).sum(-1).to(x.dtype)
    radius = torch.sqrt(count / math.pi) if d == 2 else torch.pow(3 * count / (4 * math.pi), 1 / 3)
    separation = torch.clamp(1.5 * radius, min=2.0)
    top = x.reshape(m, -1).argmax(-1)
    grids = torch.meshgrid(
        *[torch.arange(n, device=x.device, dtype=x.dtype) for n in spatial], indexing="ij"
    )
    distance2 = torch.zeros((m, *spatial), device=x.device, dtype=x.dtype)
    rest = top
    for axis in reversed(range(d)):
        centre = (rest % spatial[axis]).to(x.dtype).reshape(m, *([1] * d))
        rest = torch.div(rest, spatial[axis], rounding_mode="floor")
        distance2 = distance2 + (grids[axis] - centre) ** 2
    far = distance2 > (separation**2).reshape(m, *([1] * d))
    return (peaks.reshape(m, *spatial) & far).reshape(m, -1).any(-1)


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
    flat = maps.detach().reshape(m, -1).to(torch.float64)
    hi, lo = flat.amax(-1), flat.amin(-1)
    if normalize == "none":
        contrast = beta * (hi - lo)
    else:
        absmax = torch.maximum(hi.abs(), lo.abs())
        span = (hi - lo) / torch.where(absmax > 0, absmax, 1.0)
        contrast = beta * (span if normalize == "max" else (span > 0).to(flat.dtype))
    n = flat.shape[-1] if support is None else support
    return (contrast < math.log(n)) & (hi > lo)
