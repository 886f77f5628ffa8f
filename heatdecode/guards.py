"""The refusals every reader shares: :class:`LoadError` (one line, the reason),
the ``--max-map-bytes`` budget check, and reasons kept short. Standard library only.
"""

from __future__ import annotations


class LoadError(Exception):
    """Raised inside this module with a one-line reason; turned into LoadFailure."""


class Cancelled(LoadError):
    """The run was interrupted while this file was being read."""

    def __init__(self) -> None:
        super().__init__("interrupted while being read")


def check_budget(need: int, limit: int, what: str = "the array would take") -> None:
    if need > limit:
        raise LoadError(
            f"refused: {what} {show_bytes(need)}, over the --max-map-bytes limit of "
            f"{show_bytes(limit)} (raise it with --max-map-bytes)"
        )


def short_reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def show_bytes(n: float) -> str:
    if n >= 1024**6 * 10**6:  # a header's absurd claim: int/int division could overflow a float
        return "over a million PB"
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if n < 1024 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")
