"""Synthetic maps with many Gaussian spots each (``heatdecode sample --kind spots``).

:func:`write_spots` writes ``count`` maps, 256×256 images (2D) or 48×64×64
volumes (3D, D×H×W), each holding ``spots_per_map`` isotropic Gaussian spots
(σ = 1.5 px by default) at random sub-pixel positions, every pair at least
4σ apart (Euclidean distance between centres), with amplitudes uniform in
[0.5, 1). The truth is every spot: one ``truth.csv`` row per spot, in the
columns and pixel frame of :func:`heatdecode.sample.write_synthetic`.

The spots of a map add up, but at 4σ a neighbour adds at most e⁻⁸ ≈ 3.4e-4 of
its amplitude to a spot's centre and moves its maximum by ~0.004 px, so each
spot is its own local maximum, within 0.01 px of its truth. Each spot is drawn
only in a window of ±⌈4σ⌉ px around its centre (beyond it a spot is < e⁻⁸ of
its height), so memory is the output plus one float64 map, whatever the number
of spots.

Reuses :mod:`heatdecode.sample`'s Gaussian, knob checks and truth writer.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from heatdecode.atomic import atomic_write
from heatdecode.sample import (
    _axis_sigmas,
    _check_knobs,
    _truth_row,
    _write_truth,
    anisotropic_gaussian,
)

#: Map shapes in array order: (H, W) and the non-cubic (D, H, W).
SPOT_SHAPES: dict[int, tuple[int, ...]] = {2: (256, 256), 3: (48, 64, 64)}
#: Default spots per map. Crowded but far from full at σ = 1.5: a spot's nearest
#: neighbour is ~14 px (9σ) away on average in 2D and ~9 px (6σ) in 3D, where
#: random placement 4σ apart fits about 1150 (2D) and 400 (3D) before it jams.
SPOTS_PER_MAP: dict[int, int] = {2: 100, 3: 60}
#: The file each dimension writes, relative to the output folder.
SPOT_FILES: dict[int, str] = {2: "spots.npy", 3: "spot_volumes.npy"}
SPOT_SIGMA = 1.5
#: Least distance between two spot centres, in σ (Euclidean).
SEPARATION = 4.0
#: Each spot is drawn within ±⌈WINDOW·σ⌉ px of its centre along every axis.
WINDOW = 4.0
AMPLITUDE_RANGE = (0.5, 1.0)
#: Random candidates drawn per wanted spot before placement gives up.
TRIES_PER_SPOT = 100
SPOTS_MAX_PER_MAP = 10_000
#: count × spots_per_map at most: the truth rows are held in memory as dicts.
SPOTS_MAX_TOTAL = 250_000

# Streams [seed, _SPOTS, what, map index]: map i is the same whatever the count,
# and the noise-free and noisy sets of one seed have the same spots.
_SPOTS = 10  # apart from write_synthetic's streams 0–3
_POSITIONS, _AMPLITUDES, _NOISE = range(3)


def spot_margin(shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """How far (px, per axis x, y[, z]) spot centres keep from the outermost pixel centres.

    3σ, as :func:`heatdecode.sample.write_synthetic` keeps (each spot's mass is
    on the map), at most a quarter of the axis.

    Example:
        >>> spot_margin((48, 64, 64), 1.5).tolist()
        [4.5, 4.5, 4.5]
    """
    extent = np.array(shape[::-1], dtype=np.float64) - 1
    return np.minimum(3 * sigma, extent / 4)


def _check_spots(
    seed: int, count: int, dims: int, spots_per_map: object, sigma: object, noise, offset
) -> tuple[tuple[int, ...], int, float]:
    """The map shape, spots per map and σ, once every knob is checked."""
    if dims not in SPOT_SHAPES:
        raise ValueError(f"dims must be 2 or 3, got {dims!r}")
    shape = SPOT_SHAPES[dims]
    _check_knobs(seed, count, shape, noise, offset)
    if spots_per_map is None:
        spots_per_map = SPOTS_PER_MAP[dims]
    ok = isinstance(spots_per_map, (int, np.integer)) and not isinstance(spots_per_map, bool)
    if not (ok and 1 <= spots_per_map <= SPOTS_MAX_PER_MAP):
        raise ValueError(
            f"spots_per_map must be an integer from 1 to {SPOTS_MAX_PER_MAP}, got {spots_per_map!r}"
        )
    if np.ndim(sigma) != 0 or isinstance(sigma, (bool, str)):
        raise ValueError(f"sigma must be one number (px), got {sigma!r}")
    sigma = float(_axis_sigmas(float(sigma), 1.0, dims)[0])
    total = int(count) * int(spots_per_map)
    if total > SPOTS_MAX_TOTAL:
        raise ValueError(
            f"{count} maps of {spots_per_map} spots are {total} spots; "
            f"at most {SPOTS_MAX_TOTAL} are written at once: use a smaller count"
        )
    return shape, int(spots_per_map), sigma


def _stream(seed: int, what: int, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, _SPOTS, what, index])


def _check_room(wanted: int, shape: tuple[int, ...], lo: np.ndarray, hi: np.ndarray, gap: float):
    """Refuse at once a number of spots that can't fit: balls of radius gap/2
    around the centres are disjoint and lie in the centres' box grown by gap/2."""
    dims = len(shape)
    ball = math.pi * (gap / 2) ** 2 if dims == 2 else 4 / 3 * math.pi * (gap / 2) ** 3
    most = int(np.prod(hi - lo + gap) / ball)
    if wanted > most:
        size = "×".join(str(n) for n in shape[::-1])
        raise ValueError(
            f"{wanted} spots at least {gap:g} px (4σ) apart can't fit in a {size} map "
            f"(at most {most} would; random placement jams at a third to a half of that): "
            "use fewer spots per map or a smaller sigma"
        )


def place_spots(
    rng: np.random.Generator, wanted: int, lo: np.ndarray, hi: np.ndarray, gap: float
) -> tuple[np.ndarray, int]:
    """Up to ``wanted`` centres uniform in the box [lo, hi] (x, y[, z]), each ≥ ``gap`` from
    every other, by rejection sampling; and the number of candidates drawn.

    Candidates come from ``rng`` in batches and are taken in order, each kept if
    it is ``gap`` or more from every centre kept before it (exactly sequential
    rejection sampling on that stream). Stops after ``TRIES_PER_SPOT·wanted``
    candidates: fewer than ``wanted`` centres come back then.

    Example:
        >>> centres, _ = place_spots(np.random.default_rng(0), 5, np.zeros(2), np.full(2, 20.0), 6)
        >>> d = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
        >>> len(centres), bool(d[~np.eye(5, dtype=bool)].min() >= 6)
        (5, True)
    """
    dims = len(lo)
    placed = np.empty((wanted, dims))
    kept, tries, budget, gap2 = 0, 0, TRIES_PER_SPOT * wanted, gap**2
    while kept < wanted and tries < budget:
        # a batch's distances are batch × kept × dims floats: ≤ 2²⁰ · dims
        batch = max(8, min(256, 2 * (wanted - kept), 2**20 // max(1, kept)))
        batch = min(batch, budget - tries)
        candidates = lo + rng.random((batch, dims)) * (hi - lo)
        tries += batch
        if kept:
            d2 = ((candidates[:, None, :] - placed[None, :kept]) ** 2).sum(axis=-1)
            candidates = candidates[d2.min(axis=1) >= gap2]
        start = kept  # centres kept from this batch, checked against each other
        for candidate in candidates:
            if kept == wanted:
                break
            if np.all(((placed[start:kept] - candidate) ** 2).sum(axis=1) >= gap2):
                placed[kept] = candidate
                kept += 1
    return placed[:kept], tries


def render_spots(
    shape: tuple[int, ...], centres: np.ndarray, amplitudes: np.ndarray, sigma: float
) -> np.ndarray:
    """A float64 map of ``shape`` (array order): the sum of one Gaussian of height
    ``amplitudes[k]`` at each ``centres[k]`` (x, y[, z]), each drawn only within
    ±⌈WINDOW·σ⌉ px of its centre (clipped to the map).

    Example:
        >>> m = render_spots((9, 40), np.array([[3.0, 4.0], [30.0, 4.0]]), np.array([1, 0.5]), 1.0)
        >>> float(m[4, 3]), float(m[4, 30]), float(m[4, 17])
        (1.0, 0.5, 0.0)
    """
    out = np.zeros(shape)
    reach = math.ceil(WINDOW * sigma)
    size = np.array(shape[::-1])  # x, y, z
    sigmas = (sigma,) * len(shape)
    for centre, amplitude in zip(centres, amplitudes, strict=True):
        lo = np.maximum(np.ceil(centre - reach), 0).astype(int)
        hi = np.minimum(np.floor(centre + reach) + 1, size).astype(int)
        window = tuple(slice(a, b) for a, b in zip(lo[::-1], hi[::-1], strict=True))
        spot = anisotropic_gaussian(tuple((hi - lo)[::-1]), centre - lo, sigmas)
        out[window] += amplitude * spot
    return out


def write_spots(
    out_dir: Path,
    *,
    seed: int = 0,
    count: int = 64,
    dims: int = 2,
    spots_per_map: int | None = None,
    sigma: float = SPOT_SIGMA,
    noise: float = 0.0,
    offset: float = 0.0,
) -> list[dict[str, object]]:
    """Write ``count`` maps of many Gaussian spots into ``out_dir``, plus ``truth.csv``.

    Each map is ``offset + Σₖ aₖ·G(centreₖ, σ) [+ noise]``: ``spots_per_map``
    spots at uniform random sub-pixel centres that keep 3σ from the edges
    (:func:`spot_margin`) and at least 4σ (Euclidean) from one another
    (:func:`place_spots`), amplitudes ``aₖ`` uniform in [0.5, 1).

    Args:
        out_dir: folder to write into (created; files of the same names replaced).
        seed: integer ≥ 0; the same seed and knobs give the same bytes. Positions,
            amplitudes and noise have their own streams per map, so ``noise``
            changes no spot, and map i is the same for any ``count``.
        count: number of maps.
        dims: 2 for 256×256 maps (H×W), 3 for 48×64×64 volumes (D×H×W).
        spots_per_map: spots in each map; ``None``: 100 in 2D, 60 in 3D.
        sigma: the spots' σ in px (one number; the spots are round).
        noise: std of i.i.d. Gaussian noise added to every pixel (spots are 0.5–1 high).
        offset: constant background (≥ 0) added to every pixel.

    Files: 2D ``spots.npy`` float32 ``(count, 1, 256, 256)``; 3D
    ``spot_volumes.npy`` float32 ``(count, 1, 48, 64, 64)``; ``truth.csv``
    ``file,sample,channel,decoder,x,y,z,score``, one row per spot, decoder
    ``truth``, pixel frame (x indexes W, y H, z D; ``z`` empty in 2D), score the
    spot's peak value ``aₖ + offset``; ordered by sample, then by score, highest
    first.

    Raises:
        ValueError: a knob out of range, or the spots can't be placed 4σ apart
            (the message gives how many were wanted, placed and tried).

    Returns:
        The truth rows, as written to ``truth.csv``.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     rows = write_spots(Path(tmp), count=2, spots_per_map=5)
        ...     maps = np.load(Path(tmp) / "spots.npy")
        >>> maps.shape, maps.dtype, len(rows), rows[0]["score"] >= rows[4]["score"]
        ((2, 1, 256, 256), dtype('float32'), 10, True)
    """
    noise, offset = float(noise), float(offset)
    shape, wanted, sigma = _check_spots(seed, count, dims, spots_per_map, sigma, noise, offset)
    margin = spot_margin(shape, sigma)
    lo, hi = margin, np.array(shape[::-1], dtype=np.float64) - 1 - margin
    gap = SEPARATION * sigma
    _check_room(wanted, shape, lo, hi, gap)
    maps = np.empty((count, 1, *shape), dtype=np.float32)
    name = SPOT_FILES[dims]
    truth: list[dict[str, object]] = []
    for i in range(count):
        centres, tries = place_spots(_stream(seed, _POSITIONS, i), wanted, lo, hi, gap)
        if len(centres) < wanted:
            raise ValueError(
                f"placed only {len(centres)} of {wanted} spots at least {gap:g} px (4σ) apart "
                f"on map {i} ({'×'.join(map(str, shape[::-1]))}) after {tries} random tries: "
                "use fewer spots per map or a smaller sigma"
            )
        amplitudes = _stream(seed, _AMPLITUDES, i).uniform(*AMPLITUDE_RANGE, wanted)
        heatmap = render_spots(shape, centres, amplitudes, sigma) + offset
        if noise > 0:
            heatmap += _stream(seed, _NOISE, i).normal(0.0, noise, shape)
        maps[i, 0] = heatmap
        for k in np.argsort(-amplitudes, kind="stable"):
            truth.append(_truth_row(name, i, centres[k], float(amplitudes[k] + offset)))
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(out_dir / name, lambda fh: np.save(fh, maps, allow_pickle=False), binary=True)
    _write_truth(out_dir, truth)
    return truth
