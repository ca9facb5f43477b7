"""Griffe extension for the API pages: the docstrings' reST markup read as Markdown.

The docstrings are written for ``help()`` and argparse as much as for the site: Google sections, ``code`` in double
backquotes (already Markdown code), and Sphinx roles such as :func:`avformer.load` or :class:`~a.b.C`, which
Markdown would print as they are. This turns each role into code (``~`` keeps the last name, as Sphinx does) and a
reST ``text::`` before an indented block into ``text:``. Loaded by mkdocs.yml (mkdocstrings' ``extensions``).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:func|class|mod|meth|data|attr|exc|obj|const|ref|term):`(~?)([^`]+)`")
_LITERAL = re.compile(r"(\S)::$", re.M)


def markdown_of(text: str) -> str:
    text = _ROLE.sub(lambda m: "`" + (m.group(2).rsplit(".", 1)[-1] if m.group(1) else m.group(2)) + "`", text)
    return _LITERAL.sub(r"\1:", text)


class ReSTRoles(griffe.Extension):
    """Rewrites every docstring once, when its object is loaded."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown_of(obj.docstring.value)
