"""Keras's LambdaCallback: a callback made of plain functions, one per hook."""

from __future__ import annotations

import functools
from typing import Callable, Optional

from .base import HOOKS, Callback

__all__ = ["LambdaCallback"]

# Keras's hook names -> ours (Keras's "train" is the whole fit, its "test" our validation)
KERAS_NAMES = {
    "on_train_begin": "on_fit_begin",
    "on_train_end": "on_fit_end",
    "on_test_begin": "on_val_begin",
    "on_test_end": "on_val_end",
    "on_test_batch_begin": "on_val_batch_begin",
    "on_test_batch_end": "on_val_batch_end",
}


class LambdaCallback(Callback):
    """A callback built from functions, as in Keras: ``LambdaCallback(on_epoch_end=f)``.

    Each function is called with the hook's arguments: ``(logs)`` for the fit hooks,
    ``(epoch, logs)`` for the epoch and validation-pass hooks (epochs are 1-based),
    ``(step, logs)`` for the batch hooks (steps 0-based within the epoch; batch
    ``logs`` values may be device tensors). Only the hooks given are dispatched: an
    instance's class overrides exactly those, so a batch hook that was not given
    costs nothing per step (the loop skips hooks nobody overrides).

    Keras's names are accepted too: ``on_train_begin``/``on_train_end`` are our
    ``on_fit_begin``/``on_fit_end`` (Keras's "train" means the whole fit), and
    ``on_test_begin``/``on_test_end``/``on_test_batch_begin``/``on_test_batch_end``
    are the ``on_val_...`` hooks around ``fit``'s validation pass.

    Args:
        on_fit_begin: called with ``(logs)`` before the first epoch. Defaults to None.
        on_fit_end: called with ``(logs)`` after the fit. Defaults to None.
        on_epoch_begin: called with ``(epoch, logs)``. Defaults to None.
        on_epoch_end: called with ``(epoch, logs)``, the epoch's row. Defaults to None.
        on_train_batch_begin: called with ``(step, logs)``. Defaults to None.
        on_train_batch_end: called with ``(step, logs)``. Defaults to None.
        on_val_batch_begin: called with ``(step, logs)``. Defaults to None.
        on_val_batch_end: called with ``(step, logs)``. Defaults to None.
        on_val_begin: called with ``(epoch, logs)`` before the validation pass.
            Defaults to None.
        on_val_end: called with ``(epoch, logs)`` after it. Defaults to None.
        **keras_names: Keras's names above, each mapped to ours.

    Attributes:
        functions: ``{our hook name: function}`` of the hooks given.

    Raises:
        TypeError: a hook that is not callable (naming it), or an unknown keyword.
        ValueError: one hook given under both names (``on_train_begin`` and
            ``on_fit_begin``).

    Example:
        >>> seen = []
        >>> cb = LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(epoch),
        ...                     on_train_begin=lambda logs: seen.append("begin"))
        >>> cb.on_fit_begin({}); cb.on_epoch_end(1, {"train_loss": 0.5}); seen
        ['begin', 1]
        >>> sorted(cb.functions)
        ['on_epoch_end', 'on_fit_begin']
    """

    def __new__(cls, *args, **kwargs):
        # the per-set-of-hooks subclass that overrides exactly the hooks given, so the
        # CallbackList (which dispatches by override) sends nothing else to it
        names = frozenset(KERAS_NAMES.get(k, k) for k, v in kwargs.items()
                          if v is not None and KERAS_NAMES.get(k, k) in HOOKS)
        return super().__new__(_class_for(cls, names))

    def __init__(self, *, on_fit_begin: Optional[Callable] = None,
                 on_fit_end: Optional[Callable] = None,
                 on_epoch_begin: Optional[Callable] = None,
                 on_epoch_end: Optional[Callable] = None,
                 on_train_batch_begin: Optional[Callable] = None,
                 on_train_batch_end: Optional[Callable] = None,
                 on_val_batch_begin: Optional[Callable] = None,
                 on_val_batch_end: Optional[Callable] = None,
                 on_val_begin: Optional[Callable] = None,
                 on_val_end: Optional[Callable] = None, **keras_names: Optional[Callable]):
        given = {name: value for name, value in locals().items() if name in HOOKS}
        for keras_name, function in keras_names.items():
            if keras_name not in KERAS_NAMES:
                raise TypeError(
                    f"LambdaCallback() got an unexpected keyword argument {keras_name!r}; "
                    f"expected one of {sorted([*HOOKS, *KERAS_NAMES])}")
            ours = KERAS_NAMES[keras_name]
            if function is not None and given[ours] is not None:
                raise ValueError(f"LambdaCallback got both {keras_name} (Keras's name) and "
                                 f"{ours}, which are the same hook; pass one of them")
            if function is not None:
                given[ours] = function
        for name, function in given.items():
            if function is not None and not callable(function):
                raise TypeError(f"LambdaCallback's {name} must be a callable or None; "
                                f"received {type(function).__name__}: {function!r}")
        self.functions = {name: f for name, f in given.items() if f is not None}

    @property
    def state_key(self) -> str:
        return "LambdaCallback"

    def __repr__(self) -> str:
        return f"LambdaCallback({', '.join(sorted(self.functions))})"

    def __reduce__(self):
        # the per-hooks subclass has no importable name: pickle the class it was made from
        base = next(c for c in type(self).__mro__ if c.__dict__.get("_hook_class") is not True)
        return _rebuild, (base, self.functions, dict(self.__dict__))


def _dispatch(hook: str):
    if hook in ("on_fit_begin", "on_fit_end"):
        def method(self, logs=None):
            return self.functions[hook](logs)
    else:
        def method(self, index, logs=None):
            return self.functions[hook](index, logs)
    method.__name__ = method.__qualname__ = hook
    return method


def _rebuild(base: type, functions: dict, attributes: dict) -> LambdaCallback:
    """Unpickle: the subclass is made again from its hooks, not looked up by name."""
    callback = object.__new__(_class_for(base, frozenset(functions)))
    callback.__dict__.update(attributes)
    return callback


@functools.lru_cache(maxsize=None)
def _class_for(base: type, hooks: frozenset) -> type:
    """A subclass of ``base`` overriding ``hooks`` only; one class per set, made once."""
    if not hooks:
        return base
    methods = {hook: _dispatch(hook) for hook in sorted(hooks)}
    return type(base.__name__, (base,), {**methods, "_hook_class": True,
                                         "__qualname__": base.__qualname__,
                                         "__module__": base.__module__})
