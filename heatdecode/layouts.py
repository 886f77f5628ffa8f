"""Axis layouts: which axis of a saved array is samples, channels, depth, height, width.

A layout is a string of the letters ``N`` (samples), ``C`` (channels or
keypoints), ``D``, ``H`` and ``W``, one per array axis, e.g. ``"CHW"``,
``"HWC"`` or ``"NCHWD"`` for arrays saved as (N, C, H, W, D). Every array is
brought to the canonical order ``(N, C, H, W)`` or ``(N, C, D, H, W)``; a
missing ``N`` or ``C`` becomes an axis of size 1.

Pure core: imports only the standard library, numpy, torch and other core
modules (the ``CORE`` list of ``tests/test_package.py``); no I/O and no module
state, so it can be used without the CLI stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

LETTERS = "NCDHW"
AUTO = "auto"
AUTO_LAYOUTS = {2: "HW", 3: "CHW", 4: "NCHW", 5: "NCDHW"}
#: what ``auto`` picks, for ``--help``: each ndim's layout and what it reads
AUTO_RULE = (
    f"2 axes as {AUTO_LAYOUTS[2]} (one map), 3 as {AUTO_LAYOUTS[3]} (one map per "
    f"channel), 4 as {AUTO_LAYOUTS[4]} (samples of channels), 5 as {AUTO_LAYOUTS[5]} "
    "(volumes), a multi-page TIFF as DHW"
)


class LayoutError(ValueError):
    """A layout string that can't describe an array (one line, for users)."""


def parse_layout(text: str) -> str:
    """Validate a layout string; returns it upper-cased, or ``"auto"``.

    Example:
        >>> parse_layout("nchwd")
        'NCHWD'
        >>> parse_layout("HHW")
        Traceback (most recent call last):
        ...
        heatdecode.layouts.LayoutError: layout 'HHW' repeats the letter H
    """
    if text.strip().lower() == AUTO:
        return AUTO
    layout = text.strip().upper()
    for letter in layout:
        if letter not in LETTERS:
            raise LayoutError(
                f"layout {text!r} has the unknown letter {letter!r}; use N, C, D, H, W"
            )
        if layout.count(letter) > 1:
            raise LayoutError(f"layout {text!r} repeats the letter {letter}")
    if "H" not in layout or "W" not in layout:
        raise LayoutError(f"layout {text!r} needs both H and W")
    return layout


def resolve_layout(layout: str, ndim: int, default: str | None = None) -> str:
    """The concrete layout for an array of ``ndim`` axes.

    ``default`` is a format's own auto layout (a multi-page TIFF is ``DHW``);
    otherwise ``auto`` maps ndim 2 → HW, 3 → CHW, 4 → NCHW, 5 → NCDHW.

    Example:
        >>> resolve_layout("auto", 4)
        'NCHW'
    """
    if layout == AUTO:
        if default is not None and len(default) == ndim:
            return default
        if ndim not in AUTO_LAYOUTS:
            raise LayoutError(
                f"cannot guess the layout of a {ndim}-D array; pass --layout (e.g. NCHW)"
            )
        return AUTO_LAYOUTS[ndim]
    if len(layout) != ndim:
        raise LayoutError(f"layout {layout} has {len(layout)} axes but the array has {ndim}")
    return layout


def doubtful_guess(shape: tuple[int, ...], layout: str) -> str | None:
    """A warning when the ``auto`` guess ``layout`` looks wrong for ``shape``, or
    ``None``: a last axis much smaller than the two before it reads like
    channels last (an ``(N, H, W, C)`` pose file read as NCHW gives maps of W×C),
    and four axes all volume-sized read like one ``(C, D, H, W)`` volume set.

    Example:
        >>> doubtful_guess((500, 64, 48, 17), "NCHW").endswith("channels last? pass --layout NHWC")
        True
        >>> doubtful_guess((500, 17, 64, 48), "NCHW") is None
        True
    """
    if layout in ("CHW", "NCHW") and len(shape) == len(layout):
        last, before = shape[-1], min(shape[-3:-1])
        if last * 2 < before:
            suggestion = "HWC" if layout == "CHW" else "NHWC"
            return (
                f"the last axis ({last}) is much smaller than the two before it: "
                f"channels last? pass --layout {suggestion}"
            )
    if layout == "NCHW" and len(shape) == 4 and min(shape[1:]) >= VOLUME_AXIS:
        return (
            f"the three trailing axes {shape[1:]} are all volume-sized: one volume per "
            "channel? pass --layout CDHW"
        )
    return None


#: the size from which an axis looks like a volume's depth rather than channels
VOLUME_AXIS = 32


def spatial_dims(layout: str) -> int:
    """2 for images, 3 for volumes (layouts with a ``D``)."""
    return 3 if "D" in layout else 2


def to_canonical(array: np.ndarray, layout: str) -> np.ndarray:
    """Reorder ``array`` from ``layout`` to ``(N, C, [D,] H, W)`` (a view where possible).

    Example:
        >>> import numpy as np
        >>> to_canonical(np.zeros((5, 6, 3)), "HWC").shape
        (1, 3, 5, 6)
        >>> to_canonical(np.zeros((2, 4, 5, 6, 7)), "NCHWD").shape
        (2, 4, 7, 5, 6)
    """
    import numpy as np  # here, not at the top: parse_layout needs only the standard library

    if len(layout) != array.ndim:
        raise LayoutError(f"layout {layout} has {len(layout)} axes but the array has {array.ndim}")
    target = "NC" + ("DHW" if "D" in layout else "HW")
    for letter in "NC":
        if letter not in layout:
            array = array[np.newaxis]
            layout = letter + layout
    return np.transpose(array, [layout.index(letter) for letter in target])
