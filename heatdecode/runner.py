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
from heatdecode.pipeline import (
    DecodedArray,
    DecoderRun,
    DecodeSettings,
    Decoding,
    decode_sources,
)
from heatdecode.resume import (
    PARTIAL_NAMES,
    OutputBusy,
    Resumed,
    output_lock,
    read_partial,
    remove_partial,
)
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
    resume: bool = False


class Interrupted(Exception):
    """Ctrl-C or SIGTERM stopped the run; ``report`` says what was saved where."""

    def __init__(self, report: RunReport) -> None:
        super().__init__("interrupted")
        self.report = report


class OutputError(OSError):
    """An output could not be written (disk full, folder gone); one line for users."""


@dataclass
class RunReport:
    """What a run did: results in source order, failures, and where outputs went."""

    results: list[DecodedArray]
    failures: list[LoadFailure]
    sources: int
    device: str
    stopped: str | None  # None, "strict" or "interrupted"
    elapsed: float
    outputs: list[Path] = field(default_factory=list)
    overlay_errors: list[LoadFailure] = field(default_factory=list)
    evaluation: Evaluation | None = None
    resumed_sources: int = 0  # sources taken from an interrupted run's partial outputs
    resumed_maps: int = 0
    # problems inside the resumed part: they count for the exit code and summary
    resumed_failures: int = 0
    resumed_nonfinite: int = 0
    saved_sources: int = 0  # after an interruption: files whose results were saved

    @property
    def maps(self) -> int:
        return self.resumed_maps + sum(r.maps for r in self.results)

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
        return not (
            self.failures
            or self.overlay_errors
            or self.stopped
            or self.nonfinite()
            or self.resumed_failures
            or self.resumed_nonfinite
        )


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
        UsageError: bad settings, an unusable or busy ``out_dir``, existing
            outputs without ``overwrite``, a partial run that can't be resumed,
            or nothing to decode. Nothing is written then.
        Interrupted: Ctrl-C/SIGTERM; the finished files are in the partial
            outputs (see :mod:`heatdecode.resume`).
        OutputError: an output could not be written; earlier outputs are intact.
    """
    started = time.perf_counter()
    formats = tuple(dict.fromkeys(config.formats))
    runs = _check_config(config)
    device = resolve_device(config.device)
    out_dir = Path(out_dir)
    check_out_dir(
        out_dir,
        formats,
        config.overwrite or config.resume,
        metrics=config.truth is not None,
    )
    truth = _read_truth(config.truth) if config.truth is not None else None
    sources, missing = discover(paths, exclude=[out_dir])
    if not sources:
        reason = (
            "; ".join(f"{f.name}: {f.reason}" for f in missing)
            or "no .npy, .npz, .png or .tif files found"
        )
        raise UsageError(f"nothing to decode ({reason})")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {out_dir}: {exc.strerror or exc}") from None
    try:
        with output_lock(out_dir):
            return _locked_run(
                paths, out_dir, config, formats, runs, device, truth, sources, missing,
                started, on_loaded, on_start,
            )  # fmt: skip
    except OutputBusy as exc:
        raise UsageError(str(exc)) from None


def _check_config(config: RunConfig) -> tuple[DecoderRun, ...]:
    """Every option checked before any file is read."""
    if config.batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {config.batch_size}")
    runs = config.settings.resolved_runs()
    if not runs:
        raise UsageError("no decoder chosen")
    for run_ in runs:
        if run_.decoder not in DECODERS:
            raise UsageError(f"unknown decoder {run_.decoder!r}; choose from {', '.join(DECODERS)}")
        if run_.radius is not None and run_.radius < 1:
            raise UsageError(f"--radius must be at least 1, got {run_.radius}")
        if run_.sigma is not None and not (np.isfinite(run_.sigma) and run_.sigma > 0):
            raise UsageError(f"--sigma must be a finite number > 0, got {run_.sigma}")
        if run_.beta is not None and not (np.isfinite(run_.beta) and run_.beta > 0):
            raise UsageError(f"--beta must be a finite number > 0, got {run_.beta}")
    return runs


def _locked_run(
    paths: Sequence[str | os.PathLike[str]],
    out_dir: Path,
    config: RunConfig,
    formats: tuple[str, ...],
    runs: tuple[DecoderRun, ...],
    device: torch.device,
    truth: list[dict[str, Any]] | None,
    sources: list[Source],
    missing: list[LoadFailure],
    started: float,
    on_loaded: Callable[[Source, list[HeatmapArray | LoadFailure]], None] | None,
    on_start: Callable[[int], None] | None,
) -> RunReport:
    settings = _settings(config, paths, str(device), runs)
    resumed = None
    if config.resume:
        try:
            resumed = read_partial(out_dir, settings)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    resumed = resumed or Resumed()
    todo = [s for s in sources if s.name not in resumed.complete]
    if on_start is not None:
        on_start(len(todo))

    legend = {run_.label: _legend(run_) for run_ in runs}
    jobs: list[tuple[str, Future]] = []
    slots = BoundedSemaphore(2 * max(1, config.workers))
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
        decoding = decode_sources(
            todo,
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
    overlays: dict[str, Path] = {}
    overlay_errors: list[LoadFailure] = []
    for name, future in jobs:
        try:
            overlays[name] = future.result()
        except Exception as exc:  # a full disk, say: report it, keep the coordinates
            overlay_errors.append(LoadFailure(name, f"overlay not written ({exc})"))

    report = RunReport(
        results=decoding.results,
        failures=missing + [f for _, f in decoding.failures],
        sources=len(sources) + len(missing),
        device=str(device),
        stopped=decoding.stopped,
        elapsed=0.0,
        overlay_errors=overlay_errors,
        resumed_sources=len(resumed.complete),
        resumed_maps=resumed.maps,
        resumed_failures=sum(len(f) for f in resumed.failures.values()),
        resumed_nonfinite=sum(
            r["status"] == "nonfinite" and r["decoder"] == runs[0].label
            for rows in resumed.rows.values()
            for r in rows
        ),
    )
    interrupted = decoding.stopped == "interrupted"
    # Only whole sources go into the outputs of an interrupted run, so that
    # --resume can skip exactly those and redo the rest.
    keep = set(decoding.complete) if interrupted else {s.name for s in todo}
    per_source = _per_source(
        sources, missing, decoding, resumed, keep, config.frame, out_dir, overlays
    )
    rows = [row for entry in per_source for row in entry.rows]
    names = PARTIAL_NAMES if interrupted else OUTPUT_NAMES
    try:
        if "csv" in formats or interrupted:
            write_csv(out_dir / names["csv"], rows)
            report.outputs.append(out_dir / names["csv"])
        if truth is not None and not interrupted:
            try:
                report.evaluation = evaluate(rows, truth)
            except ValueError as exc:  # e.g. two inputs with the same file name
                raise UsageError(f"--truth: {exc}") from None
            report.outputs.extend(write_metrics(out_dir, report.evaluation))
        report.elapsed = time.perf_counter() - started
        if "json" in formats or interrupted:
            document = _document(report, settings, per_source, rows, interrupted)
            write_json(out_dir / names["json"], document)
            report.outputs.append(out_dir / names["json"])
        if not interrupted:
            remove_partial(out_dir)
    except OSError as exc:
        where = getattr(exc, "filename", None) or out_dir
        raise OutputError(f"could not write {where}: {exc.strerror or exc}") from None
    report.elapsed = time.perf_counter() - started
    if interrupted:
        report.saved_sources = len(resumed.complete) + len(decoding.complete)
        raise Interrupted(report)
    return report


@dataclass
class _SourceOutput:
    """One source's share of the outputs: its rows, file entries and failures."""

    rows: list[dict[str, Any]]
    files: list[dict[str, Any]]
    failures: list[dict[str, Any]]


def _per_source(
    sources: list[Source],
    missing: list[LoadFailure],
    decoding: Decoding,
    resumed: Resumed,
    keep: set[str],
    frame: Frame,
    out_dir: Path,
    overlays: dict[str, Path],
) -> list[_SourceOutput]:
    """Every source's outputs in source order, old (resumed) and new alike."""
    arrays: dict[str, list[DecodedArray]] = {}
    for result in decoding.results:
        arrays.setdefault(result.source, []).append(result)
    failures: dict[str, list[dict[str, Any]]] = {}
    for source, failure in decoding.failures:
        failures.setdefault(source, []).append(
            {"file": failure.name, "source": source, "reason": failure.reason}
        )
    entries = [
        _SourceOutput([], [], [{"file": f.name, "source": f.name, "reason": f.reason}])
        for f in missing
    ]
    for source in sources:
        if source.name in resumed.complete:
            entries.append(
                _SourceOutput(
                    resumed.rows.get(source.name, []),
                    resumed.files.get(source.name, []),
                    resumed.failures.get(source.name, []),
                )
            )
        elif source.name in keep:
            done = arrays.get(source.name, [])
            entries.append(
                _SourceOutput(
                    json_rows(iter_rows(done, frame)),
                    [_file_entry(r, out_dir, overlays) for r in done],
                    failures.get(source.name, []),
                )
            )
    return entries


def _file_entry(r: DecodedArray, out_dir: Path, overlays: dict[str, Path]) -> dict[str, Any]:
    return {
        "file": r.name,
        "source": r.source,
        "layout": r.layout,
        "shape": list(r.shape),
        "samples": r.samples,
        "channels": r.channels,
        "spatial_shape": list(r.spatial_shape),
        "warnings": r.warnings,
        "overlay": overlays[r.name].relative_to(out_dir).as_posix() if r.name in overlays else None,
    }


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
        "failed_files": len(report.failures) + report.resumed_failures,
        "nonfinite_maps": len(report.nonfinite()) + report.resumed_nonfinite,
        "flat_maps": report.flat_count(),
        "distance_to_argmax_px": distances,
        "seconds": round(report.elapsed, 4),
        "maps_per_second": round(report.maps / report.elapsed, 1) if report.elapsed > 0 else None,
    }


def _settings(
    config: RunConfig,
    paths: Sequence[str | os.PathLike[str]],
    device: str,
    runs: tuple[DecoderRun, ...],
) -> dict[str, Any]:
    soft = next((r.options() for r in runs if r.decoder == "softargmax"), {})
    return {
        "inputs": [os.fspath(p) for p in paths],
        "decoders": [r.label for r in runs],
        # soft-argmax's β and normalisation, the numbers most readers look for
        "beta": soft.get("beta"),
        "normalize": soft.get("normalize"),
        "runs": [{"label": r.label, "decoder": r.decoder, **r.options()} for r in runs],
        **config.frame.describe(),
        "layout": config.layout,
        "device": device,
        "batch_size": config.batch_size,
    }


def _document(
    report: RunReport,
    settings: dict[str, Any],
    per_source: list[_SourceOutput],
    rows: list[dict[str, Any]],
    interrupted: bool,
) -> dict[str, Any]:
    document: dict[str, Any] = {
        "schema": JSON_SCHEMA,
        "complete": not report.stopped,
        "heatdecode_version": __version__,
        "torch_version": torch.__version__,
        "settings": settings,
        "columns": list(CSV_COLUMNS),
        "files": [f for entry in per_source for f in entry.files],
        "failures": [f for entry in per_source for f in entry.failures]
        + [{"file": f.name, "reason": f.reason} for f in report.overlay_errors],
        "nonfinite_maps": [
            {"file": r["file"], "sample": r["sample"], "channel": r["channel"]}
            for r in rows
            if r["status"] == "nonfinite" and r["decoder"] == settings["decoders"][0]
        ],
        "summary": summary(report),
        "rows": rows,
    }
    if interrupted:
        document["stopped"] = "interrupted"
        document["complete_sources"] = sorted(
            {f["source"] for entry in per_source for f in entry.files + entry.failures}
        )
    return document
