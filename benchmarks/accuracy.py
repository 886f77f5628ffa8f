"""Which decoder should I use? Mean error of every decoder on synthetic maps, and the best β.

Generates the sample generator's clean, noisy and low-contrast sets (2D: 64×48
maps, 3D: 32³ volumes, σ = 2 px), decodes them with every decoder at
``heatdecode run``'s defaults, scores them against the truth, then sweeps β for
each normalisation. Prints the two Markdown tables the README quotes.

Run: ``python benchmarks/accuracy.py`` (a minute or two on 2 cores).
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path

from heatdecode.family import DECODERS
from heatdecode.pipeline import DecodeSettings
from heatdecode.runner import SAVED_MAP_DEFAULTS, RunConfig, run
from heatdecode.sample import preset, write_synthetic
from heatdecode.sweep import best, run_sweep, sweep_runs

KINDS = ("clean", "noisy", "low-contrast")
BETAS = (2.0, 5.0, 8.0, 11.0, 15.0, 20.0, 30.0, 50.0, 100.0)
NORMALIZE = ("none", "max", "minmax")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count-2d", type=int, default=200)
    parser.add_argument("--count-3d", type=int, default=40)
    args = parser.parse_args()
    base = RunConfig(formats=(), overlays=False, device="cpu")
    settings = DecodeSettings(decoders=tuple(DECODERS), defaults=SAVED_MAP_DEFAULTS)
    errors: dict[tuple[int, str], dict[str, float]] = {}
    betas: dict[tuple[int, str], dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for dims, count in ((2, args.count_2d), (3, args.count_3d)):
            for kind in KINDS:
                data = Path(tmp) / f"{kind}-{dims}d"
                write_synthetic(data, seed=7, count=count, **preset(kind, dims))
                truth = data / "truth.csv"
                config = replace(base, settings=settings, truth=truth)
                report = run([data], Path(tmp) / f"out-{kind}-{dims}", config)
                errors[dims, kind] = {n: m.mean for n, m in report.evaluation.decoders.items()}
                runs = sweep_runs(["softargmax", "local-softargmax"], NORMALIZE, BETAS)
                sweep = run_sweep([data], Path(tmp) / f"sweep-{kind}-{dims}", truth, runs, base)
                betas[dims, kind] = best(sweep.points)

    columns = [(d, k) for d in (2, 3) for k in KINDS]
    header = " | ".join(f"{k} {d}D" for d, k in columns)
    print("Mean error (px) at `heatdecode run`'s defaults:\n")
    print(f"| decoder | {header} |")
    print("|---" * (len(columns) + 1) + "|")
    for name in DECODERS:
        print(f"| {name} | " + " | ".join(f"{errors[c][name]:.3f}" for c in columns) + " |")
    print("\nBest β per normalisation (mean error in px at that β):\n")
    print(f"| decoder | normalize | {header} |")
    print("|---" * (len(columns) + 2) + "|")
    for name in ("softargmax", "local-softargmax"):
        for norm in NORMALIZE:
            cells = []
            for c in columns:
                p = betas[c].get((name, norm))
                cells.append("–" if p is None else f"{p.beta:g} ({p.metrics.mean:.3f})")
            print(f"| {name} | {norm} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
