"""Overlay pictures: each heatmap colour-mapped, with every decoder's point on it.

2D maps become one panel each; 3D volumes become three maximum-intensity
projections (x–y seen along z, x–z seen along y, z–y seen along x) with the
points projected onto them. Many maps make a grid of panels, at most
:data:`MAX_PANELS` per picture. Panels are magnified with nearest-neighbour
sampling so single pixels and the markers stay visible.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, ImageDraw, ImageFont

MAX_PANELS = 48
TARGET_SIZE = 200  # a panel's long side, in screen pixels
MAX_ZOOM = 24
MANY_POINTS = 20  # more points in a panel than this: a bigger panel, smaller markers
MANY_POINTS_SIZE = 512

# Marker style per decoder: (shape, RGB). Distinct in shape and colour so the
# picture reads in greyscale and for colour-blind readers.
MARKERS: dict[str, tuple[str, tuple[int, int, int]]] = {
    "argmax": ("cross", (255, 255, 255)),
    "softargmax": ("circle", (0, 220, 255)),
    "local-softargmax": ("square", (120, 255, 120)),
    "quarter": ("diamond", (255, 170, 0)),
    "dark": ("x", (255, 80, 200)),
    "parabola": ("triangle", (170, 140, 255)),
}
_FALLBACK_MARKER = ("square", (200, 200, 200))

# Inferno-like colour map: dark purple (low) to pale yellow (high).
_STOPS = np.array(
    [
        [0, 0, 4],
        [40, 11, 84],
        [101, 21, 110],
        [159, 42, 99],
        [212, 72, 66],
        [245, 125, 21],
        [250, 193, 39],
        [252, 255, 164],
    ],
    dtype=np.float64,
)
_LUT = np.stack(
    [
        np.interp(np.linspace(0, 1, 256), np.linspace(0, 1, len(_STOPS)), _STOPS[:, k])
        for k in range(3)
    ],
    axis=1,
).astype(np.uint8)


def colorize(image: np.ndarray) -> np.ndarray:
    """Map a 2D float array to RGB uint8, stretched to its own min..max (NaN → black)."""
    values = np.asarray(image, dtype=np.float64)
    index = _lut_index(values)
    if index is not None:
        return _LUT[index]
    finite = np.isfinite(values)
    if not finite.any():
        return np.zeros((*values.shape, 3), np.uint8)
    lo, hi = values[finite].min(), values[finite].max()
    scaled = np.zeros_like(values) if hi <= lo else (values - lo) / (hi - lo)
    rgb = _LUT[np.clip(np.rint(np.where(finite, scaled, 0.0) * 255), 0, 255).astype(np.intp)]
    rgb[~finite] = 0
    return rgb


def _lut_index(values: np.ndarray) -> np.ndarray | None:
    """Each value's row of the colour map (uint8), or None if any value is not
    finite (those are black, not a colour of the map): :func:`colorize`'s rule."""
    lo, hi = values.min(), values.max()
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return None
    if hi <= lo:
        return np.zeros(values.shape, np.uint8)
    scaled = values - lo
    scaled /= hi - lo
    scaled *= 255
    np.rint(scaled, out=scaled)
    np.clip(scaled, 0, 255, out=scaled)
    return scaled.astype(np.uint8)


_PALETTE = _LUT.tobytes()


def _colour_picture(image: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """``colorize(image)`` as an RGB picture of ``size`` (nearest-neighbour); a
    finite map goes through a palette image, so Pillow does the colour lookup."""
    values = np.asarray(image, dtype=np.float64)
    index = _lut_index(values)
    if index is None:
        return Image.fromarray(colorize(values)).resize(size, Image.Resampling.NEAREST)
    picture = Image.fromarray(index, "L")
    picture.putpalette(_PALETTE)
    return picture.resize(size, Image.Resampling.NEAREST).convert("RGB")


def _views(volume: np.ndarray) -> list[tuple[str, np.ndarray, tuple[int, int]]]:
    """The 2D views of a map: (caption, image, coordinate axes shown (horizontal, vertical))."""
    if volume.ndim == 2:
        return [("", volume, (0, 1))]
    clean = volume
    if not (np.isfinite(volume.min()) and np.isfinite(volume.max())):
        # NaN/Inf voxels must not hide the rest of the projection (np.nanmax would
        # warn on all-NaN rays, and warnings filters are not thread-safe to silence);
        # only such maps pay for this copy, a huge finite volume doesn't
        clean = np.where(np.isfinite(volume), volume, -np.inf)
    return [
        ("x-y", clean.max(axis=0), (0, 1)),
        ("x-z", clean.max(axis=1), (0, 2)),
        ("z-y", clean.max(axis=2).T, (2, 1)),
    ]


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has no sized default font
        return ImageFont.load_default()


def _draw_marker(draw: ImageDraw.ImageDraw, x: float, y: float, shape: str, colour, r: int) -> None:
    outline = (0, 0, 0)
    if r < 6:  # a small marker (many peaks): thin lines, or it is a blot
        _draw_small_marker(draw, x, y, shape, colour, r)
        return
    if shape in ("cross", "x"):
        # the + is smaller than the others: inside a circle or square at its point
        arm = max(6, round(r * 0.6)) if shape == "cross" else r
        for width, fill in ((5, outline), (2, colour)):
            _open_cross(draw, x, y, shape, arm, fill, width)
    elif shape == "circle":
        draw.ellipse([x - r, y - r, x + r, y + r], outline=outline, width=4)
        draw.ellipse([x - r, y - r, x + r, y + r], outline=colour, width=2)
    elif shape in ("diamond", "triangle"):
        points = (
            [(x, y - r), (x + r, y), (x, y + r), (x - r, y)]
            if shape == "diamond"
            else [(x, y - r), (x + r, y + r * 0.8), (x - r, y + r * 0.8)]
        )
        draw.polygon(points, outline=outline, width=4)
        draw.polygon(points, outline=colour, width=2)
    else:
        draw.rectangle([x - r, y - r, x + r, y + r], outline=outline, width=4)
        draw.rectangle([x - r, y - r, x + r, y + r], outline=colour, width=2)


def _draw_small_marker(
    draw: ImageDraw.ImageDraw, x: float, y: float, shape: str, colour, r: int
) -> None:
    if shape in ("cross", "x"):
        _open_cross(draw, x, y, shape, r, colour, 1)
    elif shape == "circle":
        draw.ellipse([x - r, y - r, x + r, y + r], outline=colour, width=1)
    else:
        draw.rectangle([x - r, y - r, x + r, y + r], outline=colour, width=1)


_ARMS = {
    "cross": ((1, 0), (-1, 0), (0, 1), (0, -1)),
    "x": ((1, 1), (1, -1), (-1, 1), (-1, -1)),
}


def _open_cross(
    draw: ImageDraw.ImageDraw, x: float, y: float, shape: str, r: int, fill, width: int
) -> None:
    """A ``+`` or ``x`` whose four arms stop short of the centre: the peak under
    it, and another decoder's mark a fraction of a pixel away, stay visible."""
    gap = max(2.0, r * 0.45) if r >= 6 else 1.5
    for dx, dy in _ARMS[shape]:
        draw.line([(x + dx * gap, y + dy * gap), (x + dx * r, y + dy * r)], fill=fill, width=width)


def _panel(
    image: np.ndarray,
    points: Mapping[str, np.ndarray],
    axes: tuple[int, int],
    caption: str,
    font,
    pixel: tuple[float, float] = (1.0, 1.0),
) -> Image.Image:
    h, w = image.shape
    count = max((np.atleast_2d(p).shape[0] for p in points.values() if p is not None), default=1)
    # many peaks: a panel big enough to tell them apart (a 512² map with 100+
    # peaks is drawn at full size)
    target = TARGET_SIZE if count <= MANY_POINTS else MANY_POINTS_SIZE
    # physical aspect: a pixel is pixel[0] wide and pixel[1] high (the finer axis 1)
    ax, ay = pixel[0] / min(pixel), pixel[1] / min(pixel)
    extent = max(h * ay, w * ax)
    zoom = max(1.0, min(MAX_ZOOM, target / extent))
    if extent > target * 2:
        zoom = target * 2 / extent  # shrink very large maps
    size = (max(1, round(w * ax * zoom)), max(1, round(h * ay * zoom)))
    picture = _colour_picture(image, size)
    sx, sy = size[0] / w, size[1] / h
    label_h = 16
    canvas = Image.new("RGB", (size[0], size[1] + label_h), (24, 24, 24))
    canvas.paste(picture, (0, label_h))
    draw = ImageDraw.Draw(canvas)
    draw.text((3, 1), caption, fill=(230, 230, 230), font=font)
    for name, xyz in points.items():
        if xyz is None:
            continue
        many = np.atleast_2d(np.asarray(xyz, dtype=np.float64))  # (K, d): every peak
        many = many[np.all(np.isfinite(many), axis=1)]
        shape, colour = MARKERS.get(name, _FALLBACK_MARKER)
        radius = _marker_radius(size, len(many))
        for point in many:
            # pixel centre i sits at screen (i + 0.5) * zoom
            px = (float(point[axes[0]]) + 0.5) * sx
            py = (float(point[axes[1]]) + 0.5) * sy + label_h
            _draw_marker(draw, px, py, shape, colour, radius)
    return canvas


def _marker_radius(size: tuple[int, int], count: int) -> int:
    """Big markers for a few points; for many (peaks mode), small enough that
    neighbours stay apart: about a third of the mean spacing, at least 3 px."""
    radius = max(7, round(min(size) / 14))
    if count <= 4:
        return radius
    spacing = min(size) / np.sqrt(count)
    return int(max(3, min(radius, round(spacing / 4))))


def render_overlay(
    maps: np.ndarray,
    points: Mapping[str, np.ndarray],
    title: str,
    labels: Sequence[str] | None = None,
    legend: Mapping[str, str] | None = None,
    spacing: Sequence[float] | None = None,
) -> Image.Image:
    """Draw a grid of panels, one per map (three per volume), with the decoded points.

    Args:
        maps: ``(M, H, W)`` or ``(M, D, H, W)`` maps.
        points: decoder name -> ``(M, d)`` pixel coordinates ordered (x, y[, z]),
            or ``(M, K, d)`` for up to K points per map (peaks mode; NaN rows
            are no point).
        title: the picture's heading (usually the file name).
        labels: a caption per map (default ``map 0``, ``map 1``, ...).
        legend: decoder name -> legend text (default: the name).
        spacing: a pixel's physical size per axis (x, y[, z]), or one value for
            all: panels are drawn in physical aspect (a mm is as long across
            as down). Default: square pixels.

    Example:
        >>> maps = np.zeros((2, 12, 20)); maps[0, 3, 5] = maps[1, 8, 15] = 1
        >>> pts = {"argmax": np.array([[5.0, 3.0], [15.0, 8.0]])}
        >>> render_overlay(maps, pts, "demo").mode
        'RGB'
    """
    total = len(maps)
    shown = min(total, MAX_PANELS)
    font = _font(12)
    labels = list(labels) if labels is not None else [f"map {i}" for i in range(total)]
    tiles: list[Image.Image] = []
    size = _pixel_size(spacing, maps.ndim - 1)
    for m in range(shown):
        views = _views(maps[m])
        row_points = {name: p[m] for name, p in points.items()}
        parts = [
            _panel(image, row_points, axes, f"{labels[m]} {cap}".strip(), font, size[list(axes)])
            for cap, image, axes in views
        ]
        if len(parts) == 1:
            tiles.append(parts[0])
        else:
            width = sum(p.width for p in parts) + 4 * (len(parts) - 1)
            tile = Image.new("RGB", (width, max(p.height for p in parts)), (40, 40, 40))
            x = 0
            for p in parts:
                tile.paste(p, (x, 0))
                x += p.width + 4
            tiles.append(tile)
    cols = grid_columns(shown, maps.ndim == 4)
    rows = int(np.ceil(shown / cols))
    tw = max(t.width for t in tiles)
    th = max(t.height for t in tiles)
    gap, header = 6, 24
    width = max(cols * (tw + gap) + gap, 360)
    entries = tuple((name, (legend or {}).get(name, name)) for name in points)
    footer = _legend_layout(entries, width, gap)[1]
    height = header + rows * (th + gap) + gap + footer
    canvas = Image.new("RGB", (width, height), (40, 40, 40))
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        canvas.paste(tile, (gap + c * (tw + gap), header + gap + r * (th + gap)))
    draw = ImageDraw.Draw(canvas)
    heading = title if shown == total else f"{title}  (first {shown} of {total} maps)"
    draw.text((gap, 4), heading, fill=(255, 255, 255), font=_font(14))
    canvas.paste(_legend_strip(entries, width, footer, gap), (0, height - footer))
    return canvas


def grid_columns(shown: int, volumes: bool) -> int:
    """How many panels :func:`render_overlay` puts in a row: one volume (three
    projections) per row; 2D maps in a grid about 1.5 times as wide as high.
    Panel ``i`` is at row ``i // columns``, column ``i % columns``."""
    if volumes or shown <= 1:
        return 1
    return min(shown, int(np.ceil(np.sqrt(shown * 1.5))))


def _pixel_size(spacing: Sequence[float] | None, dims: int) -> np.ndarray:
    """A pixel's size on each axis (x, y[, z]): ``spacing``, or 1 on every axis
    (also for a spacing not positive and finite, which no frame accepts)."""
    if spacing is None:
        return np.ones(dims)
    values = np.asarray(spacing, dtype=np.float64).ravel()
    values = np.full(dims, values[0]) if len(values) == 1 else values[:dims]
    if len(values) != dims or not np.all(np.isfinite(values) & (values > 0)):
        return np.ones(dims)
    return values


_LEGENDS: dict[tuple, Image.Image] = {}
_LEGENDS_LOCK = threading.Lock()


def _legend_strip(
    entries: tuple[tuple[str, str], ...], width: int, height: int, gap: int
) -> Image.Image:
    """The footer of :func:`render_overlay`: a marker and a text per decoder.

    Every overlay of a run has the same one (text is the slow part of a
    picture), so it is drawn once per size and kept; callers only paste it.
    """
    key = (entries, width, height, gap)
    with _LEGENDS_LOCK:
        strip = _LEGENDS.get(key)
    if strip is not None:
        return strip
    strip = Image.new("RGB", (width, height), (40, 40, 40))
    draw = ImageDraw.Draw(strip)
    font = _font(12)
    places, _ = _legend_layout(entries, width, gap)
    for (name, text), (x, y) in zip(entries, places, strict=True):
        shape, colour = MARKERS.get(name, _FALLBACK_MARKER)
        _draw_marker(draw, x + 8, y + 8, shape, colour, 6)
        draw.text((x + 20, y + 1), text, fill=(255, 255, 255), font=font)
    with _LEGENDS_LOCK:
        if len(_LEGENDS) >= 64:
            _LEGENDS.clear()
        _LEGENDS[key] = strip
    return strip


LEGEND_ROW = 22


def _legend_layout(
    entries: tuple[tuple[str, str], ...], width: int, gap: int
) -> tuple[list[tuple[int, int]], int]:
    """Where each legend entry goes, wrapping onto new rows so every decoder
    drawn is listed, and the strip's height."""
    font = _font(12)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    places, x, y = [], gap, 4
    for _, text in entries:
        size = 32 + int(measure.textlength(text, font=font))
        if x > gap and x + size > width - gap:
            x, y = gap, y + LEGEND_ROW
        places.append((x, y))
        x += size
    return places, y + LEGEND_ROW + 4


def overlay_path(out_dir: Path, name: str) -> Path:
    """Where the overlay of ``name`` goes: ``out_dir/overlays/<name>.png``.

    A part of the name too long for a file name (over 255 bytes with ``.png``)
    is cut and ends in a hash of the whole part instead.

    An ``.npz`` member's ``:`` becomes ``__`` (a colon is not portable in file
    names), and absolute or ``..`` parts are dropped so nothing lands outside.

    Example:
        >>> overlay_path(Path("out"), "sub/maps.npz:left").as_posix()
        'out/overlays/sub/maps.npz__left.png'
    """
    parts = [p for p in PurePosixPath(name.replace(":", "__")).parts if p not in ("/", "..", ".")]
    parts = [_fit(p) for p in parts[:-1]] + [_fit(parts[-1], ".png")]
    return out_dir.joinpath("overlays", *parts)


# the file-name limit of Linux, macOS and Windows file systems, in bytes
NAME_MAX = 255


def _fit(part: str, suffix: str = "") -> str:
    """``part + suffix``, or for names over :data:`NAME_MAX` bytes a prefix of
    ``part``, ``-`` and a hash of the whole, so that long legal names stay legal."""
    name = part + suffix
    if len(os.fsencode(name)) <= NAME_MAX:
        return name
    digest = hashlib.sha1(os.fsencode(part)).hexdigest()[:16]
    tail = f"-{digest}{suffix}"
    prefix = part
    while len(os.fsencode(prefix + tail)) > NAME_MAX:
        prefix = prefix[: -max(1, (len(os.fsencode(prefix + tail)) - NAME_MAX) // 4)]
    return prefix + tail
