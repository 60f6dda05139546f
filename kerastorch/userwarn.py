"""Warnings that point at the user's line: the first frame outside the kerastorch package.

A warning raised deep inside ``fit`` (the first-batch loss checks run five or six
frames below it) is only useful if it names the line the user wrote. Counting
those frames by hand breaks whenever a frame is added or removed, so the level
is computed by walking out of the package's own files instead.

Example:
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warn_user("the net already ends in softmax")
    >>> caught[0].filename.endswith("userwarn.py")  # this example runs outside kerastorch
    False
"""

from __future__ import annotations

import os
import sys
import warnings
from types import FrameType
from typing import Optional, Type

__all__ = ["user_stacklevel", "warn_user"]

_PACKAGE_DIR = os.path.normcase(os.path.dirname(os.path.abspath(__file__))) + os.sep


def _inside_package(frame: FrameType) -> bool:
    filename = os.path.normcase(os.path.abspath(frame.f_code.co_filename))
    return filename.startswith(_PACKAGE_DIR)


def user_stacklevel(frame: Optional[FrameType] = None) -> int:
    """Returns the ``stacklevel`` that makes a warning point at the first frame outside kerastorch.

    The level is counted the way :func:`warnings.warn` counts it: 1 is the frame
    that calls ``warnings.warn``. Python 3.12's ``skip_file_prefixes`` does the
    same walk, but the package supports older versions.

    Args:
        frame: The frame that will call ``warnings.warn``. Defaults to None, the
            caller of this function.

    Returns:
        The stack level, at least 1; when every frame lies inside kerastorch, a
        level past the outermost frame (``warnings.warn`` then reports ``sys``).

    Example:
        >>> user_stacklevel()  # called from outside kerastorch: the caller itself
        1
    """
    if frame is None:
        frame = sys._getframe(1)
    level = 1
    while frame is not None and _inside_package(frame):
        frame = frame.f_back
        level += 1
    return level


def warn_user(
    message: str,
    category: Type[Warning] = UserWarning,
    *,
    stacklevel: Optional[int] = None,
) -> None:
    """Issues a warning attributed to the user's code rather than to kerastorch's.

    Args:
        message: The warning text.
        category: The warning class. Defaults to UserWarning.
        stacklevel: None to point at the first frame outside kerastorch; an int
            counts frames as :func:`warnings.warn` does, from the caller of
            ``warn_user`` (1 is the caller itself). Defaults to None.

    Example:
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     warn_user("raw logits expected", RuntimeWarning)
        >>> caught[0].category.__name__
        'RuntimeWarning'
    """
    # This frame lies inside the package, so the walk from it already skips it; an explicit
    # level is shifted by one for the same frame.
    level = user_stacklevel(sys._getframe(0)) if stacklevel is None else stacklevel + 1
    warnings.warn(message, category, stacklevel=level)
