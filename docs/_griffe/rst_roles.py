"""
A griffe extension for the API reference: Sphinx roles in docstrings as inline code.

relaycall's docstrings are Google style, with Sphinx's cross-reference roles here and
there (``:class:`relaycall.Call```, ``:meth:`close```). Markdown has no such roles, so
mkdocstrings would print them as they are; this shows each as the name it refers to,
in code. (Links would need every name fully qualified: a relative ``:meth:`close```
cannot be resolved by the strict build.)
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:class|meth|func|attr|mod|exc|data|obj):`~?([^`]+)`")


class SphinxRolesAsCode(griffe.Extension):
    """Rewrite ``:role:`name``` as ```name``` in every docstring, as it is loaded."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _ROLE.sub(r"`\1`", obj.docstring.value)
