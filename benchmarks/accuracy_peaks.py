"""Accuracy of peaks mode on crowded noisy spots, scored by one-to-one matching.

Maps: 256×256 images with 300 Gaussian spots each (σ = 1.5 px, amplitudes
0.5–1, at least 4σ apart), Gaussian noise of std 0.15, written by
``heatdecode.spots.write_spots``. Peaks: ``find_peaks(threshold_abs=0.45,
min_distance=2, exclude_border=False)``, integer and refined by each
decoder, against scikit-image's ``peak_local_max`` with the same arguments.
Scores: ``heatdecode.matching.match_maps`` pooled over the maps.

Run: ``python benchmarks/accuracy_peaks.py [--maps 8] [--noise 0.15]``
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from heatdecode.matching import match_maps
from heatdecode.peaks import find_peaks
from heatdecode.spots import write_spots

REFINERS = ("argmax", "quarter", "parabola", "dark", "local-softargmax")


def spot_set(maps: int, noise: float, seed: int) -> tuple[np.ndarray, list[np.ndarray]]:
    with tempfile.TemporaryDirectory() as tmp:
        rows = write_spots(Path(tmp), seed=seed, count=maps, spots_per_map=300, noise=noise)
        images = np.load(Path(tmp) / "spots.npy")[:, 0]
    truth = [np.array([[r["x"], r["y"]] for r in rows if r["sample"] == i]) for i in range(maps)]
    return images, truth


def scores(points: list[np.ndarray], truth: list[np.ndarray]) -> dict[str, float]:
    metrics = match_maps(list(zip(range(len(truth)), points, truth, strict=True)), (1.0, 3.0))
    at1, at3 = metrics.pooled
    return {"f1@1": at1.f1, "mean@1": at1.mean_distance, "f1@3": at3.f1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--maps", type=int, default=8)
    parser.add_argument("--noise", type=float, default=0.15)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    images, truth = spot_set(args.maps, args.noise, args.seed)
    options = {"min_distance": 2, "threshold_abs": 0.45, "exclude_border": False}
    table = {}
    for refine in REFINERS:
        found = find_peaks(
            torch.from_numpy(images), refine=None if refine == "argmax" else refine, **options
        )
        coords, index = found.coords.double().numpy(), found.map_index.numpy()
        table[refine] = scores([coords[index == i] for i in range(args.maps)], truth)
    try:
        from skimage.feature import peak_local_max

        ref = [peak_local_max(m, **options)[:, ::-1].astype(float) for m in images]
        table["scikit-image peak_local_max"] = scores(ref, truth)
    except ImportError:
        pass
    print(f"{args.maps} maps of 256×256, 300 spots each, noise {args.noise}, threshold 0.45\n")
    print("| peaks | F1 at 1 px | mean matched error at 1 px | F1 at 3 px |")
    print("| --- | ---: | ---: | ---: |")
    for name, s in table.items():
        print(f"| {name} | {s['f1@1']:.3f} | {s['mean@1']:.3f} | {s['f1@3']:.3f} |")


if __name__ == "__main__":
    main()
