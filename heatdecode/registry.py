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
from heatdecode.options import (
    DECODER_OPTIONS,
    SAVED_MAP_DEFAULTS,
    check_options,
    resolve_options,
)
from heatdecode.refine import (
    dark_decode,
    local_softargmax_decode,
    parabola_decode,
    quarter_decode,
)
from heatdecode.status import with_flags

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
    flags: bool = True,
) -> PointEstimates:
    """Run the decoder named ``decoder`` (a key of :data:`DECODERS`), as ``heatdecode run`` does.

    Options a decoder doesn't take are ignored, so one call shape serves all.
    An option left at ``None`` gets what ``heatdecode run -d NAME`` uses:
    :data:`~heatdecode.options.SAVED_MAP_DEFAULTS` (soft-argmax: β=20,
    ``"minmax"``), else the decoder's own default (local soft-argmax: β=11,
    ``"minmax"``, r=2; DARK: σ estimated from the maps). So
    ``decode(maps, "softargmax")`` gives the CLI's numbers, while
    :func:`~heatdecode.decoders.soft_argmax` keeps the training defaults
    (β=1, ``"none"``). ``frame`` is the output frame (default ``"pixel"``, see
    :func:`~heatdecode.decoders.to_frame`); ``coords`` is its deprecated old name.

    With ``flags`` (default) the result also carries the CLI's per-map
    ``low_contrast`` (soft-argmax decoders) and ``multimodal`` flags, by the
    same functions (:func:`heatdecode.status.with_flags`), and so its
    ``status``; ``flags=False`` skips them (the fields stay ``None``).

    Shape:
        ``(..., H, W)`` or ``(..., D, H, W)`` -> ``PointEstimates`` with
        ``coords`` ``(..., spatial_dims)`` ordered (x, y[, z]) and per-map
        fields and ``status`` ``(...)``.

    Example:
        >>> import torch
        >>> decode(torch.eye(3), "argmax").coords.tolist()
        [0.0, 0.0]
        >>> decode(torch.eye(3), "argmax", frame="normalized").coords.tolist()
        [-1.0, -1.0]
        >>> decode(torch.eye(3), "argmax").status.item()
        'ok'
    """
    saved = SAVED_MAP_DEFAULTS.get(decoder, {})
    given = {"beta": beta, "normalize": normalize, "radius": radius, "sigma": sigma}
    given = {name: saved.get(name) if value is None else value for name, value in given.items()}
    options = resolve_options(decoder, **given)
    frame = resolve_frame(frame, coords)
    out = DECODERS[decoder].function(heatmaps, spatial_dims=spatial_dims, frame=frame, **options)
    return with_flags(out, heatmaps, spatial_dims, options) if flags else out
