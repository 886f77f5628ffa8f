"""``heatdecode sweep``: decode at every β and score each against the truth.

The β list and the decoders are checked as they are parsed, the output folder
and the inputs before :mod:`heatdecode.sweep` (and torch) is imported.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from heatdecode import options
from heatdecode.cli import render
from heatdecode.cli.params import (
    DECODING_PANEL,
    DEFAULT_BATCH_SIZE,
    DEFAULT_DEVICE,
    DEFAULT_WORKERS,
    INPUT_PANEL,
    NORMALIZE_CHOICES,
    BatchOpt,
    Decoder,
    DeviceOpt,
    LayoutOpt,
    Normalize,
    OutOpt,
    OverwriteOpt,
    PathsArg,
    QuietOpt,
    RadiusOpt,
    Refused,
    WorkersOpt,
    one_of,
    value,
)
from heatdecode.options import OptionError
from heatdecode.preflight import check_out_dir, check_some_input_exists


def _betas(text: str) -> str:
    """The β list parses and every β is in range. ``heatdecode.sweep.parse_betas``
    reads it once the command line is checked; this is its check without torch."""
    try:
        betas = [float(b) for b in text.split(",")]
    except ValueError:
        raise Refused(f"--beta takes numbers separated by commas, got {text!r}") from None
    for beta in betas:
        try:
            options.check_beta(beta)
        except OptionError as exc:
            raise Refused(exc.for_flag()) from None
    return text


def _sweepable(decoders: list[Decoder] | None) -> list[Decoder] | None:
    """Only decoders with a β can be swept (``heatdecode.sweep.sweep_runs``' rule)."""
    for name in map(value, decoders or ()):
        if not options.takes(name, "beta"):
            raise Refused(f"decoder {name!r} has no β to sweep; use softargmax or local-softargmax")
    return decoders


SWEEPABLE = [name for name in options.DECODER_NAMES if options.takes(name, "beta")]
TruthOpt = Annotated[
    Path,
    typer.Option(
        metavar="CSV",
        help="Ground-truth CSV (file, sample, channel, x, y[, z]).",
        rich_help_panel=INPUT_PANEL,
    ),
]
BetasOpt = Annotated[
    str,
    typer.Option(
        metavar="BETA,...",
        help="β values to try, comma-separated.",
        callback=_betas,
        rich_help_panel=DECODING_PANEL,
    ),
]
NormalizesOpt = Annotated[
    list[Normalize] | None,
    typer.Option(
        metavar="MODE",
        help=f"Normalisation to try, repeat for several: {one_of(NORMALIZE_CHOICES)}.",
        show_default="minmax",
        rich_help_panel=DECODING_PANEL,
    ),
]
DecodersOpt = Annotated[
    list[Decoder] | None,
    typer.Option(
        "--decoder",
        "-d",
        metavar="NAME",
        help=f"Decoder to sweep, repeat for several: {one_of(SWEEPABLE)}.",
        show_default="softargmax",
        callback=_sweepable,
        rich_help_panel=DECODING_PANEL,
    ),
]


def sweep_command(
    paths: PathsArg,
    out: OutOpt,
    truth: TruthOpt,
    beta: BetasOpt = "1,2,5,10,20,50,100,200",
    normalize: NormalizesOpt = None,
    decoder: DecodersOpt = None,
    radius: RadiusOpt = None,
    layout: LayoutOpt = "auto",
    device: DeviceOpt = DEFAULT_DEVICE,
    batch_size: BatchOpt = DEFAULT_BATCH_SIZE,
    workers: WorkersOpt = DEFAULT_WORKERS,
    overwrite: OverwriteOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Decode at every β and score against --truth: sweep.csv, sweep.png, and the best β."""
    check_out_dir(out, (), overwrite=True)  # a file, or not writable: sweep checks the rest
    check_some_input_exists(paths)

    from heatdecode.runner import RunConfig  # torch: only once the command line is known good
    from heatdecode.sweep import best, parse_betas, run_sweep, sweep_runs

    render.ignore_pillow_warnings()
    runs = sweep_runs(
        [value(d) for d in decoder] if decoder else ["softargmax"],
        [value(n) for n in normalize] if normalize else ["minmax"],
        parse_betas(beta),
        radius,
    )
    config = RunConfig(
        layout=layout,
        device=device,
        batch_size=batch_size,
        workers=workers,
        overwrite=overwrite,
    )
    err = render.err_console()
    with render.progress_bar(err, quiet) as bar:
        callbacks = {"on_loaded": bar.on_loaded, "on_start": bar.on_start}
        result = run_sweep(paths, out, truth, runs, config, **callbacks, on_phase=bar.on_phase)
    if result.plot_error:
        render.say(err, f"warning: {result.plot_error}")
    console = render.out_console()
    winners = best(result.points)
    if not quiet:
        console.print(render.sweep_table(winners))
        for path in result.outputs:
            render.say(console, f"wrote {path}")
    if winners:
        top = min(winners.values(), key=lambda p: p.metrics.mean)
        console.print(
            f"best: {top.decoder} normalize={top.normalize} beta={top.beta:g} "
            f"(mean error {top.metrics.mean:.4f} px)",
            markup=False,
        )
    # a missing plot extra costs only the picture: the results are complete
    raise typer.Exit(0 if result.run.ok else 1)
