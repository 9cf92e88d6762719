"""Shared numpydoc fragments: one wording for one parameter, as scipy.ndimage does.

A public function writes ``{image}``, ``{mode}``, ... on a line of its own in the
Parameters section and is decorated with :func:`docfiller`; the fragment is
inserted with the docstring's indentation. Other braces in a docstring are left
alone.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Callable
from typing import TypeVar

F = TypeVar("F", bound=Callable)

FRAGMENTS = {
    "image": """image : ndarray or Volume
    2-D ``(y, x)`` or 3-D ``(z, y, x)`` input, in memory or in an archive.""",
    "mode": """mode : {'reflect', 'mirror', 'nearest', 'constant', 'wrap'}
    How the input is extended past its edges, as in scipy.ndimage
    (default ``'reflect'``).""",
    "cval": """cval : float
    Fill value past the edges when ``mode='constant'``.""",
    "spacing": """spacing : sequence of float, optional
    Voxel size in mm per axis. When given, lengths (sigma, radius) are in mm;
    when omitted they are in voxels.""",
    "out": """out : ndarray or Volume, optional
    Where to write the result (same shape). An archive Volume is filled block by
    block, so volumes larger than memory stream through. Default: a new array.""",
}

_PLACEHOLDER = re.compile(r"^(?P<indent>[ \t]*)\{(?P<name>\w+)\}[ \t]*$", re.MULTILINE)


def fill(doc: str) -> str:
    """``doc`` with every line holding only ``{name}`` replaced by its fragment."""

    def replace(match: re.Match) -> str:
        name = match.group("name")
        if name not in FRAGMENTS:
            raise KeyError(f"no docstring fragment named {name!r}")
        return textwrap.indent(FRAGMENTS[name], match.group("indent"))

    return _PLACEHOLDER.sub(replace, doc)


def docfiller(func: F) -> F:
    """Decorator: fill the shared fragments into ``func``'s docstring.

    Examples
    --------
    >>> @docfiller
    ... def f(image):
    ...     '''Parameters
    ...     ----------
    ...     {image}
    ...     '''
    >>> "2-D ``(y, x)``" in f.__doc__
    True
    """
    if func.__doc__:
        func.__doc__ = fill(func.__doc__)
    return func
