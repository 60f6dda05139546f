"""The callback base class and the list that dispatches hooks to callbacks."""

from __future__ import annotations

from typing import Any, Iterable, Optional

from ..errors import add_note

__all__ = ["Callback", "CallbackList"]

HOOKS = (
    "on_fit_begin",
    "on_fit_end",
    "on_epoch_begin",
    "on_epoch_end",
    "on_train_batch_begin",
    "on_train_batch_end",
    "on_val_batch_begin",
    "on_val_batch_end",
    "on_val_begin",
    "on_val_end",
)
BATCH_HOOKS = tuple(h for h in HOOKS if "batch" in h)


class Callback:
    """Base class for objects that react to the training loop.

    Override only the hooks you need. Batch hooks are dispatched only to callbacks
    whose class overrides them, so an unused hook costs nothing per step.
    A callback instance may be passed to several ``fit`` calls; hooks that keep
    state should reset it in ``on_fit_begin``.

    Attributes:
        model: the ``KerasModel`` running the loop, set before ``on_fit_begin``.

    Example:
        >>> class PrintEpochs(Callback):
        ...     def on_epoch_end(self, epoch, logs=None):
        ...         print(epoch, sorted(logs))
        >>> PrintEpochs().on_epoch_end(1, {"train_loss": 0.5, "epoch": 1})
        1 ['epoch', 'train_loss']
    """

    model: Any = None

    def set_model(self, model: Any) -> None:
        self.model = model

    @property
    def state_key(self) -> str:
        """The name this callback's state is saved under in the resumable state.

        Resume matches saved states by this key, not by position, so adding or
        removing other callbacks (``plot=True`` on resume, say) loses nothing. The
        default is the class name; callbacks that can appear several times with
        different settings include those settings (as ``ModelCheckpoint`` does
        with its file and monitor). Equal keys are numbered in list order.
        """
        return type(self).__qualname__

    def uses_hook(self, hook: str) -> bool:
        """Whether this instance needs ``hook`` called, given that its class overrides it.

        A class whose batch hook only matters for some settings returns False for the
        others, so the loop does not call it per batch (the default: True).
        """
        return True

    def is_writer(self) -> bool:
        """True on the process that writes files and draws: the main one, or any
        process when the callback is used without a model."""
        return self.model is None or getattr(self.model, "is_main_process", True)

    def history_rows(self) -> list:
        """The rows of this fit's finished epochs, from the model's one :class:`History`.

        Callbacks that need earlier epochs (a CSV file, a plot) read them here
        rather than keeping a copy, so the rows exist once and are saved once.
        """
        history = getattr(self.model, "history_callback", None)
        if history is None:
            raise ValueError(f"{type(self).__name__} needs a model with a History "
                             "(model.history_callback), which fit provides; received "
                             f"{type(self.model).__name__}")
        return history.rows

    def state_dict(self) -> dict:
        """What a resumed ``fit`` needs to continue this callback exactly (tensors and
        plain values only). Stateless callbacks keep the default, an empty dict."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`'s output; called after ``on_fit_begin`` on resume."""

    def on_fit_begin(self, logs: Optional[dict] = None) -> None:
        """Called once before the first epoch."""

    def on_fit_end(self, logs: Optional[dict] = None) -> None:
        """Called once after the last epoch, also after an error or interrupt.

        ``logs`` holds ``epochs_completed``, ``stopped_early``, ``interrupted`` and
        ``error`` (the exception ending the fit, or None).
        """

    def on_epoch_begin(self, epoch: int, logs: Optional[dict] = None) -> None:
        """Called at the start of each epoch (1-based)."""

    def on_epoch_end(self, epoch: int, logs: Optional[dict] = None) -> None:
        """Called with the epoch's complete row of floats."""

    def on_train_batch_begin(self, step: int, logs: Optional[dict] = None) -> None:
        """Called before each training step (0-based within the epoch)."""

    def on_train_batch_end(self, step: int, logs: Optional[dict] = None) -> None:
        """Called after each training step; ``logs`` values may be device tensors."""

    def on_val_begin(self, epoch: int, logs: Optional[dict] = None) -> None:
        """Before the validation pass of ``epoch`` (after its training pass; only on epochs
        that validate). ``logs`` holds the epoch's training logs."""

    def on_val_end(self, epoch: int, logs: Optional[dict] = None) -> None:
        """After the validation pass of ``epoch``, before ``on_epoch_end``; ``logs`` holds
        the validation logs."""

    def on_val_batch_begin(self, step: int, logs: Optional[dict] = None) -> None:
        """Called before each validation step."""

    def on_val_batch_end(self, step: int, logs: Optional[dict] = None) -> None:
        """Called after each validation step; ``logs`` values may be device tensors."""


def _overrides(callback: Callback, hook: str) -> bool:
    if getattr(type(callback), hook, None) is getattr(Callback, hook):
        return False
    return callback.uses_hook(hook)


class CallbackList:
    """Dispatches each hook to the callbacks that override it, in order.

    An exception raised by a callback propagates unchanged, with a note naming
    the callback and the hook.
    """

    def __init__(self, callbacks: Iterable[Callback] = (), model: Any = None):
        self.callbacks = list(callbacks)
        for cb in self.callbacks:
            if not isinstance(cb, Callback):
                raise TypeError(
                    "callbacks must be kerastorch.callbacks.Callback instances; "
                    f"received {type(cb).__name__}: {cb!r}"
                )
            if model is not None:
                cb.set_model(model)
        self._by_hook = {h: [cb for cb in self.callbacks if _overrides(cb, h)] for h in HOOKS}

    def wants(self, hook: str) -> bool:
        """Whether any callback overrides ``hook`` (lets the loop skip batch hooks)."""
        return bool(self._by_hook[hook])

    def call(self, hook: str, *args: Any) -> None:
        copy_logs = hook not in BATCH_HOOKS and args and isinstance(args[-1], dict)
        for cb in self._by_hook[hook]:
            # a copy each: a callback that edits its logs cannot change what others see
            call_args = (*args[:-1], dict(args[-1])) if copy_logs else args
            try:
                getattr(cb, hook)(*call_args)
            except BaseException as exc:
                add_note(exc, f"raised in callback {type(cb).__name__}.{hook}")
                raise

    def __iter__(self):
        return iter(self.callbacks)

    def state_keys(self) -> list:
        """Each callback's :attr:`Callback.state_key`, numbered where two are equal."""
        keys, seen = [], {}
        for cb in self.callbacks:
            key = cb.state_key
            seen[key] = seen.get(key, 0) + 1
            keys.append(key if seen[key] == 1 else f"{key}#{seen[key]}")
        return keys

    def state_dict(self) -> dict:
        """``{state_key: state}`` for every callback that has state."""
        states = {key: cb.state_dict() for key, cb in zip(self.state_keys(), self.callbacks)}
        return {key: state for key, state in states.items() if state}

    def load_state_dict(self, states: dict) -> list:
        """Give each callback its saved state by key; return the callbacks left without one."""
        fresh = []
        for key, cb in zip(self.state_keys(), self.callbacks):
            if key in states:
                cb.load_state_dict(states[key])
            elif cb.state_dict():
                fresh.append(key)
        return fresh
