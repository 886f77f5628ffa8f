"""``heatdecode run`` as a library call: decode paths and write every output.

:func:`run` is what the CLI calls; it is usable on its own. It takes the
output folder's lock, then checks the folder and discovers the inputs (so two
runs can't both pass the check), decodes with :mod:`heatdecode.pipeline`,
renders overlays in background threads as arrays complete, and writes
``coordinates.csv`` / ``coordinates.json`` (and metrics) at the end under
temporary names, renaming them all into place together.
"""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from threading import BoundedSemaphore
from typing import Any

import numpy as np
import torch

from heatdecode import __version__, devices
from heatdecode.atomic import atomic_write
from heatdecode.evaluate import (
    Evaluation,
    evaluate,
    read_truth,
    write_metrics_csv,
    write_metrics_json,
)
from heatdecode.frames import Frame, apply_frame
from heatdecode.loading import MAX_MAP_BYTES, HeatmapArray, LoadFailure, Source, discover
from heatdecode.options import (  # noqa: F401  (SAVED_MAP_DEFAULTS is re-exported)
    SAVED_MAP_DEFAULTS,
    check_count,
    check_decoder,
    check_options,
)
from heatdecode.overlays import overlay_path, render_overlay
from heatdecode.pipeline import (
    BATCH_BYTES,
    DecodedArray,
    DecoderRun,
    DecodeSettings,
    Decoding,
    decode_sources,
)
from heatdecode.preflight import (
    METRICS_NAMES,
    OUTPUT_NAMES,
    UsageError,
    check_out_dir,
    nothing_to_decode,
)
from heatdecode.resume import (
    LOCK_NAME,
    PARTIAL_NAMES,
    OutputBusy,
    Resumed,
    input_record,
    output_lock,
    read_partial,
)
from heatdecode.writers import (
    CSV_COLUMNS,
    JSON_SCHEMA,
    iter_rows,
    json_rows,
    write_csv,
    write_json,
)

FORMATS = ("csv", "json")


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
    max_map_bytes: int = MAX_MAP_BYTES  # the most one array may take (see load_source)
    batch_bytes: int = BATCH_BYTES  # the most bytes of maps in one batch (see decode_sources)


class Interrupted(Exception):
    """Ctrl-C, SIGTERM or running out of memory stopped the run (``report.stopped``
    says which, ``report.error`` why); ``report`` says what was saved where."""

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
    stopped: str | None  # None, "strict", "interrupted" or "out-of-memory"
    elapsed: float
    outputs: list[Path] = field(default_factory=list)
    overlay_errors: list[LoadFailure] = field(default_factory=list)
    evaluation: Evaluation | None = None
    resumed_sources: int = 0  # sources taken from an interrupted run's partial outputs
    resumed_maps: int = 0
    # problems inside the resumed part: they count for the exit code and summary
    resumed_failures: int = 0
    saved_sources: int = 0  # after an interruption: files whose results were saved
    error: str | None = None  # why the run stopped early, when not interrupted by a user
    # the summary's counts over both parts, old and new (see _totals)
    totals: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # e.g. folders skipped as old outputs
    nonfinite_rows: int = 0  # rows written as "nonfinite", old and new: never an ok run

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
            or self.nonfinite_rows  # old and new rows: covers the resumed part's NaN maps
        )


def resolve_device(name: str) -> torch.device:
    """:func:`heatdecode.devices.resolve_device`, its refusal a :class:`UsageError`."""
    try:
        return devices.resolve_device(name)
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _read_truth(path: Path) -> list[dict[str, Any]]:
    try:
        return read_truth(path)
    except (OSError, ValueError) as exc:
        raise UsageError(f"--truth {path}: {exc}") from None


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
    out_dir: Path, result: DecodedArray, maps: np.ndarray, legend: dict[str, str], path: Path
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
    # root: every folder under out_dir is opened without following symlinks
    save = lambda fh: image.save(fh, format="PNG", compress_level=1)  # noqa: E731
    atomic_write(path, save, binary=True, root=out_dir)
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
        OptionError: an option out of its range (a ValueError naming it).
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
    overwrite = config.overwrite or config.resume
    metrics = config.truth is not None
    check_out_dir(out_dir, formats, overwrite, metrics=metrics)  # fail fast, before the lock
    created = not out_dir.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {out_dir}: {exc.strerror or exc}") from None
    try:
        with output_lock(out_dir):
            try:
                # again under the lock: another run may have finished here meanwhile
                check_out_dir(out_dir, formats, overwrite, metrics=metrics)
                _check_output_entries(out_dir)
                truth = _read_truth(config.truth) if config.truth is not None else None
                notes: list[str] = []
                sources, missing = _discover(paths, out_dir, notes)
                if not sources:
                    raise nothing_to_decode([(f.name, f.reason) for f in missing])
            except UsageError:
                if created:  # leave no trace of a run that did nothing
                    _remove_new_folder(out_dir)
                raise
            report = _locked_run(
                paths, out_dir, config, formats, runs, device, truth, sources, missing,
                started, on_loaded, on_start,
            )  # fmt: skip
            report.notes = notes
            return report
    except OutputBusy as exc:
        raise UsageError(str(exc)) from None


#: what a run writes into --out: only these are left out when --out is (inside) an input
OWN_FOLDERS = ("overlays",)
OWN_FILES = ("sweep.png",)  # the only output with a heatmap suffix besides the overlays


def _discover(
    paths: Sequence[str | os.PathLike[str]], out_dir: Path, notes: list[str]
) -> tuple[list[Source], list[LoadFailure]]:
    """:func:`discover`, leaving out ``out_dir``'s own outputs and the folders of
    earlier runs (a note for each of those)."""
    out = out_dir.resolve()

    def skip(path: Path, is_folder: bool) -> bool:
        if path.name in OWN_FOLDERS or path.name in OWN_FILES:
            if path.parent.resolve() == out:
                return True
            if _is_old_output(path.parent, out):  # e.g. an input folder used as --out before
                notes.append(f"skipped {path}: an earlier heatdecode run's output")
                return True
        # only a folder can hold outputs: no file-system calls for each heatmap file
        if is_folder and _is_old_output(path, out):
            notes.append(f"skipped {path}: it holds an earlier heatdecode run's outputs")
            return True
        return False

    return discover(paths, skip=skip)


def _is_old_output(folder: Path, out: Path) -> bool:
    """A folder carrying heatdecode's marker (its lock file, or a coordinates.json
    of ours), other than this run's own --out."""
    try:
        marked = (folder / LOCK_NAME).exists() or _ours(folder / OUTPUT_NAMES["json"])
        return marked and folder.resolve() != out
    except (OSError, RuntimeError):  # unreadable, or a symlink loop: discover reports it
        return False


def _ours(path: Path) -> bool:
    if not path.is_file():
        return False
    with open(path, "rb") as fh:
        return JSON_SCHEMA.encode() in fh.read(200)


def _check_output_entries(out_dir: Path) -> None:
    """Refuse symlinked output names in ``out_dir``: nothing is written through a link."""
    names = [*OUTPUT_NAMES.values(), *PARTIAL_NAMES.values(), *METRICS_NAMES, *OWN_FOLDERS]
    for name in names:
        path = out_dir / name
        if path.is_symlink():
            raise UsageError(f"{path} is a symlink; heatdecode writes only inside --out: remove it")
    overlays = out_dir / OWN_FOLDERS[0]
    if overlays.exists() and not overlays.is_dir():
        raise UsageError(f"{overlays} is a file; overlays go in a folder of that name")


def _remove_new_folder(out_dir: Path) -> None:
    try:
        (out_dir / LOCK_NAME).unlink(missing_ok=True)
        out_dir.rmdir()
    except OSError:
        pass


def _check_config(config: RunConfig) -> tuple[DecoderRun, ...]:
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
    runs = config.settings.resolved_runs()
    if not runs:
        raise UsageError("no decoder chosen")
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
    inputs = input_record([os.fspath(p) for p in paths], {s.name: s.path for s in sources})
    resumed = None
    if config.resume:
        try:
            resumed = read_partial(out_dir, settings, inputs)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    resumed = resumed or Resumed()
    todo = [s for s in sources if s.name not in resumed.complete]
    if on_start is not None:
        on_start(len(todo))

    legend = {run_.label: _legend(run_) for run_ in runs}
    jobs: list[tuple[DecodedArray, Future]] = []
    places = _OverlayPlaces(out_dir, resumed)
    slots = BoundedSemaphore(2 * max(1, config.workers))
    renderer = ThreadPoolExecutor(
        max_workers=max(1, config.workers), thread_name_prefix="heatdecode-draw"
    )

    def completed(result: DecodedArray, maps: np.ndarray) -> None:
        if not config.overlays:
            return
        path = places.claim(result.name)
        slots.acquire()  # bounds the arrays held by pending overlay jobs
        future = renderer.submit(_overlay_job, out_dir, result, maps, legend, path)
        future.add_done_callback(lambda _: slots.release())
        jobs.append((result, future))

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
            max_map_bytes=config.max_map_bytes,
            batch_bytes=config.batch_bytes,
            on_loaded=on_loaded,
            on_complete=completed,
        )
    finally:
        renderer.shutdown(wait=True)  # every overlay submitted is finished or failed
    overlays: dict[str, Path] = {}
    overlay_errors: list[LoadFailure] = []
    overlay_sources: dict[str, str] = {}
    for result, future in jobs:
        try:
            overlays[result.name] = future.result()
        except Exception as exc:  # a full disk, say: report it, keep the coordinates
            failure = LoadFailure(result.name, f"{OVERLAY_FAILED} ({exc})", kind="overlay")
            overlay_errors.append(failure)
            overlay_sources[result.name] = result.source

    # out of memory: what is finished is saved for --resume, as after Ctrl-C
    interrupted = decoding.stopped in ("interrupted", "out-of-memory")
    # Only whole sources go into the outputs of an interrupted run, so that
    # --resume can skip exactly those and redo the rest; a source is whole once
    # its overlays are drawn too (the signal may have come before one was queued).
    keep = set(decoding.complete) if interrupted else {s.name for s in todo}
    if interrupted and config.overlays:
        queued = {result.name for result, _ in jobs}
        keep -= {r.source for r in decoding.results if r.name not in queued}
    overlay_errors = [f for f in overlay_errors if overlay_sources[f.name] in keep]
    report = RunReport(
        results=decoding.results,
        failures=missing + [f for _, f in decoding.failures],
        sources=len(sources) + len(missing),
        device=str(device),
        stopped=decoding.stopped,
        error=decoding.error,
        elapsed=0.0,
        overlay_errors=overlay_errors,
        resumed_sources=len(resumed.complete),
        resumed_maps=resumed.maps,
        resumed_failures=sum(len(f) for f in resumed.failures.values()),
    )
    per_source = _per_source(
        sources, missing, decoding, resumed, keep, config.frame, out_dir, overlays,
        overlay_errors, overlay_sources,
    )  # fmt: skip
    rows = [row for entry in per_source for row in entry.rows]
    report.nonfinite_rows = sum(row["status"] == "nonfinite" for row in rows)
    report.totals = _totals(report.sources, per_source, runs, config.frame)
    if interrupted:
        report.saved_sources = len(resumed.complete) + len(keep)
        names = PARTIAL_NAMES
        done = resumed.complete | keep
        inputs["files"] = {k: v for k, v in inputs["files"].items() if k in done}
    else:
        names = OUTPUT_NAMES
    staged: dict[str, Callable[[Path], None]] = {}
    if "csv" in formats or interrupted:
        staged[names["csv"]] = lambda path: write_csv(path, rows)
    if truth is not None and not interrupted:
        try:
            report.evaluation = evaluate(rows, truth)
        except ValueError as exc:  # e.g. two inputs with the same file name
            raise UsageError(f"--truth: {exc}") from None
        evaluation = report.evaluation
        staged[METRICS_NAMES[0]] = lambda path: write_metrics_csv(path, evaluation)
        staged[METRICS_NAMES[1]] = lambda path: write_metrics_json(path, evaluation)
    report.elapsed = time.perf_counter() - started
    if "json" in formats or interrupted:
        document = _document(report, settings, per_source, rows, interrupted)
        if interrupted:
            document["resume_inputs"] = inputs
        staged[names["json"]] = lambda path: write_json(path, document)
    report.outputs = _commit(out_dir, staged, remove=() if interrupted else PARTIAL_NAMES.values())
    report.elapsed = time.perf_counter() - started
    if interrupted:
        raise Interrupted(report)
    return report


OVERLAY_FAILED = "overlay not written"


class _OverlayPlaces:
    """One overlay path per array name, unique within the run: names that map
    to the same file (``x.npy`` and ``../x.npy``, ``a:b`` and ``a__b``) get a
    hash of the name added. Paths recorded by the resumed part are taken first."""

    def __init__(self, out_dir: Path, resumed: Resumed) -> None:
        self.out_dir = out_dir
        self.taken = {f["overlay"] for fs in resumed.files.values() for f in fs if f.get("overlay")}

    def claim(self, name: str) -> Path:
        path = overlay_path(self.out_dir, name)
        if self._key(path) in self.taken:
            digest = hashlib.sha1(os.fsencode(name)).hexdigest()[:8]
            path = overlay_path(self.out_dir, f"{name}-{digest}")
        self.taken.add(self._key(path))
        return path

    def _key(self, path: Path) -> str:
        return path.relative_to(self.out_dir).as_posix()


def _commit(
    out_dir: Path, staged: dict[str, Callable[[Path], None]], remove: Iterable[str] = ()
) -> list[Path]:
    """Write every output under a temporary name, then rename them all into place.

    Either all the new outputs are in place or none is: Ctrl-C/SIGTERM while
    staging leaves the previous ones untouched, and during the renames it is
    held back until they are done (a ``KeyboardInterrupt`` saying so follows).

    Raises:
        OutputError: a write failed; nothing was replaced.
        KeyboardInterrupt: interrupted; its message says what was written.
    """
    temps: dict[str, Path] = {}
    try:
        for name, write in staged.items():
            temps[name] = out_dir / f".hd-{uuid.uuid4().hex[:12]}.{name}.tmp"
            write(temps[name])
    except BaseException as exc:
        for tmp in temps.values():
            tmp.unlink(missing_ok=True)
        if isinstance(exc, KeyboardInterrupt):
            raise KeyboardInterrupt(
                "while writing the outputs; none was replaced, the previous ones are intact"
            ) from None
        if isinstance(exc, OSError):
            where = getattr(exc, "filename", None) or out_dir
            raise OutputError(f"could not write {where}: {exc.strerror or exc}") from None
        raise
    with _signals_held() as held:
        try:
            for name, tmp in temps.items():
                os.replace(tmp, out_dir / name)
            for name in remove:
                (out_dir / name).unlink(missing_ok=True)
        except OSError as exc:  # the folder vanished, say
            for tmp in temps.values():
                tmp.unlink(missing_ok=True)
            raise OutputError(f"could not write {out_dir / name}: {exc.strerror or exc}") from None
    written = [out_dir / name for name in staged]
    if held:
        raise KeyboardInterrupt("after every output was written: " + ", ".join(map(str, written)))
    return written


@contextmanager
def _signals_held() -> Iterator[list[int]]:
    """Hold back Ctrl-C and SIGTERM (in the main thread) until the block is done;
    yields the list of signals that arrived meanwhile."""
    held: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield held
        return

    def hold(signum: int, frame: object) -> None:
        held.append(signum)

    previous = {sig: signal.signal(sig, hold) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield held
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


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
    overlay_errors: list[LoadFailure],
    overlay_sources: dict[str, str],
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
    for failure in overlay_errors:
        source = overlay_sources[failure.name]
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
    """The numbers of the terminal summary table (also stored in the JSON).

    Counted from the rows and file entries written (:func:`_totals`), so a
    resumed run's summary covers both parts, as an uninterrupted run's would.
    """
    totals = report.totals or {"files": report.sources, "maps": report.maps}
    maps = totals["maps"]
    return {
        **totals,
        "seconds": round(report.elapsed, 4),
        "maps_per_second": round(maps / report.elapsed, 1) if report.elapsed > 0 else None,
    }


def _totals(
    files_count: int, per_source: list[_SourceOutput], runs: tuple[DecoderRun, ...], frame: Frame
) -> dict[str, Any]:
    files = [f for entry in per_source for f in entry.files]
    first = [r for entry in per_source for r in entry.rows if r["decoder"] == runs[0].label]
    failures = [f for entry in per_source for f in entry.failures]
    distances = _distances(per_source, frame)
    return {
        "files": files_count,
        "arrays": len(files),
        "maps": sum(f["samples"] * f["channels"] for f in files),
        "failed_files": sum(not f["reason"].startswith(OVERLAY_FAILED) for f in failures),
        "nonfinite_maps": sum(r["status"] == "nonfinite" for r in first),
        "flat_maps": sum(r["status"] == "flat" for r in first),
        "distance_to_argmax_px": {
            label: {"mean": float(d.mean()), "max": float(d.max())}
            for label, d in distances.items()
            if len(d)
        },
    }


def _distances(per_source: list[_SourceOutput], frame: Frame) -> dict[str, np.ndarray]:
    """Each decoder's distance to argmax in heatmap pixels, from the rows: the
    frame's per-axis scale is undone, so old (resumed) and new rows count alike."""
    parts: dict[str, list[float]] = {}
    for entry in per_source:
        scale = {f["file"]: _pixel_scale(f["spatial_shape"], frame) for f in entry.files}
        points: dict[tuple[str, int, int], dict[str, np.ndarray]] = {}
        for row in entry.rows:
            if row["status"] == "nonfinite" or row["file"] not in scale:
                continue
            xyz = [row["x"], row["y"]] + ([row["z"]] if row.get("z") is not None else [])
            key = (row["file"], row["sample"], row["channel"])
            points.setdefault(key, {})[row["decoder"]] = np.asarray(xyz, dtype=np.float64)
        for (file, _, _), by_label in points.items():
            reference = by_label.get("argmax")
            if reference is None:
                continue
            for label, xyz in by_label.items():
                if label != "argmax":
                    d = np.linalg.norm((xyz - reference) * scale[file][: len(xyz)])
                    parts.setdefault(label, []).append(float(d))
    return {label: np.asarray(d) for label, d in parts.items()}


def _pixel_scale(spatial_shape: Sequence[int], frame: Frame) -> np.ndarray:
    """Heatmap pixels per output unit on each axis (x, y[, z]); 0 where the axis
    has no extent in the frame (a 1-pixel axis in normalized coordinates)."""
    d = len(spatial_shape)
    ends = apply_frame(np.vstack([np.zeros(d), np.eye(d)]), tuple(spatial_shape), frame)
    step = np.abs(np.diag(ends[1:] - ends[0]))
    with np.errstate(divide="ignore", invalid="ignore"):
        inverse = np.where((step > 0) & np.isfinite(step), 1.0 / step, 0.0)
    return inverse


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
        "failures": [f for entry in per_source for f in entry.failures],
        "nonfinite_maps": [
            {"file": r["file"], "sample": r["sample"], "channel": r["channel"]}
            for r in rows
            if r["status"] == "nonfinite" and r["decoder"] == settings["decoders"][0]
        ],
        "summary": summary(report),
        "rows": rows,
    }
    if interrupted:
        document["stopped"] = report.stopped
        document["complete_sources"] = sorted(
            {f["source"] for entry in per_source for f in entry.files + entry.failures}
        )
    return document
