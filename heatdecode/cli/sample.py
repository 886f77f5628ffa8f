"""``heatdecode sample``: write synthetic heatmaps with known peaks, and truth.csv.

Needs numpy and Pillow (:mod:`heatdecode.sample`), never torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from heatdecode.cli import render
from heatdecode.cli.params import Refused
from heatdecode.preflight import UsageError


def _dims(dims: int) -> int:
    if dims not in (2, 3):
        raise Refused(f"--dims must be 2 or 3, got {dims}")
    return dims


OutArg = Annotated[Path, typer.Argument(help="Folder to write the heatmaps and truth.csv into.")]
SeedOpt = Annotated[int, typer.Option(help="Random seed.")]
KindOpt = Annotated[
    str | None,
    typer.Option(
        help="A synthetic set instead of the mixed-format sample: "
        "clean, noisy, low-contrast, quantized, two-peaks, border, anisotropic."
    ),
]
DimsOpt = Annotated[
    int, typer.Option(help="2 (48x64 maps) or 3 (32³ volumes), with --kind.", callback=_dims)
]
CountOpt = Annotated[int, typer.Option(help="Number of maps, with --kind.")]
SigmaOpt = Annotated[float | None, typer.Option(help="Peak σ in px, with --kind.")]
NoiseOpt = Annotated[float | None, typer.Option(help="Noise std (peak = 1), with --kind.")]
OffsetOpt = Annotated[float | None, typer.Option(help="Background offset, with --kind.")]


def sample_command(
    out: OutArg,
    seed: SeedOpt = 0,
    kind: KindOpt = None,
    dims: DimsOpt = 2,
    count: CountOpt = 64,
    sigma: SigmaOpt = None,
    noise: NoiseOpt = None,
    offset: OffsetOpt = None,
) -> None:
    """Write synthetic heatmaps with known peaks and truth.csv.

    Without --kind: the mixed-format sample (8/16-bit PNG, .npy, .npz, a 3D
    volume) that sample_data/ holds. With --kind: a set of one kind of map, to
    measure where each decoder fails.
    """
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} is a file, not a folder")
    if out.exists() and any(out.iterdir()):
        raise UsageError(f"{out} is not empty; choose a new folder so old maps don't mix in")

    from heatdecode.sample import PRESET_NAMES, preset, write_sample, write_synthetic

    render.ignore_pillow_warnings()
    if kind is None:
        rows = write_sample(out, seed=seed)
    else:
        if kind not in PRESET_NAMES:
            raise UsageError(f"unknown --kind {kind!r}; choose from {', '.join(PRESET_NAMES)}")
        settings = preset(kind, dims)
        given = {"sigma": sigma, "noise": noise, "offset": offset}
        settings.update({k: v for k, v in given.items() if v is not None})
        try:
            rows = write_synthetic(out, seed=seed, count=count, **settings)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    typer.echo(f"wrote {len(rows)} maps and {out / 'truth.csv'}")
