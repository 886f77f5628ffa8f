"""``heatdecode compare OUT``: where a finished run's decoders disagree, from its
outputs (``coordinates.json``), without decoding again."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from heatdecode.cli import render
from heatdecode.cli.params import DECODING_PANEL, INPUT_PANEL, OUTPUTS_PANEL
from heatdecode.preflight import UsageError


class By(str, Enum):
    channel = "channel"
    file = "file"


OutArg = Annotated[Path, typer.Argument(metavar="OUT", help="A finished run's --out folder.")]
WorstOpt = Annotated[
    int,
    typer.Option(
        metavar="N",
        help="How many maps to list where decoders disagree most.",
        rich_help_panel=OUTPUTS_PANEL,
    ),
]
ByOpt = Annotated[
    By,
    typer.Option(
        metavar="GROUP",
        help="Group the mean distances by channel or by file.",
        rich_help_panel=OUTPUTS_PANEL,
    ),
]
DecodersOpt = Annotated[
    str | None,
    typer.Option(
        metavar="LABEL,...",
        help="Only these decoder labels, comma-separated.",
        show_default="all",
        rich_help_panel=DECODING_PANEL,
    ),
]


TruthOpt = Annotated[
    Path | None,
    typer.Option(
        metavar="CSV",
        help="Ground truth (file, sample, channel, x, y[, z]), as run --truth takes: adds "
        "each decoder's error against it, in the tables and comparison.csv.",
        show_default="(none)",
        rich_help_panel=INPUT_PANEL,
    ),
]


def compare_command(
    out: OutArg,
    worst: WorstOpt = 10,
    by: ByOpt = By.channel,
    decoders: DecodersOpt = None,
    truth: TruthOpt = None,
) -> None:
    """Compare the decoders of a finished run, from its outputs.

    Distances between every pair, rows by status, per channel (or file), the
    worst maps; writes comparison.csv (and comparison.png with the plot extra).
    """
    if worst < 0:
        raise UsageError(f"--worst must be at least 0, got {worst}")
    from heatdecode.compare import (
        COMPARISON_NAME,
        compare_rows,
        comparison_columns,
        read_run,
        truth_targets,
        write_comparison_csv,
    )

    try:
        run = read_run(out)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    chosen = None if decoders is None else [d.strip() for d in decoders.split(",")]
    unknown = [d for d in chosen or [] if d not in run.labels]
    if unknown:
        raise UsageError(
            f"--decoders: {', '.join(unknown)} did not run (ran: {', '.join(run.labels)})"
        )
    truth_rows = None if truth is None else _truth(truth, bool(run.settings.get("peaks")))
    targets = None if truth_rows is None else truth_targets(truth_rows)
    columns = comparison_columns(run, chosen, truth=targets is not None)
    rows = compare_rows(run, chosen, targets)
    written = [write_comparison_csv(out / COMPARISON_NAME, columns, rows)]
    picture = render.comparison_png(out / "comparison.png", columns, rows)
    if picture is not None:
        written.append(picture)
    render.print_comparison(run, columns, rows, worst, by.value, chosen)
    if truth_rows is not None:
        render.print_truth_comparison(run, truth_rows, chosen)
    for path in written:
        render.say(render.out_console(), f"wrote {path}")


def _truth(path: Path, peaks: bool) -> list[dict]:
    """The truth rows, or the usage error ``run --truth`` gives for the same file."""
    from heatdecode.readers import read_truth

    if peaks:
        raise UsageError(
            "--truth: this run found every peak (--peaks); run --peaks --truth "
            "scores it by matching, see its metrics files"
        )
    try:
        return read_truth(path)
    except (OSError, ValueError) as exc:
        raise UsageError(f"--truth {path}: {exc}") from None
