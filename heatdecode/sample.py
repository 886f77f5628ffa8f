"""Synthetic heatmaps with known ground truth (``heatdecode sample``).

Each map holds one Gaussian peak at a random sub-pixel position, away from the
border. The set covers every input format the loader reads: 8-bit and 16-bit
PNG, a multi-channel ``.npy`` (N, C, H, W), a ``.npz`` with two members, and a
non-cubic 3D volume ``.npy`` (N, C, D, H, W). ``truth.csv`` has the columns of
``coordinates.csv`` with decoder ``truth``, in the pixel frame.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
from PIL import Image

from heatdecode.writers import atomic_write

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

    def write(fh) -> None:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(TRUTH_COLUMNS)
        for row in sorted(truth, key=lambda r: (r["file"], r["sample"], r["channel"])):
            writer.writerow(["" if row[k] is None else row[k] for k in TRUTH_COLUMNS])

    atomic_write(out_dir / "truth.csv", write)
    return truth
