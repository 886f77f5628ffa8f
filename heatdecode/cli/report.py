"""``heatdecode report OUT``: a finished run's report page, from its outputs
(no re-decoding)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from heatdecode.cli import render
from heatdecode.cli.params import OUTPUTS_PANEL
from heatdecode.preflight import UsageError

OutArg = Annotated[Path, typer.Argument(help="A finished run's --out folder.", metavar="OUT")]
GalleryOpt = Annotated[
    int,
    typer.Option(
        help="How many of the worst (and of the flagged) maps the gallery shows.",
        metavar="N",
        rich_help_panel=OUTPUTS_PANEL,
    ),
]


def report_command(out: OutArg, gallery: GalleryOpt = 12) -> None:
    """Write OUT/report.html, one page about a finished run, to open in any browser.

    Settings, rows by status, distances between the decoders, histograms, a
    gallery of the worst and flagged maps with their overlays, and a table of
    every map to sort and filter. One file, no network.
    """
    if gallery < 0:
        raise UsageError(f"--gallery must be at least 0, got {gallery}")
    from heatdecode.report_page import write_report

    try:
        path = write_report(out, gallery)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    render.say(render.out_console(), f"wrote {path}")
