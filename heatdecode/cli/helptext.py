"""What ``--help`` teaches besides the options: each command's examples and the
exit codes, and the help's layout (options in panels, in the order of
:data:`~heatdecode.cli.params.PANELS`).

:data:`EXAMPLES` is the examples' one home: each command's epilog is written
from it, and ``tests/test_cli_help.py`` runs every example in it, in a fresh
folder, after the commands that make its inputs (``given``).

Standard library and typer only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from typer.core import TyperCommand, TyperGroup

from heatdecode.cli.params import PANELS, RUN_PANEL

EXIT_CODES = "Exit codes: 0 ok, 1 some file or map failed, 2 usage error, 130 interrupted."


@dataclass(frozen=True)
class Example:
    what: str  # one line: what it does
    line: str  # the command line, as typed (split on spaces to run it)
    writes: str | None = None  # a file it writes, relative to the folder it runs in


@dataclass(frozen=True)
class Examples:
    shown: tuple[Example, ...]
    given: tuple[str, ...] = ()  # command lines that make the inputs the examples read


SAMPLE = "heatdecode sample maps"
RUN = "heatdecode run maps -o out"

EXAMPLES: dict[str, Examples] = {
    "heatdecode": Examples(
        (
            Example("synthetic maps with known peaks, and truth.csv", SAMPLE, "maps/truth.csv"),
            Example(
                "decode them: coordinates.csv, .json and overlays/", RUN, "out/coordinates.csv"
            ),
        )
    ),
    "run": Examples(
        (
            Example(
                "decode with argmax and softargmax: coordinates, overlays",
                "heatdecode run maps -o out",
                "out/coordinates.json",
            ),
            Example(
                "choose the decoders; score them against the truth",
                "heatdecode run maps -o scored -d argmax -d dark --truth maps/truth.csv",
                "scored/metrics.csv",
            ),
            Example(
                "coordinates in the input image of stride-4 heatmaps",
                "heatdecode run maps -o image --stride 4 --format csv -q",
                "image/coordinates.csv",
            ),
        ),
        given=(SAMPLE,),
    ),
    "sweep": Examples(
        (
            Example(
                "the best β of softargmax (minmax-normalised)",
                "heatdecode sweep maps -o sweep --truth maps/truth.csv --beta 5,20,50",
                "sweep/sweep.csv",
            ),
            Example(
                "local-softargmax over the default β list",
                "heatdecode sweep maps -o ls --truth maps/truth.csv -d local-softargmax",
                "ls/sweep.csv",
            ),
        ),
        given=(SAMPLE,),
    ),
    "bench": Examples(
        (
            Example(
                "every decoder on the CPU, 8 samples of 17 maps 64x48",
                "heatdecode bench --shape 8,17,64,48 --device cpu --repeats 3",
            ),
            Example(
                "two decoders on 3D volumes",
                "heatdecode bench --shape 2,4,32,32,32 -d argmax -d softargmax --repeats 3",
            ),
        )
    ),
    "sample": Examples(
        (
            Example("the mixed-format sample (PNG, .npy, .npz, 3D)", SAMPLE, "maps/truth.csv"),
            Example(
                "16 noisy maps, to see where decoders fail",
                "heatdecode sample noisy --kind noisy --count 16",
                "noisy/truth.csv",
            ),
            Example(
                "many spots per map, for run --peaks",
                "heatdecode sample spots --kind spots --count 2",
                "spots/truth.csv",
            ),
        )
    ),
    "compare": Examples(
        (
            Example("where the decoders of a run disagree", "heatdecode compare out"),
            Example(
                "the 20 worst maps; mean distances by file",
                "heatdecode compare out --worst 20 --by file",
                "out/comparison.csv",
            ),
            Example(
                "each decoder's error against the truth too",
                "heatdecode compare out --truth maps/truth.csv",
                "out/comparison.csv",
            ),
        ),
        given=(SAMPLE, RUN),
    ),
    "report": Examples(
        (
            Example("one HTML page of the run in out/", "heatdecode report out", "out/report.html"),
            Example(
                "a gallery of the 4 worst (and 4 flagged) maps",
                "heatdecode report out --gallery 4",
                "out/report.html",
            ),
        ),
        given=(SAMPLE, RUN),
    ),
}


def epilog(command: str) -> str:
    """The end of ``command``'s help: its examples, then the exit codes.

    Single line breaks are kept (typer's rich markup mode); ``[`` is escaped so
    no example reads as markup.
    """
    examples = EXAMPLES[command]
    lines = ["Examples:"]
    if examples.given:
        lines[0] = "Examples, in a folder made by: " + " && ".join(examples.given)
    for example in examples.shown:
        lines += ["", f"  # {example.what}", f"  {example.line}"]
    lines += ["", EXIT_CODES]
    return "\n".join(lines).replace("[", "\\[")


def _rank(param: Any) -> int:
    """Arguments first, then options panel by panel, in :data:`PANELS`' order."""
    panel = getattr(param, "rich_help_panel", None)
    if getattr(param, "param_type_name", "") == "argument":
        return -1
    return PANELS.index(panel) if panel in PANELS else len(PANELS)


class Command(TyperCommand):
    """A command whose help lists its options panel by panel, ``-h`` with run
    control, and arguments by their metavar (``PATH...``, not ``{paths}``)."""

    _in_help = False

    def format_help(self, ctx: Any, formatter: Any) -> None:
        self._in_help = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._in_help = False

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        if not self._in_help:  # parsing keeps the declared order
            return params
        helper = self.get_help_option(ctx)
        if helper is not None:
            helper.rich_help_panel = RUN_PANEL
            helper.metavar = ""
        for param in params:
            if _rank(param) < 0:  # the metavar says it all: no <list[Path]> beside it
                param.display_type_rich = _no_type
        return sorted(params, key=_rank)

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if _rank(param) < 0:
                name = param.metavar or param.name.upper()
                pieces.append(name if param.required else f"[{name}]")
            else:
                pieces += param.get_usage_pieces(ctx)
        return pieces


def _no_type(ctx: Any) -> None:
    return None


class Group(TyperGroup):
    """The top-level command: flags without a ``<bool>`` beside them."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)
        for param in params:
            if getattr(param, "is_flag", False):
                param.metavar = ""
        return params
