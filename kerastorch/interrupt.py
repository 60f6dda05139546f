"""Ctrl-C during fit: the first stops after the current batch, the second aborts at once."""

from __future__ import annotations

import signal
import sys
import threading

__all__ = ["InterruptGuard", "AbortTraining"]


class AbortTraining(KeyboardInterrupt):
    """A second Ctrl-C: fit re-raises it instead of stopping cleanly."""


class InterruptGuard:
    """Installs a SIGINT handler for the duration of a ``with`` block.

    The first SIGINT only sets :attr:`requested`; the epoch loop checks it after
    each batch (a bool read, no cost) and stops there, so an optimizer step is
    never cut in half. A second SIGINT raises :class:`AbortTraining` immediately.
    The handler is installed only in the main thread and only when SIGINT still has
    Python's default handler, so a user's own handler is left alone.
    """

    def __init__(self, message: bool = True):
        self.requested = False
        self.message = message
        self._previous = None

    def _handler(self, signum, frame):
        if self.requested:
            raise AbortTraining("second interrupt: training aborted")
        self.requested = True
        if self.message:
            print("\nInterrupted: stopping after this batch (Ctrl-C again to abort now).",
                  file=sys.stderr, flush=True)

    def __enter__(self):
        self.requested = False
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            self._previous = signal.signal(signal.SIGINT, self._handler)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None
        return False
