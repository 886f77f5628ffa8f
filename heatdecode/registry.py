"""The decoder registry: every decoder by name, with one signature.

``decode(heatmaps, name, ...)`` runs any decoder; :data:`DECODERS` says which
options each one takes. All return a :class:`~heatdecode.decoders.PointEstimates`
in the same coordinate frame, so they are directly comparable. (This module was
``heatdecode.family``, which still re-exports it.)

Pure core: imports only the standard library, numpy, torch and other core
modules; no I/O and no module state, so it can be used without the CLI stack
(``tests/test_package.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from heatdecode.decoders import PointEstimates, argmax_decode, resolve_frame, softargmax_decode
from heatdecode.options import DECODER_OPTIONS, check_options, resolve_options
from heatdecode.refine import (
    dark_decode,
    local_softargmax_decode,
    parabola_decode,
    quarter_decode,
)

__all__ = [
    "DECODERS",
    "DecoderInfo",
    "RegistryEntry",
    "check_options",
    "decode",
    "resolve_options",
]


@dataclass(frozen=True)
class RegistryEntry:
    """A decoder's entry: its function, the options it takes, and what it is."""

    function: Callable[..., PointEstimates]
    options: tuple[str, ...]
    differentiable: bool
    summary: str


#: The old name of :class:`RegistryEntry`, kept so existing code keeps working.
DecoderInfo = RegistryEntry


DECODERS: dict[str, RegistryEntry] = {
    "argmax": RegistryEntry(
        argmax_decode, tuple(DECODER_OPTIONS["argmax"]), False, "index of the maximum (integer)"
    ),
    "softargmax": RegistryEntry(
        softargmax_decode,
        tuple(DECODER_OPTIONS["softargmax"]),
        True,
        "Σ i·softmax(β·x̂) over the whole map",
    ),
    "local-softargmax": RegistryEntry(
        local_softargmax_decode,
        tuple(DECODER_OPTIONS["local-softargmax"]),
        True,
        "Σ i·softmax(β·x̂) over the (2r+1)^d window around the argmax",
    ),
    "quarter": RegistryEntry(
        quarter_decode,
        tuple(DECODER_OPTIONS["quarter"]),
        False,
        "argmax moved 0.25 px toward the higher neighbour (HRNet)",
    ),
    "parabola": RegistryEntry(
        parabola_decode,
        tuple(DECODER_OPTIONS["parabola"]),
        False,
        "per-axis parabola through the log-map at the argmax",
    ),
    "dark": RegistryEntry(
        dark_decode,
        tuple(DECODER_OPTIONS["dark"]),
        False,
        "DARK: Gaussian smoothing, then a Newton step on the log-map",
    ),
}


def decode(
    heatmaps: Tensor,
    decoder: str,
    *,
    spatial_dims: int = 2,
    frame: str | None = None,
    beta: float | None = None,
    normalize: str | None = None,
    radius: int | None = None,
    sigma: float | None = None,
    coords: str | None = None,
) -> PointEstimates:
    """Run the decoder named ``decoder`` (a key of :data:`DECODERS`).

    Options a decoder doesn't take are ignored, so one call shape serves all.
    An option left at ``None`` gets the decoder's own default (soft-argmax:
    β=1, ``"none"``; local soft-argmax: β=11, ``"minmax"``, r=2; DARK:
    σ estimated from the maps), so one shared default can't silently detune
    another decoder. ``frame`` is the output frame (default ``"pixel"``, see
    :func:`~heatdecode.decoders.to_frame`); ``coords`` is its deprecated old name.

    Shape:
        ``(..., H, W)`` or ``(..., D, H, W)`` -> ``PointEstimates`` with
        ``coords`` ``(..., spatial_dims)`` ordered (x, y[, z]).

    Example:
        >>> import torch
        >>> decode(torch.eye(3), "argmax").coords.tolist()
        [0.0, 0.0]
        >>> decode(torch.eye(3), "argmax", frame="normalized").coords.tolist()
        [-1.0, -1.0]
    """
    options = resolve_options(decoder, beta=beta, normalize=normalize, radius=radius, sigma=sigma)
    frame = resolve_frame(frame, coords)
    return DECODERS[decoder].function(heatmaps, spatial_dims=spatial_dims, frame=frame, **options)
