"""``heatdecode run``'s options of what is read: ``--layout`` (with what ``auto``
picks), ``--key`` and ``--strict-layout``. Standard library, typer and
heatdecode's torch-free modules only.
"""

from __future__ import annotations

from typing import Annotated

import typer

from heatdecode.cli.params import INPUT_PANEL, Refused, _layout
from heatdecode.layouts import AUTO_RULE


def _keys(given: list[str] | None) -> list[str] | None:
    for key in given or ():
        if not key.strip():
            raise Refused("--key needs the name of an .npz member, got an empty one")
    return given


RunLayoutOpt = Annotated[
    str,
    typer.Option(
        metavar="AXES",
        help="Axis order of the arrays, letters N C D H W (e.g. CHW, NHWC, NCHWD), or auto, "
        f"which reads {AUTO_RULE}; a guess that looks wrong is warned about (see "
        "--strict-layout).",
        callback=_layout,
        rich_help_panel=INPUT_PANEL,
    ),
]
KeyOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--key",
        metavar="NAME",
        help="Decode only this member of .npz files; repeat for several (a file holding none "
        "fails). Without it, members that plainly aren't heatmaps beside one that is (ids, "
        "boxes, per-map scores) are skipped with a note.",
        show_default="every heatmap member",
        callback=_keys,
        rich_help_panel=INPUT_PANEL,
    ),
]
StrictLayoutOpt = Annotated[
    bool,
    typer.Option(
        "--strict-layout",
        metavar="",
        help="An auto layout guess that looks wrong (channels last?) fails that file "
        "instead of a warning.",
        rich_help_panel=INPUT_PANEL,
    ),
]
