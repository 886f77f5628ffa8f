"""The options the commands share, each declared once together with its check.

A check is a typer callback: it runs while the command line is parsed, before
any command imports torch, and refuses a value with the line the user sees
(``heatdecode: error: --beta must be ...``, exit 2). The decoder options take
their rule (``OPTIONS[name].check``), help and default from
:mod:`heatdecode.options`, their one home.

Standard library, typer and heatdecode's torch-free modules only.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from heatdecode import options
from heatdecode.frames import STRIDE_OFFSETS, parse_per_axis
from heatdecode.layouts import LayoutError, parse_layout
from heatdecode.options import COORD_CHOICES, DECODER_NAMES, NORMALIZE_CHOICES, OptionError
from heatdecode.preflight import parse_size

# RunConfig's defaults, written here because heatdecode.runner imports torch
# (tests/test_cli_startup.py holds them equal to RunConfig()'s).
DEFAULT_DECODERS = ("argmax", "softargmax")
DEFAULT_DEVICE = "auto"
DEFAULT_BATCH_SIZE = 256
DEFAULT_WORKERS = 4

# The panels ``--help`` groups options into (typer's rich_help_panel), in this
# order: every command names its options' panel with one of these.
INPUT_PANEL = "Input"
DECODING_PANEL = "Decoding"
COORDINATES_PANEL = "Coordinates"
OUTPUTS_PANEL = "Outputs"
RUN_PANEL = "Run control"

Decoder = Enum("Decoder", {name: name for name in DECODER_NAMES}, type=str)
Normalize = Enum("Normalize", {name: name for name in NORMALIZE_CHOICES}, type=str)
Coords = Enum("Coords", {name: name for name in COORD_CHOICES}, type=str)
StrideOffset = Enum("StrideOffset", {name: name for name in STRIDE_OFFSETS}, type=str)


class Format(str, Enum):
    both = "both"
    csv = "csv"
    json = "json"


class Refused(typer.BadParameter):
    """A value its option's check refused; the message names the flag itself."""

    def format_message(self) -> str:
        return self.message


def value(choice: Enum | str) -> str:
    """The text of a choice (typer hands the command Enum members)."""
    return choice.value if isinstance(choice, Enum) else choice


# ------------------------------------------------------------------- checks


def _decoder_option(name: str) -> Callable[[Any], Any]:
    """The check of a decoder option: ``options.OPTIONS[name]``'s rule, when given."""

    def check(given: Any) -> Any:
        if given is not None:
            try:
                options.OPTIONS[name].check(value(given))
            except OptionError as exc:
                raise Refused(exc.for_flag()) from None
        return given

    return check


def _count(name: str, unit: str = "") -> Callable[[int], int]:
    def check(given: int) -> int:
        try:
            return options.check_count(name, given, unit)
        except OptionError as exc:
            raise Refused(exc.for_flag()) from None

    return check


def _size(name: str) -> Callable[[str], str]:
    """A byte size such as ``512M``: it parses, and is at least 1 byte."""

    def check(text: str) -> str:
        try:
            size = parse_size(text)
        except ValueError as exc:
            raise Refused(f"{options.flag(name)}: {exc}") from None
        _count(name, " byte")(size)
        return text

    return check


def _layout(text: str) -> str:
    try:
        return parse_layout(text)
    except LayoutError as exc:
        raise Refused(str(exc)) from None


def _per_axis(flag: str) -> Callable[[str | None], str | None]:
    def check(text: str | None) -> str | None:
        if text:
            try:
                parse_per_axis(text, flag)
            except ValueError as exc:
                raise Refused(str(exc)) from None
        return text

    return check


# ------------------------------------------------------- shared declarations


def decoder_help(name: str) -> str:
    """A decoder option's help, from :data:`heatdecode.options.OPTIONS`."""
    return options.OPTIONS[name].help


PathsArg = Annotated[
    list[Path], typer.Argument(help="Heatmap files and folders (scanned recursively).")
]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output folder.")]
LayoutOpt = Annotated[
    str,
    typer.Option(
        help="Axis order of the arrays, letters N C D H W (e.g. CHW, NCHWD), or auto.",
        callback=_layout,
    ),
]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")]
BatchOpt = Annotated[
    int, typer.Option(help="Maps per batch on the device.", callback=_count("batch_size"))
]
WorkersOpt = Annotated[
    int,
    typer.Option(help="Threads reading files and drawing overlays.", callback=_count("workers")),
]
BetaOpt = Annotated[
    float | None,
    typer.Option(
        help=decoder_help("beta"),
        show_default=options.default_text("beta"),
        callback=_decoder_option("beta"),
    ),
]
NormalizeOpt = Annotated[
    Normalize | None,
    typer.Option(
        help=decoder_help("normalize"),
        show_default=options.default_text("normalize"),
        callback=_decoder_option("normalize"),
    ),
]
RadiusOpt = Annotated[
    int | None,
    typer.Option(
        help=decoder_help("radius"),
        show_default=options.default_text("radius"),
        callback=_decoder_option("radius"),
    ),
]
SigmaOpt = Annotated[
    float | None,
    typer.Option(
        help=decoder_help("sigma"),
        show_default=options.default_text("sigma"),
        callback=_decoder_option("sigma"),
    ),
]
CoordsOpt = Annotated[
    Coords,
    typer.Option(
        help="pixel (centres at 0..W-1), half-pixel (centres at i+0.5), normalized "
        "([-1,1] at outer centres) or normalized-edges ([-1,1] at outer edges)."
    ),
]
StrideOpt = Annotated[
    str | None,
    typer.Option(
        help="Heatmap-to-image scale, one value or per axis x,y[,z] (e.g. 4 or 4,4).",
        callback=_per_axis("--stride"),
    ),
]
StrideOffsetOpt = Annotated[
    StrideOffset,
    typer.Option(help="centre: u = x·s + (s-1)/2; none: u = x·s (HRNet/mmpose)."),
]
SpacingOpt = Annotated[
    str | None,
    typer.Option(
        help="Physical size of a voxel/pixel, one value or x,y[,z] (e.g. 0.8,0.8,2.5).",
        callback=_per_axis("--spacing"),
    ),
]
MaxMapBytesOpt = Annotated[
    str,
    typer.Option(
        help="Largest array one file (or .npz member) may hold, as stored, in bytes or "
        "with a unit (512M, 4G); bigger ones are refused before they are read.",
        callback=_size("max_map_bytes"),
    ),
]
BatchBytesOpt = Annotated[
    str,
    typer.Option(
        help="Most bytes of maps in one batch, besides --batch-size maps (256M, 1G); "
        "a bigger map is decoded alone. Results don't depend on it.",
        callback=_size("batch_bytes"),
    ),
]
OverwriteOpt = Annotated[
    bool, typer.Option("--overwrite", help="Replace outputs already in --out.")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary table.")]
