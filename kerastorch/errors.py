"""Notes attached to exceptions raised by user code, so the traceback says where it ran."""

from __future__ import annotations

__all__ = ["add_note"]


def add_note(exc: BaseException, note: str) -> None:
    """Add ``note`` to ``exc`` once (Python 3.11+ shows it under the traceback; older: no-op).

    Example:
        >>> err = ValueError("bad")
        >>> add_note(err, "raised in metric 'acc'"); add_note(err, "raised in metric 'acc'")
        >>> getattr(err, "__notes__", ["raised in metric 'acc'"])
        ["raised in metric 'acc'"]
    """
    if hasattr(exc, "add_note") and note not in getattr(exc, "__notes__", ()):
        exc.add_note(note)
