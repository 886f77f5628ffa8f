"""Where decoded coordinates are reported: frame, heatmap-to-image stride, voxel spacing.

Decoders work in the heatmap's pixel frame (centres at integers). A
:class:`Frame` turns that into what the user needs, in three steps:

1. ``stride`` (heatmap smaller than the input image): ``u = x·s + offset`` in
   the image's pixel frame. With ``stride_offset="centre"`` (default) heatmap
   pixel i covers image pixels ``[i·s, (i+1)·s)`` and its centre lands on
   ``i·s + (s−1)/2`` (exact for heatmaps made by average-pooling or by rendering
   targets at ``(u + 0.5)/s − 0.5``). With ``"none"``, ``u = x·s``: the
   convention of HRNet's and mmpose's ``MSRAHeatmap`` codecs, whose targets are
   rendered at ``u/s``. The image is taken to be ``n·s`` pixels long.
2. ``coords``: ``pixel``, ``half-pixel``, ``normalized`` or ``normalized-edges``
   (see :mod:`heatdecode.decoders`), relative to the image of step 1.
3. ``spacing`` (volumes in physical units, e.g. mm per voxel): the pixel or
   half-pixel coordinate times the spacing; origin at the first voxel's centre
   (pixel) or corner (half-pixel).

Pure core: imports only the standard library, numpy, torch and other core
modules (the ``CORE`` list of ``tests/test_package.py``); no I/O and no module
state, so it can be used without the CLI stack.
:class:`Frame` and :func:`parse_per_axis` need only the standard library (numpy
and torch are imported by :func:`apply_frame`), so the CLI checks ``--stride``,
``--spacing`` and ``--coords`` before it imports torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from heatdecode.options import COORD_CHOICES

if TYPE_CHECKING:
    import numpy as np

STRIDE_OFFSETS = ("centre", "none")

#: The largest stride or spacing accepted: coordinates times it stay finite
#: (a stride of 1e308 made every coordinate ±inf, then NaN in the normalized
#: frames), with room for any map size. 1e12 is a terapixel per heatmap pixel.
SCALE_MAX = 1e12


def _in_range(values: Sequence[float]) -> bool:
    # NaN and ±inf fail the comparison: no isfinite needed
    return all(0 < v <= SCALE_MAX for v in values)


@dataclass(frozen=True)
class Frame:
    """How to report coordinates; the default is the heatmap's own pixel frame."""

    coords: str = "pixel"
    stride: tuple[float, ...] | None = None  # (x, y[, z]) or one value for all axes
    stride_offset: str = "centre"
    spacing: tuple[float, ...] | None = None  # (x, y[, z]) or one value for all axes

    def __post_init__(self) -> None:
        if self.coords not in COORD_CHOICES:
            choices = ", ".join(COORD_CHOICES)
            raise ValueError(f"coords must be one of {choices}, got {self.coords!r}")
        if self.stride_offset not in STRIDE_OFFSETS:
            raise ValueError(
                f"stride offset must be one of {STRIDE_OFFSETS}, got {self.stride_offset!r}"
            )
        for name in ("stride", "spacing"):
            values = getattr(self, name)
            if values is not None and not _in_range(values):
                raise ValueError(
                    f"{name} values must be > 0 and at most {SCALE_MAX:g}, got {values}"
                )
        if self.spacing is not None and self.coords.startswith("normalized"):
            raise ValueError("spacing is for physical units; it can't go with normalized coords")

    def misfit(self, spatial_dims: int) -> str | None:
        """Why maps of ``spatial_dims`` axes can't be reported in this frame (a
        per-axis stride or spacing of another length), or ``None``.

        Example:
            >>> Frame(stride=(4.0, 4.0, 2.0)).misfit(2)
            '--stride has 3 values (x,y,z) but this map has 2 axes'
        """
        for name, values in (("stride", self.stride), ("spacing", self.spacing)):
            if values and len(values) > 1 and len(values) != spatial_dims:
                axes = ",".join("xyz"[: len(values)])
                count = len(values)
                return f"--{name} has {count} values ({axes}) but this map has {spatial_dims} axes"
        return None

    def describe(self) -> dict[str, object]:
        """The frame in words and numbers, for the JSON output."""
        return {
            "coords": self.coords,
            "stride": list(self.stride) if self.stride else None,
            "stride_offset": self.stride_offset if self.stride else None,
            "spacing": list(self.spacing) if self.spacing else None,
        }


def parse_per_axis(text: str, option: str) -> tuple[float, ...]:
    """``"4"`` or ``"4,4"`` or ``"0.8,0.8,2.5"`` → floats ordered (x, y[, z]).

    Example:
        >>> parse_per_axis("4, 2", "--stride")
        (4.0, 2.0)
    """
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"{option} takes numbers separated by commas, got {text!r}") from None
    if not 1 <= len(values) <= 3 or not _in_range(values):
        raise ValueError(
            f"{option} takes 1 to 3 numbers > 0 and at most {SCALE_MAX:g} ordered x,y[,z], "
            f"got {text!r}"
        )
    return values


def _per_axis(values: Sequence[float], d: int, name: str) -> np.ndarray:
    import numpy as np

    if len(values) == 1:
        return np.full(d, float(values[0]))
    if len(values) != d:
        raise ValueError(f"{name} has {len(values)} values but the maps have {d} axes")
    return np.asarray(values, dtype=np.float64)


def apply_frame(pixel: np.ndarray, spatial: Sequence[int], frame: Frame) -> np.ndarray:
    """``(M, d)`` heatmap-pixel coordinates (x, y[, z]) → the coordinates ``frame`` asks for.

    ``spatial`` is the heatmap's shape in array order, ``(H, W)`` or ``(D, H, W)``.

    Example:
        >>> import numpy as np
        >>> xy = np.array([[0.0, 0.0], [15.0, 11.0]])   # corners of a 12 x 16 heatmap
        >>> apply_frame(xy, (12, 16), Frame(stride=(4.0,))).tolist()
        [[1.5, 1.5], [61.5, 45.5]]
        >>> apply_frame(xy, (12, 16), Frame(coords="normalized-edges", stride=(4.0,))).tolist()
        [[-0.9375, -0.9166666666666666], [0.9375, 0.9166666666666667]]
    """
    import numpy as np

    # an overflow (a frame built past its checks) shows as inf/NaN, which the
    # writers report as status nonfinite: no warning on the way
    with np.errstate(over="ignore", invalid="ignore"):
        return _apply_frame(pixel, spatial, frame)


def _apply_frame(pixel: np.ndarray, spatial: Sequence[int], frame: Frame) -> np.ndarray:
    import numpy as np
    import torch

    from heatdecode.decoders import to_frame

    d = pixel.shape[-1]
    coords = np.asarray(pixel, dtype=np.float64)
    sizes = np.asarray(spatial, dtype=np.float64)  # array order
    if frame.stride is not None:
        s = _per_axis(frame.stride, d, "stride")
        offset = (s - 1) / 2 if frame.stride_offset == "centre" else 0.0
        coords = coords * s + offset
        sizes = sizes * s[::-1]
    coords = to_frame(torch.from_numpy(coords), tuple(sizes.tolist()), frame.coords).numpy()
    if frame.spacing is not None:
        coords = coords * _per_axis(frame.spacing, d, "spacing")
    return coords
