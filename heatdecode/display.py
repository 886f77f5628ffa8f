r"""Text fit for one line of a terminal: :func:`display_name`.

Standard library only, so the CLI prints names before it imports anything heavy.
"""

from __future__ import annotations

import unicodedata


def display_name(name: str) -> str:
    r"""A file name (or any text) fit for one line of a terminal: nothing in it
    can move the cursor, recolour the screen, retitle the window or reorder
    the text around it.

    Escaped: C0 and C1 control characters and DEL (``\n``, ``\x1b``, ``\x9b``),
    Unicode format characters such as the bidi overrides (``\u202e``), line and
    paragraph separators, and undecodable bytes (``\xff``, as the CSV writes
    them). Everything else, ``ü`` and ``[bold]`` included, is shown as it is
    (consoles print with markup and emoji codes off).

    Example:
        >>> display_name("two\nlines.npy"), display_name("caf\udce9.npy")
        ('two\\nlines.npy', 'caf\\xe9.npy')
        >>> display_name("\x1b]0;PWNED\x07a\u202eb.npy")
        '\\x1b]0;PWNED\\x07a\\u202eb.npy'
    """
    return "".join(_display_char(char) for char in name)


def _display_char(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that os.fsdecode couldn't decode
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x20 or 0x7F <= code <= 0x9F:
        return repr(char)[1:-1] if char in "\t\n\r" else f"\\x{code:02x}"
    if unicodedata.category(char) in _INVISIBLE:
        return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"
    return char


# format characters (bidi overrides, zero-width joiners...), separators, lone
# surrogates and unassigned or private code points: none is safe to show raw
_INVISIBLE = frozenset({"Cf", "Zl", "Zp", "Cs", "Co", "Cn"})
