"""Griffe extension for the docs site: Sphinx roles in docstrings become code spans.

kerastorch's docstrings are Google style but name objects with Sphinx roles
(``:class:`StepRunner```, ``:func:`~kerastorch.experiments.compare_losses```),
which Markdown would show literally. Each becomes the code span of its target
(a leading ``~`` keeps only the last dotted part, as Sphinx does).
"""

from __future__ import annotations

import re

import griffe

ROLE = re.compile(r":(?:class|meth|func|mod|attr|data|exc|obj):`(~?)([^`]+)`")


def plain(text: str) -> str:
    """``text`` with every Sphinx role replaced by a code span of its target."""
    return ROLE.sub(lambda m: f"`{m.group(2).rsplit('.', 1)[-1] if m.group(1) else m.group(2)}`",
                    text)


class SphinxRolesToCode(griffe.Extension):
    """Rewrite the docstring of every loaded object (modules, classes, functions, attributes)."""

    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = plain(obj.docstring.value)
