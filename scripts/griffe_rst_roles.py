"""Griffe extension for the API reference (mkdocs.yml): reST inline markup -> Markdown.

nowcast's docstrings are numpydoc written for reST (``:class:`~nowcast.grid.RegionGrid```,
``Usage::``), while mkdocstrings renders docstring text as Markdown. Without this
extension the roles show up verbatim (":class:" followed by a code span). The
extension rewrites, before rendering and without touching the source files:

* ``:role:`~pkg.mod.Name``` -> ```Name``` and ``:role:`pkg.mod.Name``` -> ```pkg.mod.Name```
  (also ``:role:`text <target>``` -> ```text```); roles are rendered as code, not as
  links, so a reference to a module the API page does not show is never a broken link;
* a paragraph ending in ``::`` (a reST literal block follows) -> ending in ``:``
  (the indented block itself is already a Markdown code block).

Double backticks (````code````) are valid Markdown code spans and stay as they are.
Loaded by mkdocstrings-python through ``options.extensions`` in ``mkdocs.yml``.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

#: ``:role:`target``` (optionally ``:py:role:``); group 2 is the target text.
_ROLE = re.compile(r":(?:py:)?(class|func|meth|data|attr|mod|exc|obj|const|term|ref|doc):`([^`]+)`")
#: ``text <target>`` inside a role.
_TITLED = re.compile(r"^(.*?)\s*<[^>]+>$")
#: A line ending in ``::`` that introduces a literal block (not ``a::b``).
_LITERAL_INTRO = re.compile(r"(\S)::$", re.MULTILINE)


def _role(match: re.Match[str]) -> str:
    text = match.group(2).strip()
    titled = _TITLED.match(text)
    if titled:
        text = titled.group(1)
    elif text.startswith("~"):
        text = text[1:].rsplit(".", 1)[-1]
    elif text.startswith("."):
        text = text.lstrip(".")
    return f"`{text}`"


def rst_to_markdown(text: str) -> str:
    """Rewrite the reST inline markup nowcast's docstrings use into Markdown."""
    text = _ROLE.sub(_role, text)
    return _LITERAL_INTRO.sub(r"\1:", text)


class RstRoles(griffe.Extension):
    """Rewrite every docstring of the loaded packages (see the module docstring)."""

    def on_object(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = rst_to_markdown(obj.docstring.value)
