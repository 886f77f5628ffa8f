"""Every decoder option in one place: its type, default, valid range and meaning.

This is the one home of each option's rule. The decoders check their options
here (a ``ValueError`` naming the parameter: ``beta must be ...``); the CLI
builds its help from :data:`OPTIONS` and turns an :class:`OptionError` into a
usage error naming the flag (``--beta must be ...``) once, at its edge. The
README's option table is tested against it (``tests/test_options.py``).

Also the choice of decoders a run makes: :class:`DecoderSpec` (one decoder
with its options and row label) and :class:`DecoderSelection` (the CLI's
``--decoder/--beta/...``, resolved into specs once).

Pure: the standard library only (no torch, numpy or I/O), so the CLI can check
a command line before it imports torch.

To add a decoder option: give it an :class:`Option` in :data:`OPTIONS`, name it
with its library default in the decoder's entry of :data:`DECODER_OPTIONS`,
give the decoder function a keyword of that name, and add a row to the
README's table (the tests name what is missing).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

NORMALIZE_CHOICES: tuple[str, ...] = ("none", "max", "minmax")
COORD_CHOICES: tuple[str, ...] = ("pixel", "half-pixel", "normalized", "normalized-edges")

#: The largest β accepted. β·x̂ must stay finite in float32 for every map
#: (minmax divides β by the map's span, as small as 2⁻²³ of its range): at
#: β = 4e38 it overflows and 0·∞ turns the peak's logit into NaN. Far beyond
#: 1e6 the softmax is the hard argmax anyway.
BETA_MAX = 1e6

#: The largest DARK σ accepted, in pixels. The kernel has ⌊4σ + ½⌋ taps a side,
#: one Python step each: σ = 1e10 asked for 320 GB. 1e4 px is far wider than
#: any map DARK's 3-pixel Newton step is meant for.
DARK_SIGMA_MAX = 1e4

#: Local soft-argmax's defaults (with ``normalize="minmax"``): the measurement
#: behind β = 11 is in ``local_softargmax_decode``'s docstring.
LOCAL_BETA = 11.0
LOCAL_NORMALIZE = "minmax"
LOCAL_RADIUS = 2


class OptionError(ValueError):
    """An option out of its range: ``str()`` names the parameter (``beta must be
    ...``), :meth:`for_flag` the command-line flag (``--beta must be ...``)."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name} {problem}")
        self.name = name
        self.problem = problem

    def for_flag(self) -> str:
        return f"{flag(self.name)} {self.problem}"


def flag(name: str) -> str:
    """The command-line flag of a parameter.

    Example:
        >>> flag("batch_size")
        '--batch-size'
    """
    return "--" + name.replace("_", "-")


def check_beta(beta: float) -> float:
    """β as a float: finite, > 0 and at most :data:`BETA_MAX`."""
    value = float(beta)
    if not (value > 0 and value <= BETA_MAX):
        raise OptionError(
            "beta", f"must be a finite number > 0 and at most {BETA_MAX:g}, got {value}"
        )
    return value


def check_normalize(normalize: str) -> str:
    if normalize not in NORMALIZE_CHOICES:
        raise OptionError("normalize", f"must be one of {NORMALIZE_CHOICES}, got {normalize!r}")
    return normalize


def check_radius(radius: int) -> int:
    """An integer ≥ 1; a window wider than the map is trimmed to it by the decoder."""
    if isinstance(radius, bool) or not isinstance(radius, int) or radius < 1:
        raise OptionError("radius", f"must be an integer >= 1, got {radius!r}")
    return radius


def check_sigma(sigma: float | None) -> float | None:
    """DARK's σ in pixels: from 0 (no smoothing) to :data:`DARK_SIGMA_MAX`, or
    ``None`` (each map's own σ, estimated)."""
    if sigma is None:
        return None
    value = float(sigma)
    if not (value >= 0 and value <= DARK_SIGMA_MAX):
        raise OptionError(
            "sigma",
            f"must be a number from 0 to {DARK_SIGMA_MAX:g} px (or unset: estimated), got {value}",
        )
    return value


def check_coords(coords: str) -> str:
    if coords not in COORD_CHOICES:
        raise OptionError("coords", f"must be one of {COORD_CHOICES}, got {coords!r}")
    return coords


def check_count(name: str, value: int, unit: str = "") -> int:
    """A count such as ``batch_size`` or ``workers``: an integer ≥ 1.

    Example:
        >>> check_count("batch_size", 0)
        Traceback (most recent call last):
        ...
        heatdecode.options.OptionError: batch_size must be at least 1, got 0
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise OptionError(name, f"must be at least 1{unit}, got {value}")
    return value


@dataclass(frozen=True)
class Option:
    """A decoder option: how it is checked and what it means (the CLI's help)."""

    name: str
    type: type
    check: Callable[[Any], Any]
    help: str
    range: str  # in words, as the README's option table says it


OPTIONS: dict[str, Option] = {
    "beta": Option(
        "beta",
        float,
        check_beta,
        "Inverse temperature β (> 0) of the soft-argmax decoders.",
        "> 0 and at most 1e6",
    ),
    "normalize": Option(
        "normalize",
        str,
        check_normalize,
        "Map scaling before β: none, max (x/max|x|), minmax ((x-min)/(max-min)).",
        "`none`, `max` or `minmax`",
    ),
    "radius": Option(
        "radius",
        int,
        check_radius,
        "Window radius of local-softargmax, in pixels.",
        "≥ 1; a window wider than the map is trimmed to it",
    ),
    "sigma": Option(
        "sigma",
        float,
        check_sigma,
        "DARK's smoothing σ in pixels (0: no smoothing).",
        "from 0 (no smoothing) to 1e4",
    ),
}

#: Each decoder's options, in order, with the library's defaults (``None`` for
#: σ: estimated from each map). The decoder functions' keyword defaults are
#: tested against these.
DECODER_OPTIONS: dict[str, dict[str, Any]] = {
    "argmax": {},
    "softargmax": {"beta": 1.0, "normalize": "none"},
    "local-softargmax": {"beta": LOCAL_BETA, "normalize": LOCAL_NORMALIZE, "radius": LOCAL_RADIUS},
    "quarter": {},
    "parabola": {},
    "dark": {"sigma": None},
}
DECODER_NAMES: tuple[str, ...] = tuple(DECODER_OPTIONS)

#: ``heatdecode run``'s per-decoder defaults for saved heatmaps, whose scale is
#: arbitrary (0-1 floats, 0-255 PNGs): minmax makes β scale-free, and each β is
#: the one measured best on σ≈2 Gaussians (see the README). ``--beta`` and
#: ``--normalize`` override them for every decoder.
SAVED_MAP_DEFAULTS: dict[str, dict[str, Any]] = {
    "softargmax": {"beta": 20.0, "normalize": "minmax"},
    "local-softargmax": {"beta": LOCAL_BETA, "normalize": LOCAL_NORMALIZE},
}


def check_decoder(name: str) -> str:
    """A decoder's name, refused (``ValueError``) unless it is one of :data:`DECODER_NAMES`."""
    if name not in DECODER_OPTIONS:
        raise ValueError(f"unknown decoder {name!r}; choose from {', '.join(DECODER_NAMES)}")
    return name


def takes(decoder: str, option: str) -> bool:
    """Whether ``decoder`` takes ``option`` (e.g. whether it has a β to sweep)."""
    return option in DECODER_OPTIONS[check_decoder(decoder)]


def check_options(options: Mapping[str, Any]) -> None:
    """Every option given checked against its range, before any map is read.

    Raises:
        OptionError: naming the option, e.g. ``beta must be a finite number > 0 and
            at most 1e+06, got 4e+38``.

    Example:
        >>> check_options({"radius": 0})
        Traceback (most recent call last):
        ...
        heatdecode.options.OptionError: radius must be an integer >= 1, got 0
    """
    for name, value in options.items():
        OPTIONS[name].check(value)


def resolve_options(decoder: str, **given: Any) -> dict[str, Any]:
    """The options ``decoder`` will run with: those given (not ``None``), else
    its own defaults; options it doesn't take are ignored.

    Example:
        >>> resolve_options("local-softargmax", beta=None, normalize="none")
        {'beta': 11.0, 'normalize': 'none', 'radius': 2}
        >>> resolve_options("argmax", beta=3.0)
        {}
    """
    defaults = DECODER_OPTIONS[check_decoder(decoder)]
    options = {
        name: given[name] if given.get(name) is not None else default
        for name, default in defaults.items()
    }
    check_options(options)
    return options


def default_text(name: str) -> str:
    """What ``heatdecode run`` uses for an option left out, for its help.

    Example:
        >>> default_text("beta"), default_text("radius")
        ('20 for softargmax, 11 for local-softargmax', '2')
    """
    given = [(d, o[name]) for d, o in SAVED_MAP_DEFAULTS.items() if name in o]
    values = {v for _, v in given}
    if len(values) > 1:
        return ", ".join(f"{_show(v)} for {d}" for d, v in given)
    if values:
        return _show(values.pop())
    library = {o[name] for o in DECODER_OPTIONS.values() if name in o}
    if library == {None}:
        return "estimated from the maps"
    return ", ".join(_show(v) for v in sorted(library))


def _show(value: Any) -> str:
    if isinstance(value, float) and math.isfinite(value) and value == int(value):
        return str(int(value))
    return str(value)


@dataclass(frozen=True)
class DecoderSpec:
    """One decoder with its options; ``label`` names its rows in the outputs.

    An option left at ``None`` takes the decoder's own default.
    """

    label: str
    decoder: str
    beta: float | None = None
    normalize: str | None = None
    radius: int | None = None
    sigma: float | None = None

    def options(self) -> dict[str, Any]:
        """The options this run really uses (defaults filled in), by name."""
        return resolve_options(
            self.decoder,
            beta=self.beta,
            normalize=self.normalize,
            radius=self.radius,
            sigma=self.sigma,
        )


DecoderRun = DecoderSpec  # its old name, kept working


@dataclass(frozen=True)
class DecoderSelection:
    """Which decoders to run and how (the CLI's ``--decoder/--beta/--normalize/...``).

    An option left at ``None`` falls back to ``defaults[decoder]`` and then to
    the decoder's own default, so one shared ``--beta`` can't silently detune a
    decoder that wants another (local soft-argmax's best β is not global
    soft-argmax's). ``runs``, when given, replaces the list built from the
    other fields (a β sweep runs one decoder under several settings in one pass).
    """

    decoders: tuple[str, ...] = ("argmax", "softargmax")
    beta: float | None = None
    normalize: str | None = None
    radius: int | None = None
    sigma: float | None = None
    defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    runs: tuple[DecoderSpec, ...] | None = None

    def resolved_runs(self) -> tuple[DecoderSpec, ...]:
        """The decoders to run, each with its options (``runs`` when given)."""
        if self.runs is not None:
            return self.runs
        given = {"beta": self.beta, "normalize": self.normalize}
        given |= {"radius": self.radius, "sigma": self.sigma}
        runs = []
        for name in self.decoders:
            options = dict(self.defaults.get(name, {}))
            options.update({k: v for k, v in given.items() if v is not None})
            runs.append(DecoderSpec(name, name, **options))
        return tuple(runs)


DecodeSettings = DecoderSelection  # its old name, kept working


@dataclass(frozen=True)
class PeakOptions:
    """Peaks mode (``heatdecode run --peaks``): which pixels are peaks, as
    :func:`heatdecode.peaks.find_peaks` (scikit-image's ``peak_local_max``) reads
    them, and how many a map may keep.

    The command line's defaults differ from the library's (scikit-image's) on
    purpose: with the map's minimum as the threshold a noisy 2048² map has
    thousands of noise peaks, so a run keeps peaks above half the map's maximum
    (scikit-image's ``threshold_rel``; a background offset counts in the
    maximum), at most ``max_peaks`` per map (a map with more gets a warning and
    keeps the highest), and doesn't drop peaks near the border (a refinement
    that can't use a pixel beyond the edge says so with status ``border``).
    """

    min_distance: int = 2
    threshold_abs: float | None = None
    threshold_rel: float | None = 0.5
    max_peaks: int = 1000
    exclude_border: int = 0

    def __post_init__(self) -> None:
        check_count("min_distance", self.min_distance)
        check_count("max_peaks", self.max_peaks)
        if isinstance(self.exclude_border, bool) or not isinstance(self.exclude_border, int):
            raise OptionError(
                "exclude_border", f"must be an integer >= 0, got {self.exclude_border!r}"
            )
        if self.exclude_border < 0:
            raise OptionError(
                "exclude_border", f"must be an integer >= 0, got {self.exclude_border}"
            )
        for name in ("threshold_abs", "threshold_rel"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise OptionError(name.replace("_abs", ""), f"must be a finite number, got {value}")

    def describe(self) -> dict[str, Any]:
        """The ``peaks`` entry of ``coordinates.json``'s settings."""
        return {
            "min_distance": self.min_distance,
            "threshold_abs": self.threshold_abs,
            "threshold_rel": self.threshold_rel,
            "max_peaks": self.max_peaks,
            "exclude_border": self.exclude_border,
        }


#: decoders that have no meaning at one peak of many: their sum runs over the whole map
WHOLE_MAP_DECODERS = ("softargmax",)
#: ``heatdecode run --peaks``'s decoders when none is chosen
PEAK_DECODERS = ("argmax", "parabola")
