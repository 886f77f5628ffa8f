"""The ``heatdecode`` command line: a thin layer over :mod:`heatdecode.runner`.

Exit codes: 0 all went well, 1 some file or map failed, 2 usage error (bad
option, unknown device, nothing to decode, outputs in the way), 130
interrupted. Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import signal
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated

import torch
import typer
from PIL import Image
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from heatdecode import __version__
from heatdecode.decoders import COORD_CHOICES, NORMALIZE_CHOICES
from heatdecode.evaluate import metrics_table
from heatdecode.family import DECODERS
from heatdecode.frames import STRIDE_OFFSETS, Frame, parse_per_axis
from heatdecode.layouts import LayoutError, parse_layout
from heatdecode.loading import SCAN_KINDS, HeatmapArray, LoadFailure, Source, parse_size
from heatdecode.options import OptionError
from heatdecode.pipeline import DecodeSettings
from heatdecode.resume import PARTIAL_NAMES
from heatdecode.runner import (
    SAVED_MAP_DEFAULTS,
    Interrupted,
    OutputError,
    RunConfig,
    RunReport,
    UsageError,
    resolve_device,
    run,
    summary,
)
from heatdecode.writers import display_name

app = typer.Typer(
    name="heatdecode",
    help="Turn heatmaps (.npy, .npz, .png, .tif) into coordinates, 2D and 3D.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DEFAULTS = RunConfig()


Decoder = Enum("Decoder", {name: name for name in DECODERS}, type=str)
Normalize = Enum("Normalize", {name: name for name in NORMALIZE_CHOICES}, type=str)
Coords = Enum("Coords", {name: name for name in COORD_CHOICES}, type=str)
StrideOffset = Enum("StrideOffset", {name: name for name in STRIDE_OFFSETS}, type=str)


class Format(str, Enum):
    both = "both"
    csv = "csv"
    json = "json"


# Options shared by `run` and `sweep`, declared once.
PathsArg = Annotated[
    list[Path], typer.Argument(help="Heatmap files and folders (scanned recursively).")
]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output folder.")]
LayoutOpt = Annotated[
    str,
    typer.Option(help="Axis order of the arrays, letters N C D H W (e.g. CHW, NCHWD), or auto."),
]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")]
BatchOpt = Annotated[int, typer.Option(help="Maps per batch on the device.")]
WorkersOpt = Annotated[int, typer.Option(help="Threads reading files and drawing overlays.")]
RadiusOpt = Annotated[
    int | None, typer.Option(help="Window radius of local-softargmax, in pixels. [default: 2]")
]
SigmaOpt = Annotated[
    float | None,
    typer.Option(help="DARK's smoothing σ in pixels [default: estimated from the maps]."),
]
OverwriteOpt = Annotated[
    bool, typer.Option("--overwrite", help="Replace outputs already in --out.")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary table.")]


# Markup and emoji codes off: a file named "[bold]x.npy" or "a:warning:.npy"
# is shown as it is; every name also passes through display_name, so no
# control or bidi character reaches the terminal raw.
_PLAIN = {"highlight": False, "markup": False, "emoji": False}


def _out() -> Console:
    """Standard output; when it is a file or a pipe, wide enough for the metrics table."""
    console = Console(**_PLAIN)
    return console if console.is_terminal else Console(**_PLAIN, width=160)


def _err() -> Console:
    return Console(stderr=True, soft_wrap=True, **_PLAIN)


def _say(console: Console, text: str) -> None:
    """Print one line with every character that could act on the terminal escaped."""
    console.print(display_name(text))


def _version(value: bool) -> None:
    if value:
        typer.echo(f"heatdecode {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    """heatdecode: heatmaps in, coordinates out."""


@app.command("run")
def run_command(
    paths: PathsArg,
    out: OutOpt,
    decoder: Annotated[
        list[Decoder] | None,
        typer.Option(
            "--decoder",
            "-d",
            help="Decoder to run; repeat for several. [default: argmax, softargmax]",
        ),
    ] = None,
    beta: Annotated[
        float | None,
        typer.Option(
            help="Inverse temperature β (> 0) of the soft-argmax decoders. "
            "[default: 20 for softargmax, 11 for local-softargmax]"
        ),
    ] = None,
    normalize: Annotated[
        Normalize | None,
        typer.Option(
            help="Map scaling before β: none, max (x/max|x|), minmax ((x-min)/(max-min)). "
            "[default: minmax]"
        ),
    ] = None,
    radius: RadiusOpt = None,
    sigma: SigmaOpt = None,
    coords: Annotated[
        Coords,
        typer.Option(
            help="pixel (centres at 0..W-1), half-pixel (centres at i+0.5), normalized "
            "([-1,1] at outer centres) or normalized-edges ([-1,1] at outer edges)."
        ),
    ] = "pixel",
    stride: Annotated[
        str | None,
        typer.Option(help="Heatmap-to-image scale, one value or per axis x,y[,z] (e.g. 4 or 4,4)."),
    ] = None,
    stride_offset: Annotated[
        StrideOffset,
        typer.Option(help="centre: u = x·s + (s-1)/2; none: u = x·s (HRNet/mmpose)."),
    ] = "centre",
    spacing: Annotated[
        str | None,
        typer.Option(
            help="Physical size of a voxel/pixel, one value or x,y[,z] (e.g. 0.8,0.8,2.5)."
        ),
    ] = None,
    truth: Annotated[
        Path | None,
        typer.Option(help="Ground-truth CSV (file,sample,channel,x,y[,z]): writes metrics too."),
    ] = None,
    layout: LayoutOpt = "auto",
    device: DeviceOpt = DEFAULTS.device,
    batch_size: BatchOpt = DEFAULTS.batch_size,
    workers: WorkersOpt = DEFAULTS.workers,
    fmt: Annotated[
        Format, typer.Option("--format", help="Which coordinate files to write.")
    ] = Format.both,
    overlays: Annotated[
        bool, typer.Option("--overlays/--no-overlays", help="Write overlay PNGs.")
    ] = True,
    overwrite: OverwriteOpt = False,
    strict: Annotated[
        bool, typer.Option("--strict", help="Stop at the first file that can't be decoded.")
    ] = False,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume", help="Finish an interrupted run in --out, skipping the files it decoded."
        ),
    ] = False,
    max_map_bytes: Annotated[
        str,
        typer.Option(
            help="Largest array one file (or .npz member) may hold, as stored, in bytes or "
            "with a unit (512M, 4G); bigger ones are refused before they are read. "
            "[default: 2G]",
            show_default=False,
        ),
    ] = "2G",
    batch_bytes: Annotated[
        str,
        typer.Option(
            help="Most bytes of maps in one batch, besides --batch-size maps (256M, 1G); "
            "a bigger map is decoded alone. Results don't depend on it. [default: 256M]",
            show_default=False,
        ),
    ] = "256M",
    quiet: QuietOpt = False,
) -> None:
    """Decode heatmaps and write coordinates.csv, coordinates.json and overlays/ into --out."""
    decoders = (
        tuple(dict.fromkeys(d.value for d in decoder)) if decoder else DEFAULTS.settings.decoders
    )
    config = RunConfig(
        settings=DecodeSettings(
            decoders=decoders,
            beta=beta,
            normalize=None if normalize is None else _value(normalize),
            radius=radius,
            sigma=sigma,
            defaults=SAVED_MAP_DEFAULTS,
        ),
        frame=_frame(_value(coords), stride, _value(stride_offset), spacing),
        layout=_layout(layout),
        device=device,
        batch_size=batch_size,
        workers=workers,
        formats=("csv", "json") if fmt == Format.both else (fmt.value,),
        overlays=overlays,
        overwrite=overwrite,
        strict=strict,
        truth=truth,
        resume=resume,
        max_map_bytes=_size(max_map_bytes, "--max-map-bytes"),
        batch_bytes=_size(batch_bytes, "--batch-bytes"),
    )
    err = _err()
    with _progress(err, quiet) as (started, loaded):
        try:
            report = run(paths, out, config, on_loaded=loaded, on_start=started)
        except Interrupted as stop:
            done = stop.report
            why = "interrupted" if done.error is None else f"error: {done.error}"
            _say(
                err,
                f"heatdecode: {why}; the {done.saved_sources} files finished are in "
                f"{out / PARTIAL_NAMES['csv']}; rerun with --resume to finish",
            )
            raise typer.Exit(130 if done.error is None else 1) from None
        except KeyboardInterrupt as stop:  # typer would exit 130 without a word
            # the final write says whether the outputs were all replaced or none was
            _say(err, f"heatdecode: interrupted {stop}" if str(stop) else "heatdecode: interrupted")
            raise typer.Exit(130) from None
    if report.resumed_sources and not quiet:
        err.print(f"resumed: {report.resumed_sources} files taken from the interrupted run")
    for note in report.notes:
        _say(err, f"note: {note}")
    for failure in report.failures:
        if failure.kind in SCAN_KINDS:  # the others were printed as their files were read
            _say(err, f"error: {failure.name}: {failure.reason}")
    for name, sample, channel in report.nonfinite():
        _say(
            err,
            f"error: {name}: sample {sample} channel {channel}: "
            "map contains NaN or Inf, not decoded",
        )
    for failure in report.overlay_errors:
        _say(err, f"error: {failure.name}: {failure.reason}")
    if report.stopped:
        err.print(
            "stopped at the first bad file (--strict); outputs hold the files decoded before it"
        )
    if not quiet:
        _print_summary(report, out)
    raise typer.Exit(0 if report.ok else 1)


def _value(choice: Enum | str) -> str:
    return choice.value if isinstance(choice, Enum) else choice


def _layout(text: str) -> str:
    try:
        return parse_layout(text)
    except LayoutError as exc:
        raise UsageError(str(exc)) from None


def _size(text: str, option: str) -> int:
    try:
        return parse_size(text)
    except ValueError as exc:
        raise UsageError(f"{option}: {exc}") from None


def _frame(coords: str, stride: str | None, offset: str, spacing: str | None) -> Frame:
    try:
        return Frame(
            coords=coords,
            stride=parse_per_axis(stride, "--stride") if stride else None,
            stride_offset=offset,
            spacing=parse_per_axis(spacing, "--spacing") if spacing else None,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None


@contextmanager
def _progress(err: Console, quiet: bool) -> Iterator[tuple[Callable, Callable]]:
    """A progress bar over files (only on a terminal) and the per-file messages."""
    progress = Progress(
        TextColumn("decoding"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("files"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=quiet or not err.is_terminal,
    )
    task = progress.add_task("decoding", total=None)

    def started(total: int) -> None:
        progress.update(task, total=total)
        progress.start()

    def loaded(source: Source, items: list[HeatmapArray | LoadFailure]) -> None:
        for item in items:
            if isinstance(item, LoadFailure):
                _say(progress.console, f"error: {item.name}: {item.reason}")
            else:
                for note in item.warnings:
                    _say(progress.console, f"warning: {item.name}: {note}")
        progress.advance(task)

    try:
        yield started, loaded
    finally:
        progress.stop()


def _print_summary(report: RunReport, out: Path) -> None:
    console = _out()
    numbers = summary(report)
    table = Table(title="heatdecode run", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("files", str(numbers["files"]))
    table.add_row("arrays decoded", str(numbers["arrays"]))
    table.add_row("maps", str(numbers["maps"]))
    table.add_row("failed files", str(numbers["failed_files"]))
    table.add_row("maps with NaN/Inf", str(numbers["nonfinite_maps"]))
    table.add_row("flat (constant) maps", str(numbers["flat_maps"]))
    for label, dist in numbers["distance_to_argmax_px"].items():
        table.add_row(f"argmax ↔ {label}", f"mean {dist['mean']:.3f} px, max {dist['max']:.3f} px")
    table.add_row("device", report.device)
    table.add_row("time", f"{report.elapsed:.2f} s")
    if numbers["maps_per_second"] is not None:
        table.add_row("maps/s", f"{numbers['maps_per_second']:,.0f}")
    console.print(table)

    layouts: dict[tuple[str, tuple[int, ...]], list[str]] = {}
    for r in report.results:
        layouts.setdefault((r.layout, r.spatial_shape), []).append(r.name)
    shapes = Table(title="layouts used", title_justify="left")
    for column in ("layout", "map shape", "arrays", "example"):
        shapes.add_column(column)
    for (lay, spatial), names in layouts.items():
        shapes.add_row(lay, "×".join(map(str, spatial)), str(len(names)), display_name(names[0]))
    console.print(shapes)
    if report.evaluation is not None:
        console.print(metrics_table(report.evaluation))
    for path in report.outputs:
        _say(console, f"wrote {path}")
    if report.results and (out / "overlays").is_dir():
        _say(console, f"wrote overlays under {out / 'overlays'}")


@app.command("sweep")
def sweep_command(
    paths: PathsArg,
    out: OutOpt,
    truth: Annotated[Path, typer.Option(help="Ground-truth CSV (file,sample,channel,x,y[,z]).")],
    beta: Annotated[
        str, typer.Option(help="β values to try, comma-separated.")
    ] = "1,2,5,10,20,50,100,200",
    normalize: Annotated[
        list[Normalize] | None,
        typer.Option(help="Normalisation(s) to try; repeat for several. [default: minmax]"),
    ] = None,
    decoder: Annotated[
        list[Decoder] | None,
        typer.Option("--decoder", "-d", help="Decoder(s) to sweep. [default: softargmax]"),
    ] = None,
    radius: RadiusOpt = None,
    layout: LayoutOpt = "auto",
    device: DeviceOpt = DEFAULTS.device,
    batch_size: BatchOpt = DEFAULTS.batch_size,
    workers: WorkersOpt = DEFAULTS.workers,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Decode at every β and score against --truth: sweep.csv, sweep.png, and the best β."""
    from heatdecode.sweep import best, parse_betas, run_sweep, sweep_runs

    runs = sweep_runs(
        [_value(d) for d in decoder] if decoder else ["softargmax"],
        [_value(n) for n in normalize] if normalize else ["minmax"],
        parse_betas(beta),
        radius,
    )
    config = RunConfig(
        layout=_layout(layout),
        device=device,
        batch_size=batch_size,
        workers=workers,
        overwrite=overwrite,
    )
    err = _err()
    with _progress(err, quiet) as (started, loaded):
        result = run_sweep(paths, out, truth, runs, config, on_loaded=loaded, on_start=started)
    if result.plot_error:
        _say(err, f"warning: {result.plot_error}")
    console = _out()
    table = Table(title="best β per decoder and normalisation", title_justify="left")
    for column in ("decoder", "normalize", "best β", "mean error", "median", "PCK@1"):
        table.add_column(column)
    winners = best(result.points)
    for (name, norm), point in winners.items():
        m = point.metrics
        pck = m.pck.get(1.0)
        table.add_row(
            name,
            norm,
            f"{point.beta:g}",
            f"{m.mean:.4f} px",
            f"{m.median:.4f} px",
            "" if pck is None else f"{pck:.1%}",
        )
    if not quiet:
        console.print(table)
        for path in result.outputs:
            _say(console, f"wrote {path}")
    if winners:
        top = min(winners.values(), key=lambda p: p.metrics.mean)
        console.print(
            f"best: {top.decoder} normalize={top.normalize} beta={top.beta:g} "
            f"(mean error {top.metrics.mean:.4f} px)",
            markup=False,
        )
    raise typer.Exit(0 if result.run.ok and not result.plot_error else 1)


@app.command("bench")
def bench_command(
    shape: Annotated[
        str, typer.Option(help="Batch shape, e.g. 64,17,64,48 (2D) or 2,8,64,64,64 (3D).")
    ] = "64,17,64,48",
    device: DeviceOpt = DEFAULTS.device,
    decoder: Annotated[
        list[Decoder] | None,
        typer.Option("--decoder", "-d", help="Decoder(s) to time. [default: all]"),
    ] = None,
    repeats: Annotated[int, typer.Option(help="Timed calls per decoder.")] = 20,
    spatial_dims: Annotated[
        int | None, typer.Option(help="2 or 3 [default: 3 for 5-axis shapes, else 2].")
    ] = None,
) -> None:
    """Time heatdecode's decoders on your device and shape: median ms and maps/s."""
    from heatdecode.bench import bench_decoders, check_bench

    try:
        dims = tuple(int(v) for v in shape.split(","))
    except ValueError:
        raise UsageError(f"--shape takes integers separated by commas, got {shape!r}") from None
    if len(dims) < 2 or min(dims) < 1:
        raise UsageError(f"--shape needs at least 2 axes, all >= 1, got {shape!r}")
    if spatial_dims not in (None, 2, 3) or len(dims) < (spatial_dims or 2):
        raise UsageError(f"--spatial-dims must be 2 or 3 and fit the shape, got {spatial_dims}")
    try:
        check_bench(dims, repeats)  # the sizes bench_decoders accepts, before any allocation
    except ValueError as exc:
        raise UsageError(f"--{exc}") from None
    resolved = resolve_device(device)
    names = [_value(d) for d in decoder] if decoder else None
    rows = bench_decoders(dims, resolved, names, repeats, spatial_dims=spatial_dims)
    console = _out()
    table = Table(
        title=f"heatdecode bench: shape {'×'.join(map(str, dims))} on {resolved}",
        title_justify="left",
    )
    for column in ("decoder", "median ms", "maps/s"):
        table.add_column(column, justify="left" if column == "decoder" else "right")
    for row in rows:
        table.add_row(row.decoder, f"{row.median_ms:.3f}", f"{row.maps_per_s:,.0f}")
    console.print(table)
    console.print(
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads; "
        "medians of interleaved calls: compare decoders within one run",
        markup=False,
    )


@app.command("sample")
def sample_command(
    out: Annotated[Path, typer.Argument(help="Folder to write the heatmaps and truth.csv into.")],
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    kind: Annotated[
        str | None,
        typer.Option(
            help="A synthetic set instead of the mixed-format sample: "
            "clean, noisy, low-contrast, quantized, two-peaks, border, anisotropic."
        ),
    ] = None,
    dims: Annotated[int, typer.Option(help="2 (48x64 maps) or 3 (32³ volumes), with --kind.")] = 2,
    count: Annotated[int, typer.Option(help="Number of maps, with --kind.")] = 64,
    sigma: Annotated[float | None, typer.Option(help="Peak σ in px, with --kind.")] = None,
    noise: Annotated[float | None, typer.Option(help="Noise std (peak = 1), with --kind.")] = None,
    offset: Annotated[float | None, typer.Option(help="Background offset, with --kind.")] = None,
) -> None:
    """Write synthetic heatmaps with known peaks and truth.csv.

    Without --kind: the mixed-format sample (8/16-bit PNG, .npy, .npz, a 3D
    volume) that sample_data/ holds. With --kind: a set of one kind of map, to
    measure where each decoder fails.
    """
    from heatdecode.sample import PRESET_NAMES, preset, write_sample, write_synthetic

    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} is a file, not a folder")
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"{out} is not empty; choose a new folder so old maps don't mix in")
    if kind is None:
        rows = write_sample(out, seed=seed)
    else:
        if kind not in PRESET_NAMES:
            raise UsageError(f"unknown --kind {kind!r}; choose from {', '.join(PRESET_NAMES)}")
        if dims not in (2, 3):
            raise UsageError(f"--dims must be 2 or 3, got {dims}")
        options = preset(kind, dims)
        given = {"sigma": sigma, "noise": noise, "offset": offset}
        options.update({k: v for k, v in given.items() if v is not None})
        try:
            rows = write_synthetic(out, seed=seed, count=count, **options)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    typer.echo(f"wrote {len(rows)} maps and {out / 'truth.csv'}")


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the app and turns every user mistake into one line and an exit code."""
    # Process-wide settings (warnings filters, the SIGTERM handler) are made
    # here and restored on the way out, so calling main() leaves no trace.
    with warnings.catch_warnings():
        # Large images are refused by the loader with a one-line reason; Pillow's own
        # warning on the way would only add a second, noisier line.
        warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
        # Pillow warns about damaged TIFF tags on its way to failing; the file is
        # reported once, by the loader, with its reason.
        warnings.filterwarnings("ignore", module=r"PIL\.")
        return _main(argv)


def _main(argv: list[str] | None) -> int:
    command = typer.main.get_command(app)
    try:
        # SIGTERM (a cluster's scheduler, `kill`) stops the run like Ctrl-C:
        # what is finished gets saved for --resume.
        previous = signal.signal(signal.SIGTERM, _interrupt)
    except ValueError:  # not the main thread: leave signals alone
        previous = None
    try:
        result = command.main(args=argv, prog_name="heatdecode", standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        return 1
    except UsageError as exc:
        _say(_err(), f"heatdecode: error: {exc}")
        return 2
    except OptionError as exc:  # the library names the parameter; here it is a flag
        _say(_err(), f"heatdecode: error: {exc.for_flag()}")
        return 2
    except OutputError as exc:
        _say(_err(), f"heatdecode: error: {exc}")
        return 1
    except KeyboardInterrupt:
        _say(_err(), "heatdecode: interrupted")
        return 130
    except Exception as exc:
        # typer's parse errors (click's UsageError, vendored by newer typers: not
        # public, so known by its interface) carry their own exit code
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
            _say(_err(), f"heatdecode: error: {exc.format_message()}")
            return int(exc.exit_code)
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return result if isinstance(result, int) else 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
