"""LambdaCallback: plain functions as hooks, Keras's names, only the given hooks dispatched."""

import pickle

import pytest
from conftest import TinyNet, loader, make_classification
from torch import nn

from kerastorch import KerasModel
from kerastorch.callbacks import Callback, CallbackList
from kerastorch.callbacks.base import HOOKS
from kerastorch.callbacks.lambda_callback import LambdaCallback


def _fit(callbacks, epochs=2, n=32, batch_size=16, val=True):
    x, y = make_classification(n=n)
    model = KerasModel(TinyNet(), nn.CrossEntropyLoss())
    return model.fit(loader(x, y, batch_size=batch_size),
                     loader(x, y, batch_size=batch_size) if val else None, epochs=epochs,
                     ckpt_path=None, patience=None, quiet=True, callbacks=callbacks)


def test_each_function_gets_its_hooks_arguments_during_a_fit():
    calls = []
    cb = LambdaCallback(
        on_train_begin=lambda logs: calls.append(("fit_begin", logs)),
        on_epoch_begin=lambda epoch, logs: calls.append(("epoch_begin", epoch)),
        on_train_batch_end=lambda step, logs: calls.append(("batch_end", step, sorted(logs))),
        on_test_begin=lambda epoch, logs: calls.append(("val_begin", epoch)),
        on_epoch_end=lambda epoch, logs: calls.append(("epoch_end", epoch, logs["train_loss"])),
        on_fit_end=lambda logs: calls.append(("fit_end", logs["epochs_completed"])))
    df = _fit([cb], epochs=2, n=32, batch_size=16)
    assert calls == [
        ("fit_begin", {}),
        ("epoch_begin", 1), ("batch_end", 0, ["train_loss"]), ("batch_end", 1, ["train_loss"]),
        ("val_begin", 1), ("epoch_end", 1, df.train_loss[0]),
        ("epoch_begin", 2), ("batch_end", 0, ["train_loss"]), ("batch_end", 1, ["train_loss"]),
        ("val_begin", 2), ("epoch_end", 2, df.train_loss[1]),
        ("fit_end", 2),
    ]


def test_only_the_given_hooks_are_dispatched():
    cb = LambdaCallback(on_train_batch_end=lambda step, logs: None)
    cbs = CallbackList([cb])
    assert {hook for hook in HOOKS if cbs.wants(hook)} == {"on_train_batch_end"}
    # nothing given: the plain class, which overrides nothing
    empty = LambdaCallback()
    assert type(empty) is LambdaCallback
    assert not any(CallbackList([empty]).wants(hook) for hook in HOOKS)
    # one class per set of hooks, made once, never changed by another instance
    other = LambdaCallback(on_val_batch_begin=lambda step, logs: None)
    assert type(LambdaCallback(on_train_batch_end=print)) is type(cb)
    assert type(other) is not type(cb) and not CallbackList([cb]).wants("on_val_batch_begin")
    assert isinstance(cb, LambdaCallback) and type(cb).__name__ == "LambdaCallback"
    assert cb.state_key == "LambdaCallback" and cb.state_dict() == {}


def test_keras_names_map_to_ours():
    functions = {keras: (lambda *args: None) for keras in
                 ("on_train_begin", "on_train_end", "on_test_begin", "on_test_end",
                  "on_test_batch_begin", "on_test_batch_end")}
    cb = LambdaCallback(**functions)
    assert cb.functions == {
        "on_fit_begin": functions["on_train_begin"], "on_fit_end": functions["on_train_end"],
        "on_val_begin": functions["on_test_begin"], "on_val_end": functions["on_test_end"],
        "on_val_batch_begin": functions["on_test_batch_begin"],
        "on_val_batch_end": functions["on_test_batch_end"]}
    assert {h for h in HOOKS if CallbackList([cb]).wants(h)} == set(cb.functions)


def test_hooks_may_be_called_without_logs_as_the_base_class_allows():
    seen = []
    cb = LambdaCallback(on_fit_begin=seen.append, on_epoch_end=lambda e, logs: seen.append(e))
    cb.on_fit_begin()
    cb.on_epoch_end(3)
    cb.on_epoch_begin(4)  # not given: the base class's no-op
    assert seen == [None, 3]


def test_misuse_errors_name_the_argument():
    with pytest.raises(TypeError, match=r"on_epoch_end must be a callable or None; "
                                        r"received int: 3"):
        LambdaCallback(on_epoch_end=3)
    with pytest.raises(TypeError, match="on_fit_begin must be a callable"):
        LambdaCallback(on_train_begin="print")
    with pytest.raises(ValueError, match="both on_train_end .* and on_fit_end"):
        LambdaCallback(on_train_end=print, on_fit_end=print)
    with pytest.raises(TypeError, match="unexpected keyword argument 'on_batch_end'"):
        LambdaCallback(on_batch_end=print)
    with pytest.raises(TypeError):
        LambdaCallback(print)  # keyword-only


def test_an_error_in_a_function_propagates_with_a_note():
    def boom(epoch, logs):
        raise RuntimeError(f"boom at {epoch}")

    with pytest.raises(RuntimeError, match="boom at 1") as info:
        _fit([LambdaCallback(on_epoch_end=boom)], epochs=2)
    assert "raised in callback LambdaCallback.on_epoch_end" in info.value.__notes__


def _record_epoch(epoch, logs):
    _record_epoch.seen.append(epoch)


_record_epoch.seen = []


def test_pickles_and_keeps_its_hooks():
    cb = pickle.loads(pickle.dumps(LambdaCallback(on_epoch_end=_record_epoch)))
    assert type(cb) is type(LambdaCallback(on_epoch_end=print))
    cb.on_epoch_end(7, {})
    assert _record_epoch.seen == [7]


def test_a_subclass_keeps_its_own_hooks():
    class Counting(LambdaCallback):
        def on_epoch_begin(self, epoch, logs=None):
            self.begun = epoch

    cb = Counting(on_epoch_end=lambda epoch, logs: None)
    assert isinstance(cb, Counting) and isinstance(cb, Callback)
    cb.on_epoch_begin(2)
    assert cb.begun == 2
    assert {h for h in HOOKS if CallbackList([cb]).wants(h)} == {"on_epoch_begin",
                                                                  "on_epoch_end"}
