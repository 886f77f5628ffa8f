"""End-to-end: `heatdecode run` against the floors of reading and writing the same files.

Generates a folder of 8-bit 256×256 PNG heatmaps (one Gaussian peak each) and,
in one process, measures files/s of:

- the Pillow decode floor: every PNG opened and converted to an array, on 2 threads;
- a naive per-file script: load, numpy soft-argmax and argmax, one file at a time;
- `heatdecode run --no-overlays` (the library call, so Python/torch start-up is
  not counted; it is reported separately);
- a naive sequential overlay writer (colour map + two markers, Pillow's default
  PNG compression) and `heatdecode run` with overlays;
- the same maps as `.npy`: `np.load` of every file against `heatdecode run`.

and prints each target's ratio. Run: ``python benchmarks/bench_run.py [--files 2000]``
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from heatdecode.overlays import colorize
from heatdecode.pipeline import DecodeSettings
from heatdecode.runner import SAVED_MAP_DEFAULTS, RunConfig, run
from heatdecode.sample import gaussian


def make_folders(root: Path, count: int) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    base = gaussian((256, 256), np.array([127.3, 126.8]), 4.0)
    png, npy = root / "png", root / "npy"
    png.mkdir(parents=True)
    npy.mkdir(parents=True)
    for i in range(count):
        shift = (int(rng.integers(-90, 90)), int(rng.integers(-90, 90)))
        image = np.rint(np.roll(base, shift, (0, 1)) * 255).astype(np.uint8)
        Image.fromarray(image).save(png / f"m{i:05d}.png")
        np.save(npy / f"m{i:05d}.npy", image.astype(np.float32) / 255)
    return png, npy


def timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def pillow_floor(files: list[Path]) -> None:
    def read(path: Path) -> np.ndarray:
        with Image.open(path) as image:
            return np.asarray(image)

    with ThreadPoolExecutor(2) as pool:
        for _ in pool.map(read, files):
            pass


def naive_script(files: list[Path]) -> None:
    for path in files:
        with Image.open(path) as image:
            x = np.asarray(image).astype(np.float64)
        x = (x - x.min()) / max(x.max() - x.min(), 1e-12)
        w = np.exp(20 * (x - 1))
        w /= w.sum()
        ys, xs = np.indices(x.shape)
        (w * xs).sum(), (w * ys).sum(), np.unravel_index(x.argmax(), x.shape)


def naive_overlays(files: list[Path], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for path in files:
        with Image.open(path) as image:
            x = np.asarray(image)
        y, xx = np.unravel_index(x.argmax(), x.shape)
        picture = Image.fromarray(colorize(x))
        draw = ImageDraw.Draw(picture)
        draw.line([(xx - 5, y), (xx + 5, y)], fill=(255, 255, 255))
        draw.line([(xx, y - 5), (xx, y + 5)], fill=(255, 255, 255))
        draw.ellipse([xx - 6, y - 6, xx + 6, y + 6], outline=(0, 220, 255))
        picture.save(out / f"{path.name}.png")  # Pillow's default compression


def heatdecode_run(folder: Path, out: Path, overlays: bool) -> None:
    config = RunConfig(
        settings=DecodeSettings(defaults=SAVED_MAP_DEFAULTS),
        device="cpu",
        overlays=overlays,
        overwrite=True,
    )
    run([folder], out, config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=2000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="heatdecode-run-"))
    try:
        png, npy = make_folders(root, args.files)
        pngs = sorted(png.iterdir())
        npys = sorted(npy.iterdir())
        n = len(pngs)
        heatdecode_run(png, root / "warm", overlays=False)  # first-call costs out of the way
        t = {
            "pillow decode floor (2 threads)": timed(lambda: pillow_floor(pngs)),
            "naive per-file script": timed(lambda: naive_script(pngs)),
            "heatdecode run --no-overlays": timed(
                lambda: heatdecode_run(png, root / "a", overlays=False)
            ),
            "naive sequential overlay writer": timed(
                lambda: naive_overlays(pngs, root / "naive-overlays")
            ),
            "heatdecode run (overlays)": timed(lambda: heatdecode_run(png, root / "b", True)),
            "np.load of the .npy files": timed(lambda: [np.load(p) for p in npys]),
            "heatdecode run --no-overlays (.npy)": timed(
                lambda: heatdecode_run(npy, root / "c", overlays=False)
            ),
        }
        startup = timed(
            lambda: subprocess.run([sys.executable, "-c", "import heatdecode.cli"], check=True)
        )
        print(f"{n} files of 256x256, 8-bit PNG (and the same maps as float32 .npy)\n")
        print("| what | seconds | files/s |")
        print("|---|---:|---:|")
        for name, seconds in t.items():
            print(f"| {name} | {seconds:.2f} | {n / seconds:,.0f} |")
        print(f"| Python + torch start-up of the CLI (once per run) | {startup:.2f} | |")
        floor = t["pillow decode floor (2 threads)"]
        print("\n| target | measured | goal |")
        print("|---|---:|---:|")
        ratio = floor / t["heatdecode run --no-overlays"]
        print(f"| run --no-overlays vs Pillow decode floor | {ratio:.0%} | ≥ 80% |")
        ratio = t["naive sequential overlay writer"] / t["heatdecode run (overlays)"]
        print(f"| run with overlays vs naive overlay writer | {ratio:.1f}× | ≥ 3× |")
        ratio = t["heatdecode run --no-overlays (.npy)"] / t["np.load of the .npy files"]
        print(f"| .npy run time / np.load time | {ratio:.2f}× | ≤ 1.5× |")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
