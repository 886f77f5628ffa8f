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
PANELS = (INPUT_PANEL, DECODING_PANEL, COORDINATES_PANEL, OUTPUTS_PANEL, RUN_PANEL)

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


def one_of(names: tuple[str, ...] | list[str]) -> str:
    """A choice list for an option's help (its metavar names the value: no
    ``<a|b|c>`` to break mid-word at 80 columns)."""
    return ", ".join(names)


PathsArg = Annotated[
    list[Path],
    typer.Argument(metavar="PATH...", help="Heatmap files and folders (scanned recursively)."),
]
OutOpt = Annotated[
    Path,
    typer.Option(
        "--out", "-o", metavar="DIR", help="Output folder.", rich_help_panel=OUTPUTS_PANEL
    ),
]
LayoutOpt = Annotated[
    str,
    typer.Option(
        metavar="AXES",
        help="Axis order of the arrays, letters N C D H W (e.g. CHW, NCHWD), or auto.",
        callback=_layout,
        rich_help_panel=INPUT_PANEL,
    ),
]
DeviceOpt = Annotated[
    str,
    typer.Option(
        metavar="DEVICE", help="auto, cpu, cuda, cuda:N or mps.", rich_help_panel=RUN_PANEL
    ),
]
BatchOpt = Annotated[
    int,
    typer.Option(
        metavar="N",
        help="Maps per batch on the device.",
        callback=_count("batch_size"),
        rich_help_panel=RUN_PANEL,
    ),
]
WorkersOpt = Annotated[
    int,
    typer.Option(
        metavar="N",
        help="Threads reading files and drawing overlays.",
        callback=_count("workers"),
        rich_help_panel=RUN_PANEL,
    ),
]


def decoder_option(name: str, metavar: str) -> Any:
    """The typer option of decoder option ``name``: its help, default text and
    check all from :mod:`heatdecode.options`, in the decoding panel."""
    return typer.Option(
        metavar=metavar,
        help=decoder_help(name),
        show_default=options.default_text(name),
        callback=_decoder_option(name),
        rich_help_panel=DECODING_PANEL,
    )


BetaOpt = Annotated[float | None, decoder_option("beta", "BETA")]
NormalizeOpt = Annotated[Normalize | None, decoder_option("normalize", "MODE")]
RadiusOpt = Annotated[int | None, decoder_option("radius", "PX")]
SigmaOpt = Annotated[float | None, decoder_option("sigma", "PX")]
CoordsOpt = Annotated[
    Coords,
    typer.Option(
        metavar="SYSTEM",
        help="pixel (centres at 0..W-1), half-pixel (centres at i+0.5), normalized "
        "([-1,1] at outer centres) or normalized-edges ([-1,1] at outer edges).",
        rich_help_panel=COORDINATES_PANEL,
    ),
]
StrideOpt = Annotated[
    str | None,
    typer.Option(
        metavar="S",
        help="Heatmap-to-image scale, one value or per axis x,y[,z] (e.g. 4 or 4,4).",
        show_default="1",
        callback=_per_axis("--stride"),
        rich_help_panel=COORDINATES_PANEL,
    ),
]
StrideOffsetOpt = Annotated[
    StrideOffset,
    typer.Option(
        metavar="MODE",
        help="centre: u = x·s + (s-1)/2; none: u = x·s (HRNet/mmpose).",
        rich_help_panel=COORDINATES_PANEL,
    ),
]
SpacingOpt = Annotated[
    str | None,
    typer.Option(
        metavar="SIZE",
        help="Physical size of a voxel/pixel, one value or x,y[,z] (e.g. 0.8,0.8,2.5).",
        show_default="none",
        callback=_per_axis("--spacing"),
        rich_help_panel=COORDINATES_PANEL,
    ),
]
MaxMapBytesOpt = Annotated[
    str,
    typer.Option(
        metavar="SIZE",
        help="Largest array one file (or .npz member) may hold, as stored, in bytes or "
        "with a unit (512M, 4G); bigger ones are refused before they are read.",
        callback=_size("max_map_bytes"),
        rich_help_panel=INPUT_PANEL,
    ),
]
BatchBytesOpt = Annotated[
    str,
    typer.Option(
        metavar="SIZE",
        help="Most bytes of maps in one batch, besides --batch-size maps (256M, 1G); "
        "a bigger map is decoded alone. Results don't depend on it.",
        callback=_size("batch_bytes"),
        rich_help_panel=RUN_PANEL,
    ),
]
OverwriteOpt = Annotated[
    bool,
    typer.Option(
        "--overwrite",
        metavar="",
        help="Replace outputs already in --out.",
        rich_help_panel=OUTPUTS_PANEL,
    ),
]
QuietOpt = Annotated[
    bool,
    typer.Option(
        "--quiet",
        "-q",
        metavar="",
        help="No progress bar or summary table.",
        rich_help_panel=RUN_PANEL,
    ),
]
