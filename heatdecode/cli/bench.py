"""``heatdecode bench``: time the decoders on this machine, at a batch shape.

``--shape`` and ``--spatial-dims`` are checked before :mod:`heatdecode.bench`
(and torch) is imported; the size limits of :func:`heatdecode.bench.check_bench`
after, before anything is allocated.
"""

from __future__ import annotations

from typing import Annotated

import typer

from heatdecode.cli import render
from heatdecode.cli.params import (
    DECODER_NAMES,
    DECODING_PANEL,
    DEFAULT_DEVICE,
    INPUT_PANEL,
    RUN_PANEL,
    Decoder,
    DeviceOpt,
    Refused,
    one_of,
    value,
)
from heatdecode.preflight import UsageError


def _shape(text: str) -> tuple[int, ...]:
    """``"64,17,64,48"`` → (64, 17, 64, 48): at least 2 axes, all ≥ 1."""
    try:
        dims = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise Refused(f"--shape takes integers separated by commas, got {text!r}") from None
    if len(dims) < 2 or min(dims) < 1:
        raise Refused(f"--shape needs at least 2 axes, all >= 1, got {text!r}")
    return dims


def _check_shape(text: str) -> str:
    _shape(text)
    return text


ShapeOpt = Annotated[
    str,
    typer.Option(
        metavar="N,C,...",
        help="Batch shape, e.g. 64,17,64,48 (2D) or 2,8,64,64,64 (3D).",
        callback=_check_shape,
        rich_help_panel=INPUT_PANEL,
    ),
]
DecodersOpt = Annotated[
    list[Decoder] | None,
    typer.Option(
        "--decoder",
        "-d",
        metavar="NAME",
        help=f"Decoder to time, repeat for several: {one_of(DECODER_NAMES)}.",
        show_default="all",
        rich_help_panel=DECODING_PANEL,
    ),
]
RepeatsOpt = Annotated[
    int, typer.Option(metavar="N", help="Timed calls per decoder.", rich_help_panel=RUN_PANEL)
]
SpatialDimsOpt = Annotated[
    int | None,
    typer.Option(
        metavar="2|3",
        help="Spatial axes at the end of the shape: 2 or 3.",
        show_default="3 for 5-axis shapes, else 2",
        rich_help_panel=INPUT_PANEL,
    ),
]


def bench_command(
    shape: ShapeOpt = "64,17,64,48",
    device: DeviceOpt = DEFAULT_DEVICE,
    decoder: DecodersOpt = None,
    repeats: RepeatsOpt = 20,
    spatial_dims: SpatialDimsOpt = None,
) -> None:
    """Time heatdecode's decoders on your device and shape: median ms and maps/s."""
    dims = _shape(shape)
    if spatial_dims not in (None, 2, 3) or len(dims) < (spatial_dims or 2):
        raise UsageError(f"--spatial-dims must be 2 or 3 and fit the shape, got {spatial_dims}")

    import torch

    from heatdecode.bench import bench_decoders, check_bench
    from heatdecode.devices import resolve_device

    try:
        check_bench(dims, repeats)  # the sizes bench_decoders accepts, before any allocation
    except ValueError as exc:
        raise UsageError(f"--{exc}") from None
    try:
        resolved = resolve_device(device)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    names = [value(d) for d in decoder] if decoder else None
    rows = bench_decoders(dims, resolved, names, repeats, spatial_dims=spatial_dims)
    console = render.out_console()
    title = f"heatdecode bench: shape {'×'.join(map(str, dims))} on {resolved}"
    console.print(render.bench_table(title, rows))
    console.print(
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads; "
        "medians of interleaved calls: compare decoders within one run",
        markup=False,
    )
