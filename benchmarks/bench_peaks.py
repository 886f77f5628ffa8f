"""How fast is heatdecode's find_peaks beside scikit-image's peak_local_max?

Times, in one process, interleaved round-robin after a warm-up, the median of
``--repeats`` calls of:

* ``skimage.feature.peak_local_max`` on every map of the batch in turn (a
  Python loop over the maps: it takes one image), on the CPU;
* ``heatdecode.find_peaks`` on the whole batch, integer peaks (the same
  peaks, checked before timing);
* ``heatdecode.find_peaks(..., refine="parabola")``: the same peaks refined
  to sub-pixel positions (scikit-image has no refinement: this row is
  compared with its integer peaks);

on float32 maps of many Gaussian spots (σ = 2 px, heights 0.5–1) plus
Gaussian noise (σ = 0.02), for the workloads 2D ``(8, 256, 256)``, 2D
``(4, 1024, 1024)`` and 3D ``(4, 64, 128, 128)``, each with two option sets:
scikit-image's defaults (``min_distance=1``, no threshold, border excluded:
every noise maximum is a peak, tens of thousands per map) and ``heatdecode run
--peaks``'s (``min_distance=2, threshold_rel=0.25, exclude_border=0``: the
spots). Prints a Markdown table: milliseconds per batch and per map, and the
ratio to scikit-image (< 1: faster).

The machines these run on are shared: compare the rows of one run (ratios),
not one run's milliseconds with another's. Run:

    python benchmarks/bench_peaks.py --threads 2            # cpu
    python benchmarks/bench_peaks.py --device cuda          # find_peaks on the GPU
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

import heatdecode
from heatdecode import find_peaks
from heatdecode.bench import median_ms, synchronizer, time_round_robin

try:
    from skimage.feature import peak_local_max
except ImportError:  # pragma: no cover - a benchmark dependency
    peak_local_max = None

#: name: (batch shape, spatial dims, spots per map)
WORKLOADS: dict[str, tuple[tuple[int, ...], int, int]] = {
    "2D": ((8, 256, 256), 2, 40),
    "2D large": ((4, 1024, 1024), 2, 400),
    "3D": ((4, 64, 128, 128), 3, 150),
}
#: name: find_peaks / peak_local_max options
OPTION_SETS: dict[str, dict] = {
    "skimage defaults": {"min_distance": 1},
    "run --peaks": {"min_distance": 2, "threshold_rel": 0.25, "exclude_border": 0},
}


def spot_maps(shape: tuple[int, ...], dims: int, spots: int, seed: int = 0) -> Tensor:
    """Float32 maps of ``spots`` Gaussian spots each (σ = 2 px) plus noise (σ = 0.02)."""
    rng = np.random.default_rng(seed)
    spatial = shape[-dims:]
    m = math.prod(shape[:-dims])
    maps = np.zeros((m, *spatial))
    half, sigma = 8, 2.0
    offsets = np.arange(-half, half + 1)
    for k in range(m):
        for _ in range(spots):
            centre = np.array([rng.uniform(2, n - 3) for n in spatial])
            base = np.floor(centre).astype(int)
            axes = [
                (b + offsets, np.exp(-((b + offsets - c) ** 2) / (2 * sigma**2)))
                for b, c in zip(base, centre, strict=True)
            ]
            window = rng.uniform(0.5, 1.0)
            for axis, (_, profile) in enumerate(axes):
                view = [1] * dims
                view[axis] = len(profile)
                window = window * profile.reshape(view)
            inside = [(i >= 0) & (i < n) for (i, _), n in zip(axes, spatial, strict=True)]
            where = np.ix_(*[i[ok] for (i, _), ok in zip(axes, inside, strict=True)])
            maps[(k, *where)] += window[np.ix_(*inside)]
    maps += 0.02 * rng.standard_normal(maps.shape)
    return torch.from_numpy(maps.astype(np.float32)).reshape(shape)


def contenders(maps: Tensor, dims: int, options: dict) -> dict[str, Callable[[], object]]:
    cpu = maps.reshape(-1, *maps.shape[-dims:]).cpu().numpy()

    def skimage() -> object:
        return [peak_local_max(image, **options) for image in cpu]

    def integer() -> object:
        return find_peaks(maps, dims, **options)

    def parabola() -> object:
        return find_peaks(maps, dims, refine="parabola", **options)

    return {"skimage": skimage, "find_peaks": integer, "find_peaks + parabola": parabola}


def check_same_peaks(maps: Tensor, dims: int, options: dict) -> int:
    """The peaks of both, map by map (same positions, same order); returns their number."""
    found = find_peaks(maps, dims, **options)
    images = maps.reshape(-1, *maps.shape[-dims:]).cpu().numpy()
    for m, image in enumerate(images):
        mine = found.coords[found.map_index == m].cpu().long().flip(-1).numpy()
        theirs = peak_local_max(image, **options)
        if not np.array_equal(mine, theirs):
            raise AssertionError(f"map {m}: find_peaks and peak_local_max differ ({options})")
    return len(found.coords)


def run(device: torch.device, names: list[str], repeats: int, warmup: int) -> list[dict]:
    results = []
    for name in names:
        shape, dims, spots = WORKLOADS[name]
        maps = spot_maps(shape, dims, spots).to(device)
        count = math.prod(shape[:-dims])
        for label, options in OPTION_SETS.items():
            peaks = check_same_peaks(maps, dims, options)
            times = time_round_robin(
                contenders(maps, dims, options),
                repeats=repeats,
                warmup=warmup,
                sync=synchronizer(device),
            )
            medians = {k: median_ms(v) for k, v in times.items()}
            results.append(
                {
                    "workload": name,
                    "shape": list(shape),
                    "options": label,
                    "maps": count,
                    "peaks": peaks,
                    "median_ms": medians,
                }
            )
            print(f"{name}, {label}: done", file=sys.stderr, flush=True)
    return results


def table(results: list[dict]) -> str:
    lines = [
        "| workload | options | peaks/map | skimage ms | find_peaks ms | ratio "
        "| + parabola ms | ratio |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        ms = r["median_ms"]
        base = ms["skimage"]
        shape = "×".join(map(str, r["shape"]))
        lines.append(
            f"| {r['workload']} `{shape}` | {r['options']} | {r['peaks'] / r['maps']:,.0f} "
            f"| {base:.1f} | {ms['find_peaks']:.1f} | {ms['find_peaks'] / base:.2f}× "
            f"| {ms['find_peaks + parabola']:.1f} | {ms['find_peaks + parabola'] / base:.2f}× |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="where find_peaks runs: cpu, cuda, cuda:N")
    parser.add_argument(
        "--workloads",
        default=",".join(WORKLOADS),
        help=f"comma-separated, from {', '.join(WORKLOADS)} (default: all)",
    )
    parser.add_argument("--repeats", type=int, default=11, help="timed calls each (default 11)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls each first")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--json", default=None, help="also write the results there")
    args = parser.parse_args(argv)
    if peak_local_max is None:
        print("scikit-image is not installed: pip install scikit-image", file=sys.stderr)
        return 1
    if args.threads:
        torch.set_num_threads(args.threads)
    names = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = [w for w in names if w not in WORKLOADS]
    if unknown:
        parser.error(
            f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}"
        )
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("cuda is not available here: skipped", file=sys.stderr)
        return 0
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    print(
        f"## find_peaks on {device} ({where or platform.machine()}), "
        f"{torch.get_num_threads()} torch threads, torch {torch.__version__}, "
        f"heatdecode {heatdecode.__version__}; peak_local_max on the CPU\n"
    )
    results = run(device, names, args.repeats, args.warmup)
    print(table(results))
    if args.json:
        Path(args.json).write_text(
            json.dumps({"device": str(device), "results": results}, indent=1)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
