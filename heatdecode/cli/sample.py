"""``heatdecode sample``: write synthetic heatmaps with known peaks, and truth.csv.

Needs numpy and Pillow (:mod:`heatdecode.sample`), never torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from heatdecode.cli import render
from heatdecode.cli.params import OUTPUTS_PANEL, RUN_PANEL, Refused
from heatdecode.preflight import UsageError


def _dims(dims: int) -> int:
    if dims not in (2, 3):
        raise Refused(f"--dims must be 2 or 3, got {dims}")
    return dims


def _spots_per_map(spots: int | None) -> int | None:
    if spots is not None and spots < 1:
        raise Refused(f"--spots-per-map must be at least 1, got {spots}")
    return spots


OutArg = Annotated[
    Path, typer.Argument(metavar="DIR", help="Folder to write the heatmaps and truth.csv into.")
]
SeedOpt = Annotated[int, typer.Option(metavar="N", help="Random seed.", rich_help_panel=RUN_PANEL)]
KindOpt = Annotated[
    str | None,
    typer.Option(
        metavar="KIND",
        help="A synthetic set instead of the mixed-format sample: "
        "clean, noisy, low-contrast, quantized, two-peaks, border, anisotropic, "
        "spots (many spots per map, every one in truth.csv).",
        show_default="none: the mixed sample",
        rich_help_panel=OUTPUTS_PANEL,
    ),
]
DimsOpt = Annotated[
    int,
    typer.Option(
        metavar="2|3",
        help="With --kind: 48x64 maps or 32³ volumes; for spots 256x256 maps "
        "or 48x64x64 (DxHxW) volumes.",
        callback=_dims,
        rich_help_panel=OUTPUTS_PANEL,
    ),
]
CountOpt = Annotated[
    int,
    typer.Option(metavar="N", help="Number of maps, with --kind.", rich_help_panel=OUTPUTS_PANEL),
]
SigmaOpt = Annotated[
    float | None,
    typer.Option(
        metavar="PX",
        help="Peak σ in px, with --kind.",
        show_default="2; spots 1.5",
        rich_help_panel=OUTPUTS_PANEL,
    ),
]
NoiseOpt = Annotated[
    float | None,
    typer.Option(
        metavar="STD",
        help="Noise std (peak = 1), with --kind.",
        show_default="the kind's: 0; noisy 0.05; low-contrast 0.2",
        rich_help_panel=OUTPUTS_PANEL,
    ),
]
OffsetOpt = Annotated[
    float | None,
    typer.Option(
        metavar="VALUE",
        help="Background offset, with --kind.",
        show_default="the kind's: 0; low-contrast 0.8",
        rich_help_panel=OUTPUTS_PANEL,
    ),
]
SpotsOpt = Annotated[
    int | None,
    typer.Option(
        metavar="N",
        help="Spots per map, with --kind spots (at least 4σ apart).",
        show_default="100 in 2D, 60 in 3D",
        callback=_spots_per_map,
        rich_help_panel=OUTPUTS_PANEL,
    ),
]


def sample_command(
    out: OutArg,
    seed: SeedOpt = 0,
    kind: KindOpt = None,
    dims: DimsOpt = 2,
    count: CountOpt = 64,
    sigma: SigmaOpt = None,
    noise: NoiseOpt = None,
    offset: OffsetOpt = None,
    spots_per_map: SpotsOpt = None,
) -> None:
    """Write synthetic heatmaps with known peaks and truth.csv.

    Without --kind: the mixed-format sample (8/16-bit PNG, .npy, .npz, a 3D
    volume) that sample_data/ holds. With --kind: a set of one kind of map, to
    measure where each decoder fails; --kind spots: many spots per map, for
    decoders that find every peak.
    """
    if spots_per_map is not None and kind != "spots":
        raise UsageError("--spots-per-map is only for --kind spots")
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} is a file, not a folder")
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"{out} is not empty; choose a new folder so old maps don't mix in")

    from heatdecode.sample import KINDS, write_sample

    render.ignore_pillow_warnings()
    if kind is None:
        rows = write_sample(out, seed=seed)
        typer.echo(f"wrote {len(rows)} maps and {out / 'truth.csv'}")
        return
    if kind not in KINDS:
        raise UsageError(f"unknown --kind {kind!r}; choose from {', '.join(KINDS)}")
    given = {"sigma": sigma, "noise": noise, "offset": offset}
    knobs = {"seed": seed, "count": count, **{k: v for k, v in given.items() if v is not None}}
    try:
        if kind == "spots":
            from heatdecode.spots import write_spots

            rows = write_spots(out, dims=dims, spots_per_map=spots_per_map, **knobs)
            maps = f"{count} map" + ("s" if count != 1 else "")
            typer.echo(f"wrote {maps} with {len(rows)} spots and {out / 'truth.csv'}")
            return
        from heatdecode.sample import preset, write_synthetic

        rows = write_synthetic(out, **{**preset(kind, dims), **knobs})
    except ValueError as exc:
        raise UsageError(str(exc).replace("spots_per_map", "--spots-per-map")) from None
    typer.echo(f"wrote {len(rows)} maps and {out / 'truth.csv'}")
