"""``heatdecode run`` as a library call: decode paths and write every output.

:func:`run` is what the CLI calls; it is usable on its own. Its steps, in order:

1. :func:`_plan`: every option resolved and checked once, before anything else;
2. the output folder checked, created and locked, then checked again under the
   lock, and the inputs discovered (:func:`_inputs`), so two runs can't both
   pass the check;
3. :func:`_resume`: what an interrupted run in the folder had finished;
4. :func:`_decode_with_overlays`: decoding with :mod:`heatdecode.pipeline`,
   overlays drawn by an :class:`~heatdecode.overlay_writer.OverlayWriter` as
   arrays complete;
5. :func:`_build_report`: every source's :class:`~heatdecode.results.SourceRecord`,
   old and new, and the :class:`~heatdecode.report.RunReport`;
6. :func:`_write_outputs`: ``coordinates.csv``/``.json`` and the metrics,
   written under temporary names and renamed into place together.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from heatdecode import devices
from heatdecode.atomic import OutputError, commit_outputs
from heatdecode.evaluate import evaluate, read_truth, write_metrics_csv, write_metrics_json
from heatdecode.frames import Frame
from heatdecode.inputs import check_output_entries, discover_inputs, noting, remove_new_folder
from heatdecode.loading import MAX_MAP_BYTES, HeatmapArray, LoadFailure, Source
from heatdecode.options import (  # noqa: F401  (SAVED_MAP_DEFAULTS is re-exported)
    SAVED_MAP_DEFAULTS,
    WHOLE_MAP_DECODERS,
    PeakOptions,
    check_count,
    check_decoder,
    check_options,
)
from heatdecode.overlay_writer import OverlayWriter, overlay_mode
from heatdecode.peak_evaluation import (
    evaluate_peaks,
    write_peak_metrics_csv,
    write_peak_metrics_json,
)
from heatdecode.pipeline import (
    BATCH_BYTES,
    DecodeOutcome,
    DecoderSelection,
    DecoderSpec,
    decode_sources,
)
from heatdecode.preflight import (  # noqa: F401  (check_out_dir and UsageError are re-exported)
    METRICS_NAMES,
    OUTPUT_NAMES,
    UsageError,
    check_out_dir,
    nothing_to_decode,
)
from heatdecode.report import (  # noqa: F401  (summary is re-exported)
    RunReport,
    document,
    kept_sources,
    missing_records,
    new_records,
    run_settings,
    summary,
)
from heatdecode.results import Failure, SourceRecord
from heatdecode.resume import (
    PARTIAL_NAMES,
    OutputBusy,
    Resumed,
    input_record,
    output_lock,
    read_partial,
)
from heatdecode.writers import CSV_COLUMNS, json_rows, write_csv, write_json

FORMATS = ("csv", "json")
#: how a run that stopped early says so (``report.stopped``): its outputs are partial
PARTIAL_STOPS = ("interrupted", "out-of-memory")

__all__ = [
    "FORMATS",
    "Interrupted",
    "OutputError",
    "RunConfig",
    "RunReport",
    "UsageError",
    "check_out_dir",
    "resolve_device",
    "run",
    "summary",
]


@dataclass(frozen=True)
class RunConfig:
    """Everything ``heatdecode run`` can be told, with the CLI's defaults."""

    settings: DecoderSelection = DecoderSelection(defaults=SAVED_MAP_DEFAULTS)
    frame: Frame = Frame()
    layout: str = "auto"
    device: str = "auto"
    batch_size: int = 256
    workers: int = 4
    prefetch: int = 16
    formats: tuple[str, ...] = FORMATS
    overlays: str | bool = "worst"  # overlay_writer.OVERLAY_MODES (True: all, False: none)
    overlay_count: int = 24  # --overlays worst: this many maps
    overwrite: bool = False
    strict: bool = False
    truth: Path | None = None
    resume: bool = False
    max_map_bytes: int = MAX_MAP_BYTES  # the most one array may take (see load_source)
    batch_bytes: int = BATCH_BYTES  # the most bytes of maps in one batch (see decode_sources)
    peaks: PeakOptions | None = None  # peaks mode: every peak of a map, each decoder at each
    match_cutoffs: tuple[float, ...] | None = None  # peaks mode with truth: None, the defaults
    keys: tuple[str, ...] = ()  # --key: only these .npz members (see heatdecode.members)
    strict_layout: bool = False  # --strict-layout: a doubtful auto layout fails the array


class Interrupted(Exception):
    """Ctrl-C, SIGTERM or running out of memory stopped the run (``report.stopped``
    says which, ``report.error`` why); ``report`` says what was saved where."""

    def __init__(self, report: RunReport) -> None:
        super().__init__("interrupted")
        self.report = report


def resolve_device(name: str) -> torch.device:
    """:func:`heatdecode.devices.resolve_device`, its refusal a :class:`UsageError`."""
    try:
        return devices.resolve_device(name)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _read_truth(path: Path, many: bool = False) -> list[dict[str, Any]]:
    try:
        return read_truth(path, many=many)
    except (OSError, ValueError) as exc:
        raise UsageError(f"--truth {path}: {exc}") from None


@dataclass(frozen=True)
class _Plan:
    """The run's options, resolved and checked once (step 1)."""

    formats: tuple[str, ...]
    runs: tuple[DecoderSpec, ...]
    device: torch.device
    overwrite: bool  # outputs in --out may be replaced (--overwrite, or --resume)
    metrics: bool  # --truth given
    peaks: PeakOptions | None
    match_cutoffs: tuple[float, ...] | None
    settings: dict[str, Any]  # coordinates.json's settings, which --resume compares


@dataclass(frozen=True)
class _Inputs:
    """What the run reads (step 2)."""

    sources: list[Source]
    missing: list[Failure]  # arguments that don't exist, or entries a scan skipped
    notes: list[str]
    truth: list[dict[str, Any]] | None
    record: dict[str, Any]  # resume.input_record: paths, sizes, modification times


def run(
    paths: Sequence[str | os.PathLike[str]],
    out_dir: Path,
    config: RunConfig = RunConfig(),
    *,
    on_loaded: Callable[[Source, list[HeatmapArray | LoadFailure]], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    on_phase: Callable[[str], None] = lambda name: None,
) -> RunReport:
    """Decode ``paths`` and write the outputs into ``out_dir``; ``on_phase`` is
    told each step as it begins ("drawing overlays", "writing outputs").

    Raises:
        OptionError: an option out of its range (a ValueError naming it).
        UsageError: bad settings, an unusable or busy ``out_dir``, existing
            outputs without ``overwrite``, a partial run that can't be resumed,
            or nothing to decode. Nothing is written then.
        Interrupted: Ctrl-C/SIGTERM; the finished files are in the partial
            outputs (see :mod:`heatdecode.resume`).
        OutputError: an output could not be written; earlier outputs are intact.
    """
    started = time.perf_counter()
    plan = _plan(config, paths)
    out_dir = Path(out_dir)
    check_out_dir(out_dir, plan.formats, plan.overwrite, metrics=plan.metrics)  # before the lock
    created = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {out_dir}: {exc.strerror or exc}") from None
    try:
        with output_lock(out_dir):
            inputs = _inputs(paths, out_dir, config, plan, created)
            resumed = _resume(out_dir, config, plan, inputs)
            todo = [s for s in inputs.sources if s.name not in resumed.complete]
            if on_start is not None:
                on_start(len(todo))
            decoding, overlays = _decode_with_overlays(
                todo, out_dir, config, plan, resumed, noting(inputs.notes, on_loaded)
            )
            report = _build_report(plan, inputs, resumed, todo, decoding, overlays, config)
            if overlays is not None:  # worst: drawn now, from every record; the index
                on_phase("drawing overlays")
                overlays.finish(report, inputs.sources, config)
            on_phase("writing outputs")
            _write_outputs(out_dir, report, plan, inputs, started)
    except OutputBusy as exc:
        raise UsageError(str(exc)) from None
    if report.stopped in PARTIAL_STOPS:
        raise Interrupted(report)
    return report


def _plan(config: RunConfig, paths: Sequence[str | os.PathLike[str]]) -> _Plan:
    runs = _check_config(config)
    device = resolve_device(config.device)
    return _Plan(
        formats=tuple(dict.fromkeys(config.formats)),
        runs=runs,
        device=device,
        overwrite=config.overwrite or config.resume,
        metrics=config.truth is not None,
        peaks=config.peaks,
        match_cutoffs=config.match_cutoffs,
        settings=run_settings(config, paths, str(device), runs),
    )


def _check_config(config: RunConfig) -> tuple[DecoderSpec, ...]:
    """Every option checked before any file is read.

    Raises:
        OptionError: an option out of its range (naming the parameter; the CLI
            names the flag).
        UsageError: no decoder, or an unknown one.
    """
    check_count("batch_size", config.batch_size)
    check_count("workers", config.workers)
    check_count("max_map_bytes", config.max_map_bytes, " byte")
    check_count("batch_bytes", config.batch_bytes, " byte")
    check_count("overlay_count", config.overlay_count)
    overlay_mode(config.overlays)
    runs = config.settings.resolved_runs()
    if not runs:
        raise UsageError("no decoder chosen")
    whole = [r.label for r in runs if r.decoder in WHOLE_MAP_DECODERS]
    if config.peaks is not None and whole:
        raise UsageError(
            f"{', '.join(whole)} sums over the whole map: it has no meaning at one peak of many; "
            "with --peaks choose argmax, quarter, parabola, dark or local-softargmax"
        )
    for run_ in runs:
        try:
            check_decoder(run_.decoder)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        given = {"beta": run_.beta, "normalize": run_.normalize, "radius": run_.radius}
        given["sigma"] = run_.sigma
        # an option given is checked even where no decoder chosen takes it
        check_options({k: v for k, v in given.items() if v is not None})
    return runs


def _inputs(
    paths: Sequence[str | os.PathLike[str]],
    out_dir: Path,
    config: RunConfig,
    plan: _Plan,
    created: bool,
) -> _Inputs:
    """The checks made again under the lock (another run may have finished in
    ``out_dir`` meanwhile), the truth file, and the inputs discovered. A run
    that fails here leaves no trace of a folder it created."""
    try:
        check_out_dir(out_dir, plan.formats, plan.overwrite, metrics=plan.metrics)
        check_output_entries(out_dir)
        many = config.peaks is not None  # any number of truth points per map
        truth = _read_truth(config.truth, many) if config.truth is not None else None
        notes: list[str] = []
        chosen = {"keys": config.keys, "strict_layout": config.strict_layout}
        sources, missing = discover_inputs(paths, out_dir, notes, **chosen)
        if not sources:
            raise nothing_to_decode([(f.name, f.reason) for f in missing])
    except UsageError:
        if created:
            remove_new_folder(out_dir)
        raise
    record = input_record([os.fspath(p) for p in paths], {s.name: s.path for s in sources})
    failures = [Failure(f.name, f.reason, f.kind, f.name) for f in missing]
    return _Inputs(sources, failures, notes, truth, record)


def _resume(out_dir: Path, config: RunConfig, plan: _Plan, inputs: _Inputs) -> Resumed:
    if not config.resume:
        return Resumed()
    try:
        return read_partial(out_dir, plan.settings, inputs.record) or Resumed()
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _decode_with_overlays(
    todo: list[Source],
    out_dir: Path,
    config: RunConfig,
    plan: _Plan,
    resumed: Resumed,
    on_loaded: Callable[[Source, list[HeatmapArray | LoadFailure]], None] | None,
) -> tuple[DecodeOutcome, OverlayWriter | None]:
    """Step 4: decode ``todo``; each array's overlay is queued as it completes."""
    overlays = None
    mode = overlay_mode(config.overlays)
    if mode != "none":
        taken, count, spacing = resumed.overlays(), config.overlay_count, config.frame.spacing
        overlays = OverlayWriter(out_dir, plan.runs, config.workers, taken, mode, count, spacing)
    try:
        decoding = decode_sources(
            todo,
            config.settings,
            layout=config.layout,
            device=plan.device,
            batch_size=config.batch_size,
            workers=config.workers,
            prefetch=config.prefetch,
            strict=config.strict,
            max_map_bytes=config.max_map_bytes,
            batch_bytes=config.batch_bytes,
            on_loaded=on_loaded,
            on_complete=_no_overlay if overlays is None else overlays.submit,
            peaks=config.peaks,
            frame=config.frame,
        )
    finally:
        if overlays is not None:
            overlays.close()  # every overlay submitted is written or failed
    return decoding, overlays


def _no_overlay(result: Any, maps: Any) -> None:
    """``on_complete`` of a run without overlays."""


def _build_report(
    plan: _Plan,
    inputs: _Inputs,
    resumed: Resumed,
    todo: list[Source],
    decoding: DecodeOutcome,
    overlays: OverlayWriter | None,
    config: RunConfig,
) -> RunReport:
    """Step 5: the records of the sources whose outputs are written, and the report."""
    keep = kept_sources(decoding, todo, overlays)
    overlay_errors = [] if overlays is None else overlays.failures()
    overlay_errors = [f for f in overlay_errors if f.source in keep]
    paths = {} if overlays is None else overlays.paths()
    records = list(missing_records(inputs.missing))
    new = new_records(decoding, overlay_errors, paths, config.frame)
    for source in inputs.sources:
        if source.name in resumed.sources:
            records.append(resumed.sources[source.name])
        elif source.name in keep:
            records.append(new.get(source.name) or SourceRecord(source.name))
    report = RunReport(
        results=decoding.results,
        failures=[*inputs.missing, *decoding.failures],
        sources=len(inputs.sources) + len(inputs.missing),
        device=str(plan.device),
        stopped=decoding.stopped,
        error=decoding.error,
        elapsed=0.0,
        labels=tuple(run_.label for run_ in plan.runs),
        records=records,
        overlay_errors=overlay_errors,
        notes=inputs.notes,
        frame=config.frame,
        peaks=config.peaks,
    )
    if decoding.stopped in PARTIAL_STOPS:
        report.saved_sources = len(resumed.complete) + len(keep)
    return report


def _metrics(
    report: RunReport, points: list, truth: list[dict[str, Any]], plan: _Plan
) -> dict[str, Callable[[Path], None]]:
    """The run scored against ``truth`` (matching, in peaks mode), and its two
    metrics files staged."""
    try:
        if plan.peaks is not None:
            scored = evaluate_peaks(points, truth, plan.match_cutoffs)
            report.evaluation = scored
            write_csv_, write_json_ = write_peak_metrics_csv, write_peak_metrics_json
        else:
            scored = evaluate(points, truth)
            report.evaluation = scored
            write_csv_, write_json_ = write_metrics_csv, write_metrics_json
    except ImportError as exc:  # scipy, for the matching
        raise UsageError(f"--truth with --peaks: {exc}") from None
    except ValueError as exc:  # e.g. two inputs with the same file name
        raise UsageError(f"--truth: {exc}") from None
    return {
        METRICS_NAMES[0]: lambda path: write_csv_(path, scored),
        METRICS_NAMES[1]: lambda path: write_json_(path, scored),
    }


def _write_outputs(
    out_dir: Path, report: RunReport, plan: _Plan, inputs: _Inputs, started: float
) -> None:
    """Step 6: every output staged, then all renamed into place together (the
    partial ones, for --resume, when the run stopped early)."""
    partial = report.stopped in PARTIAL_STOPS
    names = PARTIAL_NAMES if partial else OUTPUT_NAMES
    points = report.points
    staged: dict[str, Callable[[Path], None]] = {}
    if "csv" in plan.formats or partial:
        staged[names["csv"]] = lambda path: write_csv(path, points)
    if inputs.truth is not None and not partial:
        staged |= _metrics(report, points, inputs.truth, plan)
    report.elapsed = time.perf_counter() - started
    if "json" in plan.formats or partial:
        doc = document(report, plan.settings, CSV_COLUMNS, json_rows(points), torch.__version__)
        if partial:  # what --resume checks: the saved sources are the same files
            saved = {r.name for r in report.records}
            files = {k: v for k, v in inputs.record["files"].items() if k in saved}
            doc["resume_inputs"] = {**inputs.record, "files": files}
        staged[names["json"]] = lambda path: write_json(path, doc)
    remove = () if partial else PARTIAL_NAMES.values()
    report.outputs = commit_outputs(out_dir, staged, remove=remove)
    report.elapsed = time.perf_counter() - started
