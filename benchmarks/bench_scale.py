"""Scale: files/s and peak memory of `heatdecode run` on 1k, 5k and 20k small files.

Writes folders of small single-map ``.npy`` files (64×48 float32, one Gaussian
peak each), runs ``heatdecode run --no-overlays`` on each as a separate
process, and reports wall time, files/s and the child's peak RSS. Peak memory
should stay near flat as the folder grows: files are read a few at a time and
batched, and only the per-map results (a few numbers each) accumulate.

Run: ``python benchmarks/bench_scale.py [--sizes 1000,5000,20000] [--workdir DIR]``
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from heatdecode.sample import gaussian


def make_folder(folder: Path, count: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    base = gaussian((64, 48), np.array([23.4, 31.7]), 2.0).astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        shifted = np.roll(base, (int(rng.integers(-20, 20)), int(rng.integers(-15, 15))), (0, 1))
        np.save(folder / f"map_{i:06d}.npy", shifted)


def run_child(folder: Path, out: Path) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one `heatdecode run` in its own process."""
    command = [sys.executable, "-m", "heatdecode", "run", str(folder), "--out", str(out)]
    command += ["--no-overlays", "--quiet", "--device", "cpu"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.perf_counter()
    subprocess.run(command, check=True)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    # ru_maxrss of children is the largest of any child so far: run sizes in increasing order
    return seconds, max(peak, before) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,5000,20000")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    work = Path(args.workdir or tempfile.mkdtemp(prefix="heatdecode-scale-"))
    print("| files | seconds | files/s | peak RSS (MB) |")
    print("|---:|---:|---:|---:|")
    try:
        for count in sizes:
            folder = work / f"in_{count}"
            make_folder(folder, count)
            seconds, peak = run_child(folder, work / f"out_{count}")
            rate = count / seconds
            print(f"| {count:,} | {seconds:.1f} | {rate:,.0f} | {peak:,.0f} |", flush=True)
            shutil.rmtree(folder)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
