"""The ``heatdecode`` command line: a thin layer over :mod:`heatdecode.runner`.

Exit codes: 0 all went well, 1 some file or map failed, 2 usage error (bad
option, unknown device, nothing to decode, outputs in the way), 130
interrupted. Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import sys
import warnings
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from PIL import Image
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from heatdecode import __version__
from heatdecode.layouts import LayoutError, parse_layout
from heatdecode.loading import HeatmapArray, LoadFailure, Source
from heatdecode.pipeline import DecodeSettings
from heatdecode.runner import RunConfig, RunReport, UsageError, run, summary

app = typer.Typer(
    name="heatdecode",
    help="Turn heatmaps (.npy, .npz, .png, .tif) into coordinates, 2D and 3D.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DEFAULTS = RunConfig()


class Decoder(str, Enum):
    argmax = "argmax"
    softargmax = "softargmax"


class Normalize(str, Enum):
    none = "none"
    max = "max"
    minmax = "minmax"


class Coords(str, Enum):
    pixel = "pixel"
    normalized = "normalized"


class Format(str, Enum):
    both = "both"
    csv = "csv"
    json = "json"


def _err() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


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
    paths: Annotated[
        list[Path], typer.Argument(help="Heatmap files and folders (scanned recursively).")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder.")],
    decoder: Annotated[
        list[Decoder] | None,
        typer.Option("--decoder", "-d", help="Decoder to run; repeat for several. [default: both]"),
    ] = None,
    beta: Annotated[
        float, typer.Option(help="Soft-argmax inverse temperature β (> 0).")
    ] = DEFAULTS.settings.beta,
    normalize: Annotated[
        Normalize,
        typer.Option(
            help="Map scaling before β: none, max (x/max|x|), minmax ((x-min)/(max-min))."
        ),
    ] = Normalize(DEFAULTS.settings.normalize),
    coords: Annotated[
        Coords, typer.Option(help="pixel: centres at 0..W-1; normalized: [-1, 1] at outer centres.")
    ] = Coords.pixel,
    layout: Annotated[
        str,
        typer.Option(
            help="Axis order of the arrays, letters N C D H W (e.g. CHW, NCHWD), or auto."
        ),
    ] = "auto",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = DEFAULTS.device,
    batch_size: Annotated[
        int, typer.Option(help="Maps per batch on the device.")
    ] = DEFAULTS.batch_size,
    workers: Annotated[
        int, typer.Option(help="Threads reading files and drawing overlays.")
    ] = DEFAULTS.workers,
    fmt: Annotated[
        Format, typer.Option("--format", help="Which coordinate files to write.")
    ] = Format.both,
    overlays: Annotated[
        bool, typer.Option("--overlays/--no-overlays", help="Write overlay PNGs.")
    ] = True,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Replace outputs already in --out.")
    ] = False,
    strict: Annotated[
        bool, typer.Option("--strict", help="Stop at the first file that can't be decoded.")
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar or summary table.")
    ] = False,
) -> None:
    """Decode heatmaps and write coordinates.csv, coordinates.json and overlays/ into --out."""
    try:
        parsed_layout = parse_layout(layout)
    except LayoutError as exc:
        raise UsageError(str(exc)) from None
    if workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    decoders = (
        tuple(dict.fromkeys(d.value for d in decoder)) if decoder else DEFAULTS.settings.decoders
    )
    config = RunConfig(
        settings=DecodeSettings(decoders=decoders, beta=beta, normalize=normalize.value),
        coords=coords.value,
        layout=parsed_layout,
        device=device,
        batch_size=batch_size,
        workers=workers,
        formats=("csv", "json") if fmt == Format.both else (fmt.value,),
        overlays=overlays,
        overwrite=overwrite,
        strict=strict,
    )
    err = _err()
    show_progress = not quiet and err.is_terminal
    progress = Progress(
        TextColumn("decoding"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("files"),
        TimeRemainingColumn(),
        console=err,
        transient=True,
        disable=not show_progress,
    )
    task = progress.add_task("decoding", total=None)

    def started(total: int) -> None:
        progress.update(task, total=total)
        progress.start()

    def loaded(source: Source, items: list[HeatmapArray | LoadFailure]) -> None:
        for item in items:
            if isinstance(item, LoadFailure):
                progress.console.print(f"error: {item.name}: {item.reason}", markup=False)
            else:
                for note in item.warnings:
                    progress.console.print(f"warning: {item.name}: {note}", markup=False)
        progress.advance(task)

    try:
        report = run(paths, out, config, on_loaded=loaded, on_start=started)
    finally:
        progress.stop()
    for failure in report.failures:
        if failure.reason == "no such file or folder":
            err.print(f"error: {failure.name}: {failure.reason}", markup=False)
    for name, sample, channel in report.nonfinite():
        err.print(
            f"error: {name}: sample {sample} channel {channel}: "
            "map contains NaN or Inf, not decoded",
            markup=False,
        )
    for failure in report.overlay_errors:
        err.print(f"error: {failure.name}: {failure.reason}", markup=False)
    if report.stopped:
        err.print(
            "stopped at the first bad file (--strict); outputs hold the files decoded before it"
        )
    if not quiet:
        _print_summary(report, out)
    raise typer.Exit(0 if report.ok else 1)


def _print_summary(report: RunReport, out: Path) -> None:
    console = Console(highlight=False)
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
    dist = numbers["argmax_softargmax_distance_px"]
    if dist["mean"] is not None:
        table.add_row("argmax ↔ soft-argmax, mean", f"{dist['mean']:.3f} px")
        table.add_row("argmax ↔ soft-argmax, max", f"{dist['max']:.3f} px")
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
        shapes.add_row(lay, "×".join(map(str, spatial)), str(len(names)), names[0])
    console.print(shapes)
    for path in report.outputs:
        console.print(f"wrote {path}", markup=False)
    if report.results and (out / "overlays").is_dir():
        console.print(f"wrote overlays under {out / 'overlays'}", markup=False)


@app.command("sample")
def sample_command(
    out: Annotated[
        Path, typer.Argument(help="Folder to write the sample heatmaps and truth.csv into.")
    ],
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Write synthetic heatmaps with known peaks (PNG 8/16-bit, .npy, .npz, 3D) and truth.csv."""
    from heatdecode.sample import write_sample

    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} is a file, not a folder")
    rows = write_sample(out, seed=seed)
    typer.echo(f"wrote {len(rows)} maps and {out / 'truth.csv'}")


def main(argv: list[str] | None = None) -> int:
    """Entry point: runs the app and turns every user mistake into one line and an exit code."""
    command = typer.main.get_command(app)
    # Large images are refused by the loader with a one-line reason; Pillow's own
    # warning on the way would only add a second, noisier line.
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    # Pillow warns about damaged TIFF tags on its way to failing; the file is
    # reported once, by the loader, with its reason.
    warnings.filterwarnings("ignore", module=r"PIL\.")
    try:
        result = command.main(args=argv, prog_name="heatdecode", standalone_mode=False)
    except UsageError as exc:
        _err().print(f"heatdecode: error: {exc}", markup=False)
        return 2
    except KeyboardInterrupt:
        _err().print("heatdecode: interrupted", markup=False)
        return 130
    except Exception as exc:
        # typer's parse errors (a vendored click's UsageError) carry their own exit code
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
            _err().print(f"heatdecode: error: {exc.format_message()}", markup=False)
            return int(exc.exit_code)
        code = getattr(exc, "exit_code", None)
        if isinstance(code, int) and type(exc).__name__ in ("Exit", "Abort"):
            return code if type(exc).__name__ == "Exit" else 1
        raise
    return result if isinstance(result, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
