"""One type for every failure a run reports: :class:`Failure`, with a
machine-readable ``kind``. Standard library only (the loaders use it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: the reason's start of an overlay failure; with ``kind`` not stored in the
#: JSON, it tells an overlay failure read back by ``--resume``
OVERLAY_FAILED = "overlay not written"

FAILURE_KINDS = ("unreadable", "missing", "skipped", "overlay")


@dataclass(frozen=True)
class Failure:
    """A file (or ``.npz`` member) that gave no result, or no overlay, and why.

    ``kind`` says what happened, for code (``reason`` is for people):
    ``"unreadable"`` (read and refused), ``"missing"`` (an argument that doesn't
    exist), ``"skipped"`` (a FIFO, socket or device a folder scan found and did
    not open) or ``"overlay"`` (decoded, but its overlay could not be written).
    ``source`` is the input file it belongs to (``name`` when not set).
    """

    name: str
    reason: str
    kind: str = "unreadable"
    source: str | None = None

    def entry(self) -> dict[str, Any]:
        """The failure's ``coordinates.json`` entry."""
        return {"file": self.name, "source": self.source or self.name, "reason": self.reason}

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> Failure:
        """A failure read back from a JSON entry (which keeps no kind: an overlay
        failure is told by its reason)."""
        reason = str(entry.get("reason", ""))
        kind = "overlay" if reason.startswith(OVERLAY_FAILED) else "unreadable"
        return cls(str(entry["file"]), reason, kind, str(entry["source"]))

    @property
    def counts_as_failed_file(self) -> bool:
        """Whether it counts among a run's failed files (an overlay failure doesn't)."""
        return self.kind != "overlay"
