"""Stored text is text: strings that came from a client or a config, made safe to print.

Clients name pipelines, datasets and teams and send errors, logs and comments; none of it is rich markup,
an emoji code or a command to the terminal. `safe()` turns such a string into a rich Text (never parsed as
markup): control characters and bidirectional overrides are shown escaped (`\\x1b`, `\\u202e`), right-to-left
text is isolated so it cannot reorder the row around it, and a table cell is cut with an ellipsis.
`console()` is the one way commands print: no markup, no emoji codes, no highlighting, and no wrapping at
80 columns when the output is piped.
"""
from __future__ import annotations

import os
import re
import unicodedata

from rich.console import Console
from rich.text import Text

CELL = 200  # characters of one table cell; json and csv carry the whole string

# C0 controls but newline and tab, DEL and C1, bidi embeddings/overrides/isolates and marks, line and
# paragraph separators, BOM, lone surrogates (which cannot even be encoded for the terminal)
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ufeff"
                     "\ud800-\udfff]")
_FSI, _PDI = "\u2068", "\u2069"  # first-strong isolate ... pop directional isolate


def _escape(m: re.Match[str]) -> str:
    c = ord(m[0])
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}"


def escaped(s: str) -> str:
    """`s` with every character that would act on the terminal (or the text's direction) spelled out."""
    return _UNSAFE.sub(_escape, s)


def _rtl(s: str) -> bool:
    return not s.isascii() and any(unicodedata.bidirectional(c) in ("R", "AL") for c in s)


def plain(s: object, limit: int | None = None) -> str:
    """A client's string as plain text for the terminal: escaped, cut at `limit` characters with an
    ellipsis, and isolated when it holds right-to-left text."""
    text = "" if s is None else str(s)
    if limit is not None and len(text) > limit:
        text = text[:limit - 1] + "…"
    text = escaped(text)
    return f"{_FSI}{text}{_PDI}" if _rtl(text) else text


def safe(s: object, limit: int | None = CELL, style: str = "") -> Text:
    """A client's string as a rich Text for a table or a line: see `plain`."""
    return Text(plain(s, limit), style=style)


def console(stderr: bool = False) -> Console:
    """The console commands print with. Piped output keeps its lines whole (COLUMNS still wins)."""
    out = Console(stderr=stderr, markup=False, emoji=False, highlight=False)
    if not out.is_terminal and "COLUMNS" not in os.environ:
        out = Console(stderr=stderr, markup=False, emoji=False, highlight=False, width=100_000)
    return out


def echo_error(message: str) -> None:
    """An error for stderr, in red on a terminal; the message may quote what a client or server sent."""
    console(stderr=True).print(Text(escaped(message), style="red"))


__all__ = ["CELL", "console", "echo_error", "escaped", "plain", "safe"]
