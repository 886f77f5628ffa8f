"""Mean soft-argmax error against the true peak, per β and normalisation.

Random sub-pixel Gaussian peaks (σ in px) on 48×64 maps and 20×28×36 volumes,
float and 8-bit quantised. Run: ``python benchmarks/choose_beta.py``.
"""

from __future__ import annotations

import numpy as np
import torch

from heatdecode import soft_argmax
from heatdecode.sample import gaussian

BETAS = (5, 10, 15, 20, 30, 50, 100)
CASES = (((48, 64), 1.5), ((48, 64), 2.0), ((48, 64), 3.0), ((20, 28, 36), 1.5))


def main(count: int = 200, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    print("normalize=minmax; mean Euclidean error in px (float maps / 8-bit maps)")
    print(f"{'map':>14} {'sigma':>5} " + " ".join(f"{'b=' + str(b):>13}" for b in BETAS))
    for shape, sigma in CASES:
        centres = np.array([[rng.uniform(4, n - 5) for n in reversed(shape)] for _ in range(count)])
        maps = torch.tensor(np.array([gaussian(shape, c, sigma) for c in centres]))
        quantised = torch.round(maps * 255)
        cells = []
        for beta in BETAS:
            errors = []
            for m in (maps, quantised):
                xy = soft_argmax(m, beta=beta, spatial_dims=len(shape), normalize="minmax").numpy()
                errors.append(np.linalg.norm(xy - centres, axis=1).mean())
            cells.append(f"{errors[0]:6.3f}/{errors[1]:6.3f}")
        name = "x".join(map(str, shape))
        print(f"{name:>14} {sigma:>5} " + " ".join(f"{c:>13}" for c in cells))


if __name__ == "__main__":
    main()
