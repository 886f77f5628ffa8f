"""Synthetic heatmaps with known ground truth (``heatdecode sample``).

:func:`write_sample` writes the shipped ``sample_data/``: each map holds one
Gaussian peak at a random sub-pixel position, away from the border, and the set
covers every input format the loader reads: 8-bit and 16-bit PNG, a
multi-channel ``.npy`` (N, C, H, W), a ``.npz`` with two members, and a
non-cubic 3D volume ``.npy`` (N, C, D, H, W).

:func:`write_synthetic` writes harder sets, one knob per difficulty (noise,
background, 8-bit quantisation, a second peak, peaks at the border,
anisotropic peaks), 2D or 3D; :func:`preset` names the usual combinations.

Both write ``truth.csv`` with the columns of ``coordinates.csv`` up to
``score`` (decoder ``truth``), in the pixel frame, so its rows line up with
what ``heatdecode run`` writes for the same folder.

Size: the two generators share one Gaussian, one PNG writer, one truth
writer and the size checks; most of the length is their documented knobs.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import numpy as np
from PIL import Image

from heatdecode.atomic import atomic_write

TRUTH_COLUMNS = ("file", "sample", "channel", "decoder", "x", "y", "z", "score")


def gaussian(shape: tuple[int, ...], centre: np.ndarray, sigma: float) -> np.ndarray:
    """A unit-height Gaussian on a grid of ``shape`` (array order), centred at ``centre``.

    ``centre`` is ordered (x, y[, z]) in the pixel frame, like every coordinate here.

    Example:
        >>> g = gaussian((3, 5), np.array([4.0, 0.0]), 1.0)
        >>> g.shape, float(g[0, 4])
        ((3, 5), 1.0)
    """
    grids = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")
    # grids are in array order (z, y, x); centre is (x, y, z)
    r2 = sum((g - c) ** 2 for g, c in zip(grids, centre[::-1], strict=True))
    return np.exp(-r2 / (2 * sigma**2))


def _random_centre(rng: np.random.Generator, shape: tuple[int, ...], margin: float) -> np.ndarray:
    return np.array([rng.uniform(margin, n - 1 - margin) for n in reversed(shape)])


def _stack(
    rng: np.random.Generator, n: int, c: int, shape: tuple[int, ...], sigma: float, margin: float
) -> tuple[np.ndarray, np.ndarray]:
    maps = np.zeros((n, c, *shape))
    centres = np.zeros((n, c, len(shape)))
    for i in range(n):
        for j in range(c):
            centres[i, j] = _random_centre(rng, shape, margin)
            maps[i, j] = gaussian(shape, centres[i, j], sigma)
    return maps, centres


def _png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def write_sample(out_dir: Path, seed: int = 0) -> list[dict[str, object]]:
    """Write the sample set into ``out_dir``; returns the truth rows (also in ``truth.csv``)."""
    rng = np.random.default_rng(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    truth: list[dict[str, object]] = []

    def record(name: str, centres: np.ndarray, score: float) -> None:
        for i, j in np.ndindex(*centres.shape[:2]):
            xyz = [float(v) for v in centres[i, j]]
            truth.append(
                {
                    "file": name,
                    "sample": i,
                    "channel": j,
                    "decoder": "truth",
                    "x": xyz[0],
                    "y": xyz[1],
                    "z": xyz[2] if len(xyz) == 3 else None,
                    "score": score,
                }
            )

    def save(name: str, data: bytes) -> None:
        atomic_write(out_dir / name, lambda fh: fh.write(data), binary=True)

    def save_npy(name: str, array: np.ndarray) -> None:
        buffer = io.BytesIO()
        np.save(buffer, array)
        save(name, buffer.getvalue())

    # 8-bit PNGs, landscape 48 x 64 (H x W)
    for k in range(4):
        maps, centres = _stack(rng, 1, 1, (48, 64), 2.0, 4)
        save(f"png8/peak_{k}.png", _png_bytes(np.rint(maps[0, 0] * 255).astype(np.uint8)))
        record(f"png8/peak_{k}.png", centres, 255.0)
    # 16-bit PNGs, 40 x 56
    for k in range(2):
        maps, centres = _stack(rng, 1, 1, (40, 56), 2.5, 4)
        save(f"png16/peak_{k}.png", _png_bytes(np.rint(maps[0, 0] * 65535).astype(np.uint16)))
        record(f"png16/peak_{k}.png", centres, 65535.0)
    # pose-style (N, C, H, W) float32, portrait 48 x 40
    maps, centres = _stack(rng, 2, 5, (48, 40), 2.0, 4)
    save_npy("pose_nchw.npy", maps.astype(np.float32))
    record("pose_nchw.npy", centres, 1.0)
    # an .npz with a (C, H, W) member and an (H, W) float64 member
    left, c_left = _stack(rng, 1, 3, (32, 48), 1.5, 3)
    right, c_right = _stack(rng, 1, 1, (36, 30), 3.0, 5)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, left=left[0].astype(np.float32), right=right[0, 0])
    save("maps.npz", buffer.getvalue())
    record("maps.npz:left", c_left, 1.0)
    record("maps.npz:right", c_right, 1.0)
    # a non-cubic volume (N, C, D, H, W) = (1, 2, 20, 28, 36)
    vol, c_vol = _stack(rng, 1, 2, (20, 28, 36), 1.5, 3)
    save_npy("volume_ncdhw.npy", vol.astype(np.float32))
    record("volume_ncdhw.npy", c_vol, 1.0)

    _write_truth(out_dir, truth)
    return truth


def _write_truth(out_dir: Path, truth: list[dict[str, object]]) -> None:
    def write(fh) -> None:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(TRUTH_COLUMNS)
        for row in sorted(truth, key=lambda r: (r["file"], r["sample"], r["channel"])):
            writer.writerow(["" if row[k] is None else row[k] for k in TRUTH_COLUMNS])

    atomic_write(out_dir / "truth.csv", write)


# ---------------------------------------------------------------------------
# Harder synthetic sets: one knob per difficulty (``heatdecode sample --kind``)
# ---------------------------------------------------------------------------

#: Relative height of the second peak when ``two_peaks`` is on.
SECOND_PEAK_HEIGHT = 0.7
#: Largest distance (px) of a ``near_border`` centre from the outermost pixel centre.
BORDER_BAND = 1.5
#: Shapes the presets use: 64×48 images and 32³ volumes (array order).
PRESET_SHAPES: dict[int, tuple[int, ...]] = {2: (48, 64), 3: (32, 32, 32)}

_PRESETS: dict[str, dict[str, object]] = {
    "clean": {},
    "noisy": {"noise": 0.05},
    # minmax normalisation cancels any constant offset, so for the CLI's
    # defaults (minmax, β=20) only the noise makes the contrast low: minmax maps
    # the lowest noise pixel to 0, which lifts the background to ~0.4 of the
    # peak and its brightest pixels to ~0.7, and thousands of them outweigh the
    # peak. noise=0.02 would cost soft-argmax < 0.1 px; 0.2 costs ~1.3 px (2D)
    # and ~3 px (3D) while the argmax still errs ~1 px. The offset stays for
    # normalize=max, where a background at 0.8/1.8 of the maximum pulls too.
    "low-contrast": {"offset": 0.8, "noise": 0.2},
    "quantized": {"quantize8": True},
    "two-peaks": {"two_peaks": True},
    "border": {"near_border": True},
    "anisotropic": {"anisotropy": 2.0},
}
#: The names :func:`preset` knows, for the CLI's ``--kind`` choices.
PRESET_NAMES: tuple[str, ...] = tuple(_PRESETS)
#: Every ``--kind``: the presets, and ``spots`` (many spots per map, written by
#: :func:`heatdecode.spots.write_spots`, which reuses this module's helpers).
KINDS: tuple[str, ...] = (*PRESET_NAMES, "spots")

# Independent random streams, so that sets differing in one knob share
# everything else: ``clean`` and ``noisy`` with one seed have the same centres,
# and their difference is exactly the noise.
_CENTRES, _BORDER, _SECOND, _NOISE = range(4)


def preset(name: str, dims: int = 2) -> dict[str, object]:
    """The keyword arguments of :func:`write_synthetic` for the kind ``name``.

    Every knob is spelled out (``shape`` included: 64×48 for ``dims=2``, 32³
    for ``dims=3``; ``sigma=2``), so a caller can override any of them with
    ``write_synthetic(out, seed=s, **{**preset(name, dims), **overrides})``.

    Each kind differs from ``clean`` (one Gaussian peak, σ=2, background 0) by:

    * ``noisy``: ``noise=0.05``;
    * ``low-contrast``: ``offset=0.8, noise=0.2``, the peak 5 noise-σ above a
      high background (soft-argmax with minmax, β=20: ~1.3 px mean error in
      2D, ~3 px in 3D, against 0.05 px on ``clean``);
    * ``quantized``: ``quantize8=True`` (8-bit PNGs / uint8 volumes);
    * ``two-peaks``: ``two_peaks=True``, a second peak of height 0.7;
    * ``border``: ``near_border=True``, centres ≤ 1.5 px from an edge;
    * ``anisotropic``: ``anisotropy=2.0``, σ_x = 4 and σ_y (= σ_z) = 2.

    Example:
        >>> preset("noisy")["noise"], preset("noisy")["shape"]
        (0.05, (48, 64))
        >>> preset("clean", dims=3)["shape"]
        (32, 32, 32)
    """
    if name not in _PRESETS:
        raise ValueError(f"unknown kind {name!r}; choose from {', '.join(PRESET_NAMES)}")
    if dims not in PRESET_SHAPES:
        raise ValueError(f"dims must be 2 or 3, got {dims!r}")
    knobs: dict[str, object] = {
        "shape": PRESET_SHAPES[dims],
        "sigma": 2.0,
        "anisotropy": 1.0,
        "noise": 0.0,
        "offset": 0.0,
        "quantize8": False,
        "two_peaks": False,
        "near_border": False,
    }
    knobs.update(_PRESETS[name])
    return knobs


def anisotropic_gaussian(
    shape: tuple[int, ...], centre: np.ndarray, sigmas: tuple[float, ...] | np.ndarray
) -> np.ndarray:
    """A unit-height Gaussian with one σ per axis; ``centre`` and ``sigmas`` are (x, y[, z]).

    The axes are independent (no rotation), so the map is a product of 1D profiles.

    Example:
        >>> g = anisotropic_gaussian((5, 9), np.array([4.0, 2.0]), (2.0, 1.0))
        >>> float(g[2, 4]), bool(g[2, 6] > g[4, 4])  # wider along x than along y
        (1.0, True)
    """
    profiles = [
        np.exp(-((np.arange(n, dtype=np.float64) - c) ** 2) / (2 * s**2))
        for n, c, s in zip(shape, centre[::-1], tuple(sigmas)[::-1], strict=True)
    ]
    out = profiles[0]
    for profile in profiles[1:]:
        out = np.multiply.outer(out, profile)
    return out


#: Limits of write_synthetic, checked before anything is made: the maps are
#: built in float64 (twice their float32 size, and the noise as much again),
#: so 512 MiB of float32 output is about 2 GiB while they are made.
SAMPLE_MAX_COUNT = 10**6
SAMPLE_MAX_BYTES = 512 * 2**20
SAMPLE_MAX_SIGMA = 1e4  # px: far wider than any map; beyond it σ² overflows toward inf
SAMPLE_MAX_LEVEL = 1e6  # noise std and background offset, the peak being 1


def _axis_sigmas(sigma: float | tuple[float, ...], anisotropy: float, dims: int) -> np.ndarray:
    if np.ndim(sigma) == 0:
        sigmas = np.full(dims, float(sigma))
    else:
        sigmas = np.array([float(s) for s in sigma])
        if len(sigmas) != dims:
            raise ValueError(f"sigma needs one value per axis (x, y[, z]): {dims}, got {sigma!r}")
    if not _sigmas_in_range(sigmas):
        raise ValueError(f"sigma must be > 0 and at most {SAMPLE_MAX_SIGMA:g} px, got {sigma!r}")
    anisotropy = float(anisotropy)
    if not (np.isfinite(anisotropy) and anisotropy > 0):
        raise ValueError(f"anisotropy must be finite and > 0, got {anisotropy!r}")
    sigmas[0] *= anisotropy
    if not _sigmas_in_range(sigmas):
        raise ValueError(f"sigma times anisotropy must be at most {SAMPLE_MAX_SIGMA:g} px")
    return sigmas


def _sigmas_in_range(sigmas: np.ndarray) -> bool:
    return bool(np.all(np.isfinite(sigmas) & (sigmas > 0) & (sigmas <= SAMPLE_MAX_SIGMA)))


def _check_knobs(seed: int, count: int, shape: tuple[int, ...], noise: float, offset: float):
    if not (isinstance(seed, (int, np.integer)) and seed >= 0):
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    if not (isinstance(count, (int, np.integer)) and 1 <= count <= SAMPLE_MAX_COUNT):
        raise ValueError(f"count must be an integer from 1 to {SAMPLE_MAX_COUNT}, got {count!r}")
    if len(shape) not in (2, 3) or not all(isinstance(n, (int, np.integer)) for n in shape):
        raise ValueError(f"shape must be 2 or 3 integers (H, W) or (D, H, W), got {shape!r}")
    if min(shape) < 4:
        raise ValueError(f"every axis needs at least 4 pixels, got shape {shape!r}")
    nbytes = 4 * int(count) * math.prod(int(n) for n in shape)
    if nbytes > SAMPLE_MAX_BYTES:
        raise ValueError(
            f"{count} maps of {tuple(shape)} are {nbytes:.3g} bytes of float32; "
            f"the most written at once is {SAMPLE_MAX_BYTES // 2**20} MiB: use a smaller count"
        )
    if not (np.isfinite(noise) and 0 <= noise <= SAMPLE_MAX_LEVEL):
        raise ValueError(f"noise must be >= 0 and at most {SAMPLE_MAX_LEVEL:g}, got {noise!r}")
    if not (np.isfinite(offset) and 0 <= offset <= SAMPLE_MAX_LEVEL):
        raise ValueError(f"offset must be >= 0 and at most {SAMPLE_MAX_LEVEL:g}, got {offset!r}")


def _centres(
    seed: int, count: int, shape: tuple[int, ...], sigmas: np.ndarray, near_border: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """First-peak centres (count, dims) in (x, y[, z]), and the margin box they keep to."""
    extent = np.array(shape[::-1], dtype=np.float64) - 1  # last pixel centre per axis (x, y, z)
    # 3σ keeps the peak's mass on the map (truncation < 0.2 %); a quarter of the
    # axis at most, so that broad peaks on small maps still have room to move
    margin = np.minimum(3 * sigmas, extent / 4)
    lo, hi = margin, extent - margin
    u = np.random.default_rng([seed, _CENTRES]).random((count, len(shape)))
    if not near_border:
        return lo + u * (hi - lo), lo, hi
    rng = np.random.default_rng([seed, _BORDER])
    axis = rng.integers(len(shape), size=count)
    side = rng.integers(2, size=count)
    depth = rng.uniform(0, BORDER_BAND, size=count)
    centres = u * extent  # the other axes may be anywhere, corners included
    rows = np.arange(count)
    centres[rows, axis] = np.where(side == 0, depth, extent[axis] - depth)
    return centres, lo, hi


def _second_centres(
    seed: int, first: np.ndarray, lo: np.ndarray, hi: np.ndarray, sigmas: np.ndarray
) -> np.ndarray:
    """Second-peak centres inside the margin box, ≥ 6σ (per axis) from the first peak.

    At 6σ each peak adds < 1e-7 to the other's maximum, so the first peak stays
    the argmax and the second's integral is 0.7 of the first's.
    """
    rng = np.random.default_rng([seed, _SECOND])
    out = np.empty_like(first)
    for i, centre in enumerate(first):
        for _ in range(10_000):
            candidate = lo + rng.random(len(lo)) * (hi - lo)
            if np.sum(((candidate - centre) / sigmas) ** 2) >= 36:
                out[i] = candidate
                break
        else:
            raise ValueError(
                "no room for a second peak 6σ away from the first: use a larger shape or smaller σ"
            )
    return out


def write_synthetic(
    out_dir: Path,
    *,
    seed: int = 0,
    count: int = 64,
    shape: tuple[int, ...] = (48, 64),
    sigma: float | tuple[float, ...] = 2.0,
    anisotropy: float = 1.0,
    noise: float = 0.0,
    offset: float = 0.0,
    quantize8: bool = False,
    two_peaks: bool = False,
    second_height: float = SECOND_PEAK_HEIGHT,
    near_border: bool = False,
) -> list[dict[str, object]]:
    """Write ``count`` synthetic maps with known peaks into ``out_dir``, plus ``truth.csv``.

    Each map is ``offset + G₁ [+ second_height·G₂] [+ noise]`` where ``G₁`` is a
    unit-height Gaussian at a random sub-pixel centre: the truth.

    Args:
        out_dir: folder to write into (created; files of the same names replaced).
        seed: integer ≥ 0; the same seed and knobs give the same bytes. Each kind
            of randomness has its own stream, so sets that differ in one knob
            share the rest: with one seed, ``noise=0.05`` adds noise to exactly
            the maps ``noise=0`` writes.
        count: number of maps.
        shape: map shape in array order, ``(H, W)`` for images or ``(D, H, W)``
            for volumes; the dimension follows from its length. Axes ≥ 4 px.
        sigma: Gaussian σ in pixels: one number for every axis, or one per axis
            ordered ``(x, y[, z])``.
        anisotropy: σ along x is multiplied by this (so it is σ_x/σ_y for a
            scalar ``sigma``; in 3D σ_y and σ_z stay ``sigma``).
        noise: std of i.i.d. Gaussian noise added to every pixel, relative to the
            peak height 1.
        offset: constant background (≥ 0) added to every pixel.
        quantize8: store 8 bits: each map is clipped at 0, scaled so its own
            maximum is 255 and rounded (as exporting a heatmap to PNG does);
            2D maps become one 8-bit PNG each, 3D maps a ``uint8`` array.
        two_peaks: add a second peak of relative height ``second_height`` with
            the same σ, at least 6σ (per axis) from the first. The truth stays
            the first, higher peak.
        second_height: relative height of the second peak, in (0, 1).
        near_border: put the first centre within 0–1.5 px of the outermost pixel
            centre (coordinate 0 or n−1) on one random axis and side; its other
            coordinates may be anywhere on the map, corners included. Otherwise
            centres keep 3σ (at most a quarter of the axis) from every edge.

    Files (names relative to ``out_dir``, as ``heatdecode run out_dir`` reports them):

    * 2D: ``maps.npy`` float32 ``(count, 1, H, W)``; with ``quantize8``
      ``png8/peak_0000.png`` … (one ``H × W`` 8-bit PNG per map).
    * 3D: ``volumes.npy`` ``(count, 1, D, H, W)``, float32 or ``uint8``.
    * ``truth.csv``: ``file,sample,channel,decoder,x,y,z,score``, one row per
      map, decoder ``truth``, pixel frame (x indexes W, y H, z D; ``z`` empty in
      2D), ``sample`` the N index; ``score`` the nominal peak value
      (``offset + 1``, or 255 for 8-bit maps).

    Returns:
        The truth rows, as written to ``truth.csv`` (``z`` is None in 2D).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     rows = write_synthetic(Path(tmp), count=2, noise=0.05)
        ...     maps = np.load(Path(tmp) / "maps.npy")
        >>> maps.shape, maps.dtype, [(r["file"], r["sample"]) for r in rows]
        ((2, 1, 48, 64), dtype('float32'), [('maps.npy', 0), ('maps.npy', 1)])
    """
    shape = tuple(shape)
    noise, offset = float(noise), float(offset)
    _check_knobs(seed, count, shape, noise, offset)
    second_height = float(second_height)
    if two_peaks and not (0 < second_height < 1):
        raise ValueError(f"second_height must be in (0, 1), got {second_height!r}")
    sigmas = _axis_sigmas(sigma, anisotropy, len(shape))
    centres, lo, hi = _centres(seed, count, shape, sigmas, near_border)
    maps = anisotropic_gaussians(shape, centres, sigmas)
    if two_peaks:
        second = _second_centres(seed, centres, lo, hi, sigmas)
        maps += second_height * anisotropic_gaussians(shape, second, sigmas)
    maps += offset
    if noise > 0:
        maps += np.random.default_rng([seed, _NOISE]).normal(0.0, noise, size=maps.shape)
    out_dir.mkdir(parents=True, exist_ok=True)
    stored, score = _quantized(maps) if quantize8 else (maps.astype(np.float32), offset + 1.0)
    names = _write_synthetic_maps(out_dir, stored, png=quantize8 and len(shape) == 2)
    truth = [
        _truth_row(name, sample, centre, score)
        for (name, sample), centre in zip(names, centres, strict=True)
    ]
    _write_truth(out_dir, truth)
    return truth


def anisotropic_gaussians(
    shape: tuple[int, ...], centres: np.ndarray, sigmas: tuple[float, ...]
) -> np.ndarray:
    """``(count, 1, *shape)`` float64 maps, one unit-height Gaussian at each centre."""
    maps = np.empty((len(centres), 1, *shape))
    for i, centre in enumerate(centres):
        maps[i, 0] = anisotropic_gaussian(shape, centre, sigmas)
    return maps


def _quantized(maps: np.ndarray) -> tuple[np.ndarray, float]:
    """8-bit maps as exporting to PNG makes them: clipped at 0, each scaled so
    its own maximum is 255, rounded; and their nominal peak score."""
    count = len(maps)
    clipped = np.clip(maps, 0, None)
    top = clipped.reshape(count, -1).max(axis=1).reshape(count, *(1,) * (maps.ndim - 1))
    return np.rint(255 * clipped / np.where(top > 0, top, 1)).astype(np.uint8), 255.0


def _write_synthetic_maps(out_dir: Path, maps: np.ndarray, png: bool) -> list[tuple[str, int]]:
    """One 8-bit PNG per map (``png``) or one ``.npy`` of them all; the
    (file, sample) that names each map, in order."""
    count = len(maps)
    if png:
        width = max(4, len(str(count - 1)))
        names = []
        for i in range(count):
            name = f"png8/peak_{i:0{width}d}.png"
            data = _png_bytes(maps[i, 0])
            atomic_write(out_dir / name, lambda fh, data=data: fh.write(data), binary=True)
            names.append((name, 0))
        return names
    name = "maps.npy" if maps.ndim == 4 else "volumes.npy"
    buffer = io.BytesIO()
    np.save(buffer, maps)
    atomic_write(out_dir / name, lambda fh: fh.write(buffer.getvalue()), binary=True)
    return [(name, i) for i in range(count)]


def _truth_row(name: str, sample: int, centre: np.ndarray, score: float) -> dict[str, object]:
    xyz = [float(v) for v in centre]
    return {
        "file": name,
        "sample": sample,
        "channel": 0,
        "decoder": "truth",
        "x": xyz[0],
        "y": xyz[1],
        "z": xyz[2] if len(xyz) == 3 else None,
        "score": score,
    }
