"""The hint a registry gives for a name it does not know."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["unknown_name_hint"]


def unknown_name_hint(name: str, known: Iterable[str]) -> str:
    """``did you mean 'a', 'b'?`` for close names (up to 3), else ``registered: a, b, c`` (all of them, sorted)."""
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    return f"did you mean {', '.join(map(repr, close))}?" if close else f"registered: {', '.join(known)}"
