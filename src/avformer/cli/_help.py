"""Help texts from module docstrings: reST markup (``code``, :func:`name`) turned into plain text for argparse."""

from __future__ import annotations

import re

__all__ = ["plain"]

_ROLE = re.compile(r":(?:func|class|mod|meth|data|attr|exc|obj):`(~?)([^`]+)`")


def plain(doc: str | None) -> str:
    """``doc`` without reST roles and literal quotes: ``:func:`~a.b.c``` -> ``c``, ``:mod:`a.b``` -> ``a.b``,
    double backquotes dropped (the text inside stays)."""
    if not doc:
        return ""
    text = _ROLE.sub(lambda m: m.group(2).rsplit(".", 1)[-1] if m.group(1) else m.group(2), doc)
    return text.replace("``", "")
