"""The decoder family: every decoder by name, with one signature.

``decode(heatmaps, name, ...)`` runs any decoder; :data:`DECODERS` says which
options each one takes. All return a :class:`~heatdecode.decoders.Decoded` in
the same coordinate frame, so they are directly comparable.

Pure core: imports only the standard library, numpy, torch and other core
modules (decoders, refine, status, layouts, frames, family); no I/O and no
module state, so it can be used without the CLI stack (``tests/test_package.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from heatdecode.decoders import Decoded, argmax_decode, softargmax_decode
from heatdecode.options import DECODER_OPTIONS, check_options, resolve_options  # noqa: F401
from heatdecode.refine import (
    dark_decode,
    local_softargmax_decode,
    parabola_decode,
    quarter_decode,
)


@dataclass(frozen=True)
class DecoderInfo:
    """A decoder's entry: its function, the options it takes, and what it is."""

    function: Callable[..., Decoded]
    options: tuple[str, ...]
    differentiable: bool
    summary: str


DECODERS: dict[str, DecoderInfo] = {
    "argmax": DecoderInfo(
        argmax_decode, tuple(DECODER_OPTIONS["argmax"]), False, "index of the maximum (integer)"
    ),
    "softargmax": DecoderInfo(
        softargmax_decode,
        tuple(DECODER_OPTIONS["softargmax"]),
        True,
        "Σ i·softmax(β·x̂) over the whole map",
    ),
    "local-softargmax": DecoderInfo(
        local_softargmax_decode,
        tuple(DECODER_OPTIONS["local-softargmax"]),
        True,
        "Σ i·softmax(β·x̂) over the (2r+1)^d window around the argmax",
    ),
    "quarter": DecoderInfo(
        quarter_decode,
        tuple(DECODER_OPTIONS["quarter"]),
        False,
        "argmax moved 0.25 px toward the higher neighbour (HRNet)",
    ),
    "parabola": DecoderInfo(
        parabola_decode,
        tuple(DECODER_OPTIONS["parabola"]),
        False,
        "per-axis parabola through the log-map at the argmax",
    ),
    "dark": DecoderInfo(
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
    coords: str = "pixel",
    beta: float | None = None,
    normalize: str | None = None,
    radius: int | None = None,
    sigma: float | None = None,
) -> Decoded:
    """Run the decoder named ``decoder`` (a key of :data:`DECODERS`).

    Options a decoder doesn't take are ignored, so one call shape serves all.
    An option left at ``None`` gets the decoder's own default (soft-argmax:
    β=1, ``"none"``; local soft-argmax: β=11, ``"minmax"``, r=2; DARK:
    σ estimated from the maps), so one shared default can't silently detune
    another decoder.

    Shape:
        ``(..., H, W)`` or ``(..., D, H, W)`` -> ``Decoded`` with ``coords``
        ``(..., spatial_dims)`` ordered (x, y[, z]).

    Example:
        >>> import torch
        >>> decode(torch.eye(3), "argmax").coords.tolist()
        [0.0, 0.0]
    """
    options = resolve_options(decoder, beta=beta, normalize=normalize, radius=radius, sigma=sigma)
    return DECODERS[decoder].function(heatmaps, spatial_dims=spatial_dims, coords=coords, **options)
