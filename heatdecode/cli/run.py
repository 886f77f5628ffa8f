"""``heatdecode run``: decode heatmaps, write coordinates (and overlays, metrics).

Every option is checked as it is parsed (see :mod:`heatdecode.cli.params`),
then the frame, the output folder and the inputs' existence, all without torch;
only then is :mod:`heatdecode.runner` imported and the run started.
"""

from __future__ import annotations

import math
from dataclasses import replace
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from heatdecode.cli import render
from heatdecode.cli.inputs import KeyOpt, RunLayoutOpt, StrictLayoutOpt
from heatdecode.cli.params import (
    DECODING_PANEL,
    DEFAULT_BATCH_SIZE,
    DEFAULT_DECODERS,
    DEFAULT_DEVICE,
    DEFAULT_WORKERS,
    INPUT_PANEL,
    OUTPUTS_PANEL,
    RUN_PANEL,
    BatchBytesOpt,
    BatchOpt,
    BetaOpt,
    Coords,
    CoordsOpt,
    Decoder,
    DeviceOpt,
    Format,
    MaxMapBytesOpt,
    NormalizeOpt,
    OutOpt,
    OverwriteOpt,
    PathsArg,
    QuietOpt,
    RadiusOpt,
    SigmaOpt,
    SpacingOpt,
    StrideOffset,
    StrideOffsetOpt,
    StrideOpt,
    WorkersOpt,
    _count,
    one_of,
    value,
)
from heatdecode.frames import Frame, parse_per_axis
from heatdecode.options import DECODER_NAMES, PEAK_DECODERS, PeakOptions
from heatdecode.preflight import UsageError, check_out_dir, check_some_input_exists, parse_size

if TYPE_CHECKING:
    from heatdecode.runner import RunConfig, RunReport

DecoderOpt = Annotated[
    list[Decoder] | None,
    typer.Option(
        "--decoder",
        "-d",
        metavar="NAME",
        help=f"Decoder to run, repeat for several: {one_of(DECODER_NAMES)}.",
        show_default=", ".join(DEFAULT_DECODERS),
        rich_help_panel=DECODING_PANEL,
    ),
]
TruthOpt = Annotated[
    Path | None,
    typer.Option(
        metavar="CSV",
        help="Ground-truth CSV (file, sample, channel, x, y[, z]): writes metrics too.",
        show_default="none",
        rich_help_panel=INPUT_PANEL,
    ),
]
FormatOpt = Annotated[
    Format,
    typer.Option(
        "--format",
        metavar="WHICH",
        help="Which coordinate files to write: both, csv or json.",
        rich_help_panel=OUTPUTS_PANEL,
    ),
]
# RunConfig's overlay defaults (heatdecode.runner imports torch; tests hold them equal)
DEFAULT_OVERLAYS = "worst"
DEFAULT_OVERLAY_COUNT = 24
Overlays = Enum("Overlays", {name: name for name in ("all", "flagged", "worst", "none")}, type=str)
OverlaysOpt = Annotated[
    Overlays,
    typer.Option(
        metavar="WHICH",
        help="Overlay PNGs of: worst, the --overlay-count maps where the decoders disagree "
        "most (then flagged ones); flagged, every map whose status isn't ok; all, every map "
        "(flagged first); none.",
        rich_help_panel=OUTPUTS_PANEL,
    ),
]
NoOverlaysOpt = Annotated[  # the old switch, kept working: --overlays none
    bool, typer.Option("--no-overlays", hidden=True, rich_help_panel=OUTPUTS_PANEL)
]
OverlayCountOpt = Annotated[
    int | None,
    typer.Option(
        metavar="N",
        help="--overlays worst: how many maps to draw.",
        show_default=str(DEFAULT_OVERLAY_COUNT),
        callback=lambda n: n if n is None else _count("overlay_count")(n),
        rich_help_panel=OUTPUTS_PANEL,
    ),
]
StrictOpt = Annotated[
    bool,
    typer.Option(
        "--strict",
        metavar="",
        help="Stop at the first file that can't be decoded.",
        rich_help_panel=RUN_PANEL,
    ),
]
PeaksOpt = Annotated[
    bool,
    typer.Option(
        "--peaks",
        metavar="",
        help="Every peak of each map (spots, bottom-up pose), each decoder at each; "
        "rows gain their peak's rank. Decoders by default: argmax, parabola.",
        rich_help_panel=DECODING_PANEL,
    ),
]
MinDistanceOpt = Annotated[
    int | None,
    typer.Option(
        metavar="PX",
        help="--peaks: peaks at least this far apart (Chebyshev px).",
        show_default="2",
        rich_help_panel=DECODING_PANEL,
    ),
]
ThresholdOpt = Annotated[
    float | None,
    typer.Option(
        metavar="VALUE",
        help="--peaks: keep peaks strictly above this value.",
        show_default="none",
        rich_help_panel=DECODING_PANEL,
    ),
]
ThresholdRelOpt = Annotated[
    float | None,
    typer.Option(
        metavar="FRACTION",
        help="--peaks: keep peaks above this fraction of the map's maximum.",
        show_default="0.5",
        rich_help_panel=DECODING_PANEL,
    ),
]
MaxPeaksOpt = Annotated[
    int | None,
    typer.Option(
        metavar="N",
        help="--peaks: most peaks kept per map (the highest); a map with more is warned about.",
        show_default="1000",
        rich_help_panel=DECODING_PANEL,
    ),
]
ExcludeBorderOpt = Annotated[
    str | None,
    typer.Option(
        metavar="PX",
        help="--peaks: drop peaks this close to the edge (px), or none.",
        show_default="none",
        rich_help_panel=DECODING_PANEL,
    ),
]
MatchCutoffOpt = Annotated[
    str | None,
    typer.Option(
        metavar="PX,...",
        help="--peaks with --truth: match distances (px), comma-separated.",
        show_default="0.5,1,2,3",
        rich_help_panel=DECODING_PANEL,
    ),
]
ReportOpt = Annotated[
    bool,
    typer.Option(
        "--report",
        metavar="",
        help="Also write report.html: tables, histograms, the worst and flagged maps, "
        "every map to sort and filter (as heatdecode report OUT).",
        rich_help_panel=OUTPUTS_PANEL,
    ),
]
ResumeOpt = Annotated[
    bool,
    typer.Option(
        "--resume",
        metavar="",
        help="Finish an interrupted run in --out, skipping the files it decoded.",
        rich_help_panel=RUN_PANEL,
    ),
]


def run_command(
    paths: PathsArg,
    out: OutOpt,
    decoder: DecoderOpt = None,
    beta: BetaOpt = None,
    normalize: NormalizeOpt = None,
    radius: RadiusOpt = None,
    sigma: SigmaOpt = None,
    coords: CoordsOpt = Coords.pixel,
    stride: StrideOpt = None,
    stride_offset: StrideOffsetOpt = StrideOffset.centre,
    spacing: SpacingOpt = None,
    truth: TruthOpt = None,
    layout: RunLayoutOpt = "auto",
    key: KeyOpt = None,
    strict_layout: StrictLayoutOpt = False,
    device: DeviceOpt = DEFAULT_DEVICE,
    batch_size: BatchOpt = DEFAULT_BATCH_SIZE,
    workers: WorkersOpt = DEFAULT_WORKERS,
    fmt: FormatOpt = Format.both,
    overlays: OverlaysOpt = Overlays[DEFAULT_OVERLAYS],
    no_overlays: NoOverlaysOpt = False,
    overlay_count: OverlayCountOpt = None,
    overwrite: OverwriteOpt = False,
    strict: StrictOpt = False,
    resume: ResumeOpt = False,
    write_report: ReportOpt = False,
    max_map_bytes: MaxMapBytesOpt = "2G",
    batch_bytes: BatchBytesOpt = "256M",
    peaks: PeaksOpt = False,
    min_distance: MinDistanceOpt = None,
    threshold: ThresholdOpt = None,
    threshold_rel: ThresholdRelOpt = None,
    max_peaks: MaxPeaksOpt = None,
    exclude_border: ExcludeBorderOpt = None,
    match_cutoff: MatchCutoffOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Decode heatmaps and write coordinates.csv, coordinates.json and overlays/ into --out."""
    frame = _frame(value(coords), stride, value(stride_offset), spacing)
    given = {"--min-distance": min_distance, "--threshold": threshold}
    given |= {"--threshold-rel": threshold_rel, "--max-peaks": max_peaks}
    given |= {"--exclude-border": exclude_border, "--match-cutoff": match_cutoff}
    peak_options = _peak_options(peaks, given)
    cutoffs = _cutoffs(match_cutoff)
    formats = ("csv", "json") if fmt == Format.both else (fmt.value,)
    check_out_dir(out, formats, overwrite or resume, metrics=truth is not None, report=write_report)
    check_some_input_exists(paths)

    from heatdecode.runner import RunConfig  # torch: only once the command line is known good

    render.ignore_pillow_warnings()
    defaults = RunConfig()
    chosen = defaults.settings.decoders if peak_options is None else PEAK_DECODERS
    settings = replace(
        defaults.settings,
        decoders=tuple(dict.fromkeys(d.value for d in decoder)) if decoder else chosen,
        beta=beta,
        normalize=None if normalize is None else value(normalize),
        radius=radius,
        sigma=sigma,
    )
    config = RunConfig(
        settings=settings,
        frame=frame,
        layout=layout,
        device=device,
        batch_size=batch_size,
        workers=workers,
        formats=formats,
        overlays=_overlays(value(overlays), no_overlays, overlay_count),
        overlay_count=overlay_count or DEFAULT_OVERLAY_COUNT,
        overwrite=overwrite,
        strict=strict,
        keys=tuple(key or ()),
        strict_layout=strict_layout,
        truth=truth,
        resume=resume,
        max_map_bytes=parse_size(max_map_bytes),
        batch_bytes=parse_size(batch_bytes),
        peaks=peak_options,
        match_cutoffs=cutoffs,
    )
    report = _execute(paths, out, config, quiet)
    _report(report, out, quiet)
    if write_report:
        _write_page(out, quiet)
    raise typer.Exit(0 if report.ok else 1)


def _write_page(out: Path, quiet: bool) -> None:
    from heatdecode.report_page import write_report

    path = write_report(out)
    if not quiet:
        render.say(render.out_console(), f"wrote {path}")


def _overlays(mode: str, no_overlays: bool, count: int | None) -> str:
    """``--overlays``, with the hidden ``--no-overlays`` as ``none``; options
    that contradict each other are a usage error."""
    if no_overlays and mode not in ("none", DEFAULT_OVERLAYS):
        raise UsageError(f"--no-overlays contradicts --overlays {mode}")
    mode = "none" if no_overlays else mode
    if count is not None and mode != "worst":
        raise UsageError(f"--overlay-count is for --overlays worst, not {mode}")
    return mode


def _peak_options(peaks: bool, given: dict[str, object]) -> PeakOptions | None:
    """Peaks mode's options; one given without ``--peaks`` is a usage error."""
    if not peaks:
        stray = [flag for flag, v in given.items() if v is not None]
        if stray:
            raise UsageError(f"{stray[0]} needs --peaks")
        return None
    border = given["--exclude-border"]
    chosen = {
        "min_distance": given["--min-distance"],
        "threshold_abs": given["--threshold"],
        "threshold_rel": given["--threshold-rel"],
        "max_peaks": given["--max-peaks"],
        "exclude_border": None if border is None else _border(str(border)),
    }
    # an explicit --threshold replaces the relative default, unless both are given
    if chosen["threshold_abs"] is not None and chosen["threshold_rel"] is None:
        chosen["threshold_rel"] = 0.0
    return PeakOptions(**{k: v for k, v in chosen.items() if v is not None})


def _border(text: str) -> int:
    if text.strip().lower() in ("none", "no", "0"):
        return 0
    try:
        return int(text)
    except ValueError:
        raise UsageError(
            f"--exclude-border takes a number of pixels or none, got {text!r}"
        ) from None


def _cutoffs(text: str | None) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise UsageError(
            f"--match-cutoff takes distances separated by commas, got {text!r}"
        ) from None
    if not all(math.isfinite(v) and v > 0 for v in values):
        raise UsageError(f"--match-cutoff distances must be finite and > 0, got {text!r}")
    return tuple(dict.fromkeys(values))


def _frame(coords: str, stride: str | None, offset: str, spacing: str | None) -> Frame:
    """The frame the options ask for; options that can't go together are a usage error."""
    try:
        return Frame(
            coords=coords,
            stride=parse_per_axis(stride, "--stride") if stride else None,
            stride_offset=offset,
            spacing=parse_per_axis(spacing, "--spacing") if spacing else None,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None


def _execute(paths: list[Path], out: Path, config: RunConfig, quiet: bool) -> RunReport:
    """The run, under the progress bar; an interruption says what was saved."""
    from heatdecode.resume import PARTIAL_NAMES
    from heatdecode.runner import Interrupted, run

    err = render.err_console()
    with render.progress_bar(err, quiet) as bar:
        try:
            callbacks = {"on_loaded": bar.on_loaded, "on_start": bar.on_start}
            return run(paths, out, config, **callbacks, on_phase=bar.on_phase)
        except Interrupted as stop:
            done = stop.report
            why = "interrupted" if done.error is None else f"error: {done.error}"
            render.say(
                err,
                f"heatdecode: {why}; {render.saved(done, bar.files_read)}, saved in "
                f"{out / PARTIAL_NAMES['csv']}; rerun with --resume to finish",
            )
            raise typer.Exit(130 if done.error is None else 1) from None
        except KeyboardInterrupt as stop:  # typer would exit 130 without a word
            # the final write says whether the outputs were all replaced or none was
            message = f"heatdecode: interrupted {stop}" if str(stop) else "heatdecode: interrupted"
            render.say(err, message)
            raise typer.Exit(130) from None


def _report(report: RunReport, out: Path, quiet: bool) -> None:
    """What went wrong, one line each on stderr, then (unless quiet) the summary."""
    from heatdecode.loading import SCAN_KINDS
    from heatdecode.runner import summary

    err = render.err_console()
    if report.resumed_sources and not quiet:
        err.print(f"resumed: {report.resumed_sources} files taken from the interrupted run")
    for note in report.notes:
        render.say(err, f"note: {note}")
    for failure in report.failures:
        if failure.kind in SCAN_KINDS:  # the others were printed as their files were read
            render.say(err, f"error: {failure.name}: {failure.reason}")
    for name, sample, channel in report.nonfinite():
        render.say(
            err,
            f"error: {name}: sample {sample} channel {channel}: "
            "map contains NaN or Inf, not decoded",
        )
    for failure in report.overlay_errors:
        render.say(err, f"error: {failure.name}: {failure.reason}")
    for name, sample, channel in report.truncated():
        limit = report.peaks.max_peaks
        render.say(
            err,
            f"warning: {name}: sample {sample} channel {channel}: more than {limit} peaks "
            "above the threshold; kept the highest (raise --max-peaks or the threshold)",
        )
    if report.stopped:
        err.print(
            "stopped at the first bad file (--strict); outputs hold the files decoded before it"
        )
    if not quiet:
        render.print_run_summary(report, summary(report), out)
