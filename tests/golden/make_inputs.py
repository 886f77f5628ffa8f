"""Writes tests/golden/inputs/: small heatmaps with every kind of map a run meets.

Run once; the files are committed. Regenerating them changes the frozen
outputs too (python tests/golden/make_inputs.py && python tests/golden/freeze.py).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).parent / "inputs"


def gaussian(shape: tuple[int, ...], centre: np.ndarray, sigma: float) -> np.ndarray:
    grids = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    r2 = sum(
        (g - c) ** 2 for g, c in zip(grids, centre[::-1], strict=True)
    )  # centre is (x, y[, z])
    return np.exp(-r2 / (2 * sigma**2))


def main() -> None:
    HERE.mkdir(exist_ok=True)
    rng = np.random.default_rng(20261202)
    truth: list[list] = []
    mix = np.zeros((4, 3, 20, 28), np.float32)
    for n in range(4):
        for c in range(3):
            xy = rng.uniform([3, 3], [25, 17])
            mix[n, c] = gaussian((20, 28), xy, rng.uniform(1.2, 3.0))
            mix[n, c] += rng.random((20, 28)) * 0.02
            truth.append(["mix.npy", n, c, *xy, ""])
    mix[0, 1] = np.nan  # nonfinite
    mix[1, 0] = 0.0  # flat
    mix[2, 2] = gaussian((20, 28), np.array([27.0, 0.0]), 1.5)  # border
    mix[3, 1] = gaussian((20, 28), np.array([5.0, 5.0]), 2) + gaussian(
        (20, 28), np.array([22.0, 14.0]), 2
    )  # multimodal
    np.save(HERE / "mix.npy", mix)
    vol = np.zeros((2, 2, 9, 12, 14), np.float32)
    for n in range(2):
        for c in range(2):
            xyz = rng.uniform([2, 2, 2], [12, 10, 7])
            vol[n, c] = gaussian((9, 12, 14), xyz, 1.6)
            truth.append(["vol.npy", n, c, *xyz])
    np.save(HERE / "vol.npy", vol)
    xy = np.array([13.3, 8.6])
    image = np.round(255 * gaussian((22, 30), xy, 2.2)).astype(np.uint8)
    Image.fromarray(image).save(HERE / "img.png")
    truth.append(["img.png", 0, 0, *xy, ""])
    (HERE / "broken.npy").write_bytes(b"\x93NUMPY not really")
    with open(HERE.parent / "truth.csv", "w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["file", "sample", "channel", "x", "y", "z"])
        for row in truth:
            writer.writerow([f"{v:.6f}" if isinstance(v, float) else v for v in row])


if __name__ == "__main__":
    main()
