"""The decoder family: every decoder by name, with one signature.

``decode(heatmaps, name, ...)`` runs any decoder; :data:`DECODERS` says which
options each one takes. All return a :class:`~heatdecode.decoders.Decoded` in
the same coordinate frame, so they are directly comparable.

Pure core: imports only the standard library, numpy, torch and other core
modules (decoders, refine, status, layouts, frames, family); no I/O and no
module state, so it can be used without the CLI stack (``tests/test_package.py``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from heatdecode.decoders import (
    Decoded,
    _check_beta,
    _check_normalize,
    argmax_decode,
    softargmax_decode,
)
from heatdecode.refine import (
    _check_radius,
    _check_sigma,
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
    "argmax": DecoderInfo(argmax_decode, (), False, "index of the maximum (integer)"),
    "softargmax": DecoderInfo(
        softargmax_decode,
        ("beta", "normalize"),
        True,
        "Σ i·softmax(β·x̂) over the whole map",
    ),
    "local-softargmax": DecoderInfo(
        local_softargmax_decode,
        ("beta", "normalize", "radius"),
        True,
        "Σ i·softmax(β·x̂) over the (2r+1)^d window around the argmax",
    ),
    "quarter": DecoderInfo(
        quarter_decode, (), False, "argmax moved 0.25 px toward the higher neighbour (HRNet)"
    ),
    "parabola": DecoderInfo(
        parabola_decode, (), False, "per-axis parabola through the log-map at the argmax"
    ),
    "dark": DecoderInfo(
        dark_decode,
        ("sigma",),
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


def resolve_options(decoder: str, **given: Any) -> dict[str, Any]:
    """The options ``decoder`` will run with: those given, else its own defaults.

    Example:
        >>> resolve_options("local-softargmax", beta=None, normalize="none")
        {'beta': 11.0, 'normalize': 'none', 'radius': 2}
        >>> resolve_options("argmax", beta=3.0)
        {}
    """
    info = DECODERS.get(decoder)
    if info is None:
        raise ValueError(f"unknown decoder {decoder!r}; choose from {', '.join(DECODERS)}")
    parameters = inspect.signature(info.function).parameters
    options = {
        name: given[name] if given.get(name) is not None else parameters[name].default
        for name in info.options
    }
    check_options(options)
    return options


#: Each option's range check (the decoders run the same ones): β in (0, 1e6],
#: radius an integer ≥ 1 (a window wider than the map is clamped to it),
#: σ in [0, 1e4] px or None.
_CHECKS: dict[str, Callable[[Any], Any]] = {
    "beta": _check_beta,
    "normalize": _check_normalize,
    "radius": _check_radius,
    "sigma": _check_sigma,
}


def check_options(options: dict[str, Any]) -> None:
    """Refuse an option out of its range before any map is read.

    Raises:
        ValueError: naming the option, e.g. ``beta must be ... at most 1e+06, got 4e+38``.

    Example:
        >>> check_options({"beta": 4e38})
        Traceback (most recent call last):
        ...
        ValueError: beta must be a finite number > 0 and at most 1e+06, got 4e+38
    """
    for name, value in options.items():
        _CHECKS[name](value)
