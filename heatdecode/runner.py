"""``heatdecode run`` as a library call: decode paths and write every output.

:func:`run` is what the CLI calls; it is usable on its own. It checks the
output folder before any work, decodes with :mod:`heatdecode.pipeline`, renders
overlays in background threads as arrays complete, and writes
``coordinates.csv`` / ``coordinates.json`` atomically at the end.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from threading import BoundedSemaphore
from typing import Any

import numpy as np
import torch

from heatdecode import __version__
from heatdecode.evaluate import Evaluation, evaluate, read_truth, write_metrics
from heatdecode.family import DECODERS
from heatdecode.frames import Frame
from heatdecode.loading import HeatmapArray, LoadFailure, Source, discover
from heatdecode.overlays import overlay_path, render_overlay
from heatdecode.pipeline import DecodedArray, DecoderRun, DecodeSettings, decode_sources
from heatdecode.writers import (
    CSV_COLUMNS,
    JSON_SCHEMA,
    atomic_write,
    iter_rows,
    json_rows,
    write_csv,
    write_json,
)

FORMATS = ("csv", "json")

#: ``heatdecode run``'s per-decoder defaults for saved heatmaps, whose scale is
#: arbitrary (0-1 floats, 0-255 PNGs): minmax makes β scale-free, and each β is
#: the one measured best on σ≈2 Gaussians (see the README). ``--beta`` and
#: ``--normalize`` override them for every decoder.
SAVED_MAP_DEFAULTS: dict[str, dict[str, Any]] = {
    "softargmax": {"beta": 20.0, "normalize": "minmax"},
    "local-softargmax": {"beta": 11.0, "normalize": "minmax"},
}
OUTPUT_NAMES = {"csv": "coordinates.csv", "json": "coordinates.json"}
METRICS_NAMES = ("metrics.csv", "metrics.json")


class UsageError(ValueError):
    """A mistake in how the run was asked for (exit code 2), found before any work."""


@dataclass(frozen=True)
class RunConfig:
    """Everything ``heatdecode run`` can be told, with the CLI's defaults."""

    settings: DecodeSettings = DecodeSettings(defaults=SAVED_MAP_DEFAULTS)
    frame: Frame = Frame()
    layout: str = "auto"
    device: str = "auto"
    batch_size: int = 256
    workers: int = 4
    prefetch: int = 16
    formats: tuple[str, ...] = FORMATS
    overlays: bool = True
    overwrite: bool = False
    strict: bool = False
    truth: Path | None = None


@dataclass
class RunReport:
    """What a run did: results in source order, failures, and where outputs went."""

    results: list[DecodedArray]
    failures: list[LoadFailure]
    sources: int
    device: str
    stopped: bool
    elapsed: float
    outputs: list[Path] = field(default_factory=list)
    overlay_errors: list[LoadFailure] = field(default_factory=list)
    evaluation: Evaluation | None = None

    @property
    def maps(self) -> int:
        return sum(r.maps for r in self.results)

    def nonfinite(self) -> list[tuple[str, int, int]]:
        """(file, sample, channel) of every map holding NaN or Inf."""
        return [
            (r.name, *divmod(int(m), r.channels))
            for r in self.results
            for m in np.flatnonzero(~r.finite)
        ]

    def flat_count(self) -> int:
        return int(sum(np.count_nonzero(r.flat & r.finite) for r in self.results))

    def distances(self) -> dict[str, np.ndarray]:
        """Each decoder's distance to the argmax, in heatmap pixels, for every finite map.

        Empty when argmax didn't run: it is the reference the others refine.
        """
        parts: dict[str, list[np.ndarray]] = {}
        for r in self.results:
            if "argmax" not in r.outputs:
                continue
            reference = r.outputs["argmax"].coords
            for label, out in r.outputs.items():
                if label != "argmax":
                    d = np.linalg.norm(out.coords - reference, axis=1)
                    parts.setdefault(label, []).append(d[r.finite])
        return {label: np.concatenate(p) for label, p in parts.items()}

    @property
    def ok(self) -> bool:
        return not (self.failures or self.overlay_errors or self.stopped or self.nonfinite())


def resolve_device(name: str) -> torch.device:
    """``auto`` → cuda if available, else mps, else cpu; explicit names are checked.

    Raises:
        UsageError: unknown or unavailable device.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UsageError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cpu":
        return device
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"device {name!r} is not available: this torch sees no CUDA GPU")
        index = device.index or 0
        if index >= torch.cuda.device_count():
            raise UsageError(
                f"device {name!r} is not available: only {torch.cuda.device_count()} CUDA GPU(s)"
            )
        return device
    if device.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise UsageError(f"device {name!r} is not available on this machine")
        return device
    raise UsageError(f"unsupported device {name!r}; use auto, cpu, cuda, cuda:N or mps")


def _read_truth(path: Path) -> list[dict[str, Any]]:
    try:
        return read_truth(path)
    except (OSError, ValueError) as exc:
        raise UsageError(f"--truth {path}: {exc}") from None


def check_out_dir(
    out_dir: Path, formats: Sequence[str], overwrite: bool, metrics: bool = False
) -> None:
    """Refuse an output folder that can't be used, before any work starts."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir} is a file, not a folder")
    existing = out_dir
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out_dir} is not writable")
    if not overwrite:
        names = [OUTPUT_NAMES[f] for f in formats] + (list(METRICS_NAMES) if metrics else [])
        taken = [name for name in names if (out_dir / name).exists()]
        if taken:
            raise UsageError(
                f"{out_dir} already holds {', '.join(taken)}; pass --overwrite to replace, "
                "or choose another --out"
            )


def _legend(run: DecoderRun) -> str:
    options = run.options()
    parts = []
    if "beta" in options:
        parts += [f"beta={options['beta']:g}", options["normalize"]]
    if "radius" in options:
        parts.append(f"r={options['radius']}")
    if "sigma" in options:
        sigma = options["sigma"]
        parts.append("sigma=auto" if sigma is None else f"sigma={sigma:g}")
    return f"{run.label} ({', '.join(parts)})" if parts else run.label


def _overlay_job(
    out_dir: Path, result: DecodedArray, maps: np.ndarray, legend: dict[str, str]
) -> Path:
    flat_maps = maps.reshape(result.maps, *result.spatial_shape)
    points = {}
    for name, out in result.outputs.items():
        coords = out.coords.copy()
        coords[~result.finite] = np.nan  # no marker where the map couldn't be decoded
        points[name] = coords
    if result.samples == 1:
        labels = [f"c{c}" for c in range(result.channels)]
    else:
        labels = [f"n{n} c{c}" for n in range(result.samples) for c in range(result.channels)]
    image = render_overlay(flat_maps, points, f"{result.name}  [{result.layout}]", labels, legend)
    path = overlay_path(out_dir, result.name)
    atomic_write(path, lambda fh: image.save(fh, format="PNG", compress_level=1), binary=True)
    return path


def run(
    paths: Sequence[str | os.PathLike[str]],
    out_dir: Path,
    config: RunConfig = RunConfig(),
    *,
    on_loaded: Callable[[Source, list[HeatmapArray | LoadFailure]], None] | None = None,
    on_start: Callable[[int], None] | None = None,
) -> RunReport:
    """Decode ``paths`` and write the outputs into ``out_dir``.

    Raises:
        UsageError: bad settings, an unusable ``out_dir``, existing outputs
            without ``overwrite``, or nothing to decode. Nothing is written then.
    """
    started = time.perf_counter()
    formats = tuple(dict.fromkeys(config.formats))
    if config.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {config.batch_size}")
    runs = config.settings.resolved_runs()
    if not runs:
        raise UsageError("no decoder chosen")
    for run_ in runs:  # checked here so a bad option fails before any file is read
        if run_.decoder not in DECODERS:
            raise UsageError(f"unknown decoder {run_.decoder!r}; choose from {', '.join(DECODERS)}")
        if run_.radius is not None and run_.radius < 1:
            raise UsageError(f"--radius must be at least 1, got {run_.radius}")
        if run_.sigma is not None and not (np.isfinite(run_.sigma) and run_.sigma > 0):
            raise UsageError(f"--sigma must be a finite number > 0, got {run_.sigma}")
        if run_.beta is not None and not (np.isfinite(run_.beta) and run_.beta > 0):
            raise UsageError(f"--beta must be a finite number > 0, got {run_.beta}")
    device = resolve_device(config.device)
    out_dir = Path(out_dir)
    check_out_dir(out_dir, formats, config.overwrite, metrics=config.truth is not None)
    truth = _read_truth(config.truth) if config.truth is not None else None
    sources, missing = discover(paths, exclude=[out_dir])
    if not sources:
        reason = (
            "; ".join(f"{f.name}: {f.reason}" for f in missing)
            or "no .npy, .npz, .png or .tif files found"
        )
        raise UsageError(f"nothing to decode ({reason})")
    if on_start is not None:
        on_start(len(sources))
    out_dir.mkdir(parents=True, exist_ok=True)

    legend = {run_.label: _legend(run_) for run_ in runs}
    overlay_errors: list[LoadFailure] = []
    jobs: list[tuple[str, Future]] = []
    slots = BoundedSemaphore(2 * max(1, config.workers))
    written_overlays: dict[str, Path] = {}
    renderer = ThreadPoolExecutor(
        max_workers=max(1, config.workers), thread_name_prefix="heatdecode-draw"
    )

    def completed(result: DecodedArray, maps: np.ndarray) -> None:
        if not config.overlays:
            return
        slots.acquire()  # bounds the arrays held by pending overlay jobs
        future = renderer.submit(_overlay_job, out_dir, result, maps, legend)
        future.add_done_callback(lambda _: slots.release())
        jobs.append((result.name, future))

    try:
        results, failures, stopped = decode_sources(
            sources,
            config.settings,
            layout=config.layout,
            device=device,
            batch_size=config.batch_size,
            workers=config.workers,
            prefetch=config.prefetch,
            strict=config.strict,
            on_loaded=on_loaded,
            on_complete=completed,
        )
    finally:
        renderer.shutdown(wait=True)
    for name, future in jobs:
        try:
            written_overlays[name] = future.result()
        except Exception as exc:  # a full disk, say: report it, keep the coordinates
            overlay_errors.append(LoadFailure(name, f"overlay not written ({exc})"))

    report = RunReport(
        results=results,
        failures=missing + failures,
        sources=len(sources) + len(missing),
        device=str(device),
        stopped=stopped,
        elapsed=0.0,
        overlay_errors=overlay_errors,
    )
    if "csv" in formats:
        path = out_dir / OUTPUT_NAMES["csv"]
        write_csv(path, iter_rows(results, config.frame))
        report.outputs.append(path)
    report.elapsed = time.perf_counter() - started
    if truth is not None:
        try:
            report.evaluation = evaluate(iter_rows(results, config.frame), truth)
        except ValueError as exc:  # e.g. two inputs with the same file name
            raise UsageError(f"--truth: {exc}") from None
        report.outputs.extend(write_metrics(out_dir, report.evaluation))
    if "json" in formats:
        path = out_dir / OUTPUT_NAMES["json"]
        write_json(path, _document(report, config, paths, out_dir, written_overlays))
        report.outputs.append(path)
    report.elapsed = time.perf_counter() - started
    return report


def summary(report: RunReport) -> dict[str, Any]:
    """The numbers of the terminal summary table (also stored in the JSON)."""
    distances = {
        label: {"mean": float(d.mean()), "max": float(d.max())}
        for label, d in report.distances().items()
        if len(d)
    }
    return {
        "files": report.sources,
        "arrays": len(report.results),
        "maps": report.maps,
        "failed_files": len(report.failures),
        "nonfinite_maps": len(report.nonfinite()),
        "flat_maps": report.flat_count(),
        "distance_to_argmax_px": distances,
        "seconds": round(report.elapsed, 4),
        "maps_per_second": round(report.maps / report.elapsed, 1) if report.elapsed > 0 else None,
    }


def _document(
    report: RunReport,
    config: RunConfig,
    paths: Sequence[str | os.PathLike[str]],
    out_dir: Path,
    overlays: dict[str, Path],
) -> dict[str, Any]:
    runs = config.settings.resolved_runs()
    soft = next((r.options() for r in runs if r.decoder == "softargmax"), {})
    return {
        "schema": JSON_SCHEMA,
        "complete": not report.stopped,
        "heatdecode_version": __version__,
        "torch_version": torch.__version__,
        "settings": {
            "inputs": [os.fspath(p) for p in paths],
            "decoders": [r.label for r in runs],
            # soft-argmax's β and normalisation, the numbers most readers look for
            "beta": soft.get("beta"),
            "normalize": soft.get("normalize"),
            "runs": [{"label": r.label, "decoder": r.decoder, **r.options()} for r in runs],
            **config.frame.describe(),
            "layout": config.layout,
            "device": report.device,
            "batch_size": config.batch_size,
        },
        "columns": list(CSV_COLUMNS),
        "files": [
            {
                "file": r.name,
                "layout": r.layout,
                "shape": list(r.shape),
                "samples": r.samples,
                "channels": r.channels,
                "spatial_shape": list(r.spatial_shape),
                "warnings": r.warnings,
                "overlay": (
                    overlays[r.name].relative_to(out_dir).as_posix() if r.name in overlays else None
                ),
            }
            for r in report.results
        ],
        "failures": [
            {"file": f.name, "reason": f.reason} for f in report.failures + report.overlay_errors
        ],
        "nonfinite_maps": [
            {"file": name, "sample": n, "channel": c} for name, n, c in report.nonfinite()
        ],
        "summary": summary(report),
        "rows": json_rows(iter_rows(report.results, config.frame)),
    }
