"""Which members of an ``.npz`` are decoded: the one a ``file.npz:key`` names,
those ``--key`` names, or by default every member but those that plainly are
not heatmaps, when the archive holds one that is.

The default's rule, applied only when the archive holds a *heatmap-like*
member (numeric, two or more axes, every spatial axis at least
:data:`MIN_MAP_PX` px under the layout; the anchor): a member is skipped, with
a note, when it

* has fewer than two axes (ids, scores, areas: no map can be read from it);
* is integer or boolean while a float member is heatmap-like (ids, labels,
  masks beside float heatmaps; a uint8 heatmap stored alone is still decoded);
* holds a few values per sample or per map of a heatmap-like member: its shape
  is the anchor's leading (sample/channel) axes, maybe followed by one axis of
  at most :data:`MAX_VALUES` (``bboxes`` (N, 4), ``center`` (N, 2),
  ``scores`` (N, K), ``joints`` (N, K, 3) beside ``heatmaps`` (N, K, H, W)).

An archive of small maps alone has no anchor, so nothing in it is skipped.
Members that could not be read are never skipped: they are reported. No I/O:
numpy, :mod:`heatdecode.layouts` and the loaders' standard-library helpers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from heatdecode.discovery import unique_name
from heatdecode.guards import LoadError
from heatdecode.layouts import LayoutError, resolve_layout

#: the smallest spatial axis (px) of a member that makes the others skippable
MIN_MAP_PX = 5
#: the most values per sample or map a skipped member may hold along its last axis
MAX_VALUES = 4

#: one array of a file: (member key or None, the array or why it can't be read,
#: the format's own layout or None, the reader's notes)
Entry = tuple[Any, ...]


def member_keys(names: list[str]) -> list[str]:
    """One unique key per member: the name without ``.npy`` (as np.load names
    it) unless two members would share it (``k`` and ``k.npy``) or it is taken;
    then the member keeps its stored name, and a name still taken (a zip may
    repeat one) gets ``#2``, ``#3``..."""
    stripped = [n[:-4] if n.endswith(".npy") else n for n in names]
    counts: dict[str, int] = {}
    for key in stripped:
        counts[key] = counts.get(key, 0) + 1
    keys: list[str] = []
    taken: set[str] = set()
    for name, key in zip(names, stripped, strict=True):
        if counts[key] > 1 or key in taken:
            key = unique_name(name, taken)
        taken.add(key)
        keys.append(key)
    return keys


def select_keys(entries: list[Entry], keys: Sequence[str]) -> list[Entry]:
    """The members ``keys`` names (``--key``), in the archive's order.

    Raises:
        LoadError: the archive holds none of them (the reason lists what it holds).
    """
    kept = [e for e in entries if e[0] in keys]
    if not kept:
        named = " or ".join(repr(k) for k in keys)
        held = ", ".join(str(e[0]) for e in entries)
        raise LoadError(f"no member {named} named by --key (it holds: {held})")
    return kept


def skip_non_heatmaps(entries: list[Entry], layout: str) -> tuple[list[Entry], list[str]]:
    """``entries`` less the members that are not heatmaps (the module's rule),
    and one ``"key (dtype shape, why)"`` for each member left out."""
    arrays = {i: e[1] for i, e in enumerate(entries) if isinstance(e[1], np.ndarray)}
    anchors = {i: a for i, a in arrays.items() if _heatmap_like(a, layout)}
    if not anchors:
        return entries, []
    floats = any(a.dtype.kind == "f" for a in anchors.values())
    kept: list[Entry] = []
    skipped: list[str] = []
    for i, entry in enumerate(entries):
        why = None
        if i in arrays:
            others = {j: a for j, a in anchors.items() if j != i}
            why = _why_skip(arrays[i], others, [entries[j][0] for j in others], floats, layout)
        if why is None:
            kept.append(entry)
        else:
            array = arrays[i]
            skipped.append(f"{entry[0]} ({array.dtype} {_shape(array.shape)}, {why})")
    return kept, skipped


def skip_note(name: str, skipped: list[str]) -> str:
    """The run's one note about the members of ``name`` that were skipped."""
    return (
        f"{name}: skipped {len(skipped)} member{'s' if len(skipped) > 1 else ''} that "
        f"don't look like heatmaps: {', '.join(skipped)}; to decode one anyway, name it "
        f"(--key NAME or {name}:NAME)"
    )


def _why_skip(
    array: np.ndarray,
    anchors: dict[int, np.ndarray],
    names: list[Any],
    floats: bool,
    layout: str,
) -> str | None:
    if not anchors:
        return None
    if array.ndim < 2:
        return f"{array.ndim}-D"
    if floats and array.dtype.kind in "iub":
        return f"{'boolean' if array.dtype.kind == 'b' else 'integer'} beside float maps"
    for name, anchor in zip(names, anchors.values(), strict=True):
        j = _per_map(array.shape, anchor.shape, _leading(anchor.shape, layout))
        if j:  # all the anchor's sample and channel axes: a value (or a few) per map
            per = (
                "map"
                if j == anchor.ndim - len(_axes(anchor.shape, layout, "DHW") or ())
                else "sample"
            )
            return f"values per {per} of {name}"
    return None


def _heatmap_like(array: np.ndarray, layout: str) -> bool:
    """Numeric, 2-D or more, every spatial axis at least MIN_MAP_PX px."""
    if array.dtype.kind not in "iuf" or array.ndim < 2:
        return False
    spatial = _axes(array.shape, layout, "DHW")
    return spatial is not None and min(spatial) >= MIN_MAP_PX


def _axes(shape: tuple[int, ...], layout: str, letters: str) -> tuple[int, ...] | None:
    try:
        resolved = resolve_layout(layout, len(shape))
    except LayoutError:
        return None
    return tuple(n for n, letter in zip(shape, resolved, strict=True) if letter in letters)


def _leading(shape: tuple[int, ...], layout: str) -> int:
    """How many axes of a heatmap-like shape come before its first spatial one."""
    resolved = resolve_layout(layout, len(shape))  # it resolved: the shape is heatmap-like
    return min(resolved.index(letter) for letter in "DHW" if letter in resolved)


def _per_map(shape: tuple[int, ...], anchor: tuple[int, ...], leading: int) -> int:
    """The ``j`` (1 <= j <= leading) for which ``shape`` is ``anchor``'s first
    ``j`` axes, maybe followed by one axis of at most MAX_VALUES; 0 if none."""
    for j in range(min(leading, len(shape)), 0, -1):
        rest = shape[j:]
        if shape[:j] == anchor[:j] and len(rest) <= 1 and all(n <= MAX_VALUES for n in rest):
            return j
    return 0


def _shape(shape: tuple[int, ...]) -> str:
    text = str(shape)
    return text if len(text) <= 40 else text[:37] + "..."
