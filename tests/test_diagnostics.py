"""First-batch diagnostics: warnings at the user's line, the unified loss-value messages, the helpers."""

import ast
import inspect
import warnings
from pathlib import Path

import pytest
import torch
from conftest import TinyNet, loader, make_classification
from torch import nn

import kerastorch.diagnostics as diagnostics
from kerastorch import KerasModel, StepRunner, compare_losses
from kerastorch.losses import check_loss
from kerastorch.userwarn import user_stacklevel, warn_user


class SoftmaxNet(TinyNet):
    """Ends in softmax, which CrossEntropyLoss then applies log_softmax to again."""

    def forward(self, x):
        return super().forward(x).softmax(dim=1)


def _next_line():
    return inspect.currentframe().f_back.f_lineno + 1


def _recorded(kind, fn):
    """Runs fn recording every warning and returns those whose message contains kind."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fn()
    return [w for w in caught if kind in str(w.message)]


# ---------------------------------------------------------------------------
# warnings point at the user's line
# ---------------------------------------------------------------------------
def test_first_batch_warning_of_fit_points_at_the_users_fit_line():
    x, y = make_classification(n=32)
    model = KerasModel(SoftmaxNet(), nn.CrossEntropyLoss())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = _next_line()
        model.fit(loader(x, y, 8), epochs=1, ckpt_path=None, quiet=True)
    softmax = [w for w in caught if "rows sum to 1" in str(w.message)]
    assert len(softmax) == 1
    assert (softmax[0].filename, softmax[0].lineno) == (__file__, line)


def test_check_loss_called_directly_warns_at_the_callers_line():
    logits, target = torch.randn(4, 3, requires_grad=True), torch.tensor([0, 2, 1, 0])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = _next_line()
        check_loss(nn.CrossEntropyLoss(), logits.softmax(dim=1), target)
    assert [(w.filename, w.lineno) for w in caught] == [(__file__, line)]


def test_warning_through_another_kerastorch_entry_point_points_at_that_call():
    x, y = make_classification(n=32)
    calls = {}

    def run():
        calls["line"] = _next_line()
        compare_losses(SoftmaxNet, {"ce": nn.CrossEntropyLoss()}, (x, y), (x, y), epochs=1)

    softmax = _recorded("rows sum to 1", run)
    assert softmax and {(w.filename, w.lineno) for w in softmax} == {(__file__, calls["line"])}


def test_non_finite_loss_of_an_overridden_compute_loss_warns_at_the_fit_line():
    class NanStep(StepRunner):
        def compute_loss(self, preds, labels):
            return nn.functional.cross_entropy(preds, labels) * float("nan")

    x, y = make_classification(n=16)
    model = KerasModel(TinyNet(), nn.CrossEntropyLoss(), step_runner=NanStep)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = _next_line()
        model.fit(loader(x, y, 8), epochs=1, ckpt_path=None, quiet=True)
    nan = [w for w in caught if "NanStep.compute_loss returned a non-finite loss" in str(w.message)]
    assert [(w.filename, w.lineno) for w in nan] == [(__file__, line)]


def test_warn_user_with_an_explicit_level_counts_from_its_caller():
    def helper():
        warn_user("explicit", stacklevel=2)  # 1 is helper, 2 the line that calls it

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = _next_line()
        helper()
    assert [(w.filename, w.lineno) for w in caught] == [(__file__, line)]


def test_warn_user_without_a_level_points_at_the_first_frame_outside_kerastorch():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        line = _next_line()
        warn_user("walked")
    assert [(w.filename, w.lineno) for w in caught] == [(__file__, line)]
    assert user_stacklevel() == 1  # this test lies outside kerastorch


# ---------------------------------------------------------------------------
# the loss-value checks, shared with check_loss
# ---------------------------------------------------------------------------
def _fit_with(step_runner, loss_fn=None, net=None):
    x, y = make_classification(n=16)
    net = net or TinyNet()
    before = [p.detach().clone() for p in net.parameters()]
    model = KerasModel(net, loss_fn or nn.CrossEntropyLoss(), step_runner=step_runner)
    try:
        model.fit(loader(x, y, 8), epochs=1, ckpt_path=None, quiet=True)
    finally:
        assert all(torch.equal(p, b) for p, b in zip(net.parameters(), before))


@pytest.mark.parametrize("compute, exc, pattern", [
    (lambda p, t: nn.functional.cross_entropy(p, t, reduction="none"), ValueError,
     r"PerSample\.compute_loss returned a tensor of shape \(8,\); a training loss must be a scalar"),
    (lambda p, t: nn.functional.cross_entropy(p, t).detach().item(), TypeError,
     r"PerSample\.compute_loss must return a torch\.Tensor; received float"),
    (lambda p, t: nn.functional.cross_entropy(p.detach(), t), ValueError,
     r"no gradient path from the loss to the net: y_pred\.requires_grad is True but the loss "
     r"returned by PerSample\.compute_loss has requires_grad=False"),
])
def test_overridden_compute_loss_gets_check_loss_messages_before_any_update(compute, exc, pattern):
    class PerSample(StepRunner):
        def compute_loss(self, preds, labels):
            return compute(preds, labels)

    with pytest.raises(exc, match=pattern):
        _fit_with(PerSample)


def test_first_validation_loss_gets_the_reduction_none_message():
    x, y = make_classification(n=16)
    model = KerasModel(TinyNet(), nn.CrossEntropyLoss(reduction="none"))
    with pytest.raises(ValueError, match=r"CrossEntropyLoss has reduction='none' and returned "
                                         r"per-element losses of shape \(8,\)"):
        model.evaluate(loader(x, y, 8), quiet=True)


def test_a_loss_without_grad_fails_before_backward_even_when_nothing_else_shows_it():
    net = nn.Linear(4, 3).requires_grad_(False)
    preds, labels = net(torch.randn(8, 4)), torch.zeros(8, dtype=torch.long)
    loss_fn = nn.CrossEntropyLoss()
    # check_loss alone lets it pass: neither y_pred nor net says a gradient was expected
    assert not check_loss(loss_fn, preds, labels, net=net).requires_grad
    with pytest.raises(ValueError, match=r"the loss returned by CrossEntropyLoss has "
                                         r"requires_grad=False, so backward\(\) has nothing"):
        diagnostics.checked_first_loss(loss_fn, preds, labels, net=net, loss_fn=loss_fn)


def test_checked_first_loss_computes_the_loss_once_and_returns_it_attached():
    calls = []

    def compute_loss(preds, labels):
        calls.append(1)
        return nn.functional.cross_entropy(preds, labels)

    net = TinyNet()
    preds, labels = net(torch.randn(8, 4)), torch.zeros(8, dtype=torch.long)
    loss = diagnostics.checked_first_loss(compute_loss, preds, labels, net=net)
    assert calls == [1] and loss.requires_grad
    torch.testing.assert_close(loss, nn.functional.cross_entropy(preds, labels))


# ---------------------------------------------------------------------------
# the batch checks and describe
# ---------------------------------------------------------------------------
def test_batch_type_check_applies_to_the_default_unpack_and_forward_only():
    with pytest.raises(TypeError, match=r"the label \(last item\) is a list of int"):
        diagnostics.check_batch_types((torch.zeros(2),), [0, 1], custom_unpack=False)
    diagnostics.check_batch_types(({"x": 1},), "labels", custom_unpack=True)


def test_batch_size_check_ignores_non_tensors_and_scalars():
    diagnostics.check_batch_sizes(torch.zeros(4, 2), torch.zeros(()))
    diagnostics.check_batch_sizes([1, 2, 3], torch.zeros(4))
    with pytest.raises(ValueError, match=r"batch size 4 but the labels have 3"):
        diagnostics.check_batch_sizes(torch.zeros(4, 2), torch.zeros(3))


@pytest.mark.parametrize("value, expected", [
    (torch.zeros(2, 3, dtype=torch.float16), "a torch.float16 tensor of shape (2, 3)"),
    (["a", "b"], "a list of str"),
    ((), "a tuple"),
    (None, "a NoneType"),
])
def test_describe(value, expected):
    assert diagnostics.describe(value) == expected


def test_diagnostics_import_neither_the_runner_nor_the_model():
    tree = ast.parse(Path(diagnostics.__file__).read_text(encoding="utf-8"))
    modules = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert modules <= {"__future__", "typing", "collections.abc", "torch", "losses.misuse",
                       "batches"}


def test_fits_own_warnings_point_at_the_users_line_also_through_a_subclass(tmp_path):
    class MyModel(KerasModel):  # an extra frame between the user's line and kerastorch's
        def fit(self, *args, **kwargs):
            return super().fit(*args, **kwargs)

    x, y = make_classification(n=16)
    model = MyModel(TinyNet(), nn.CrossEntropyLoss())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(loader(x, y, 8), epochs=1, quiet=True, resume=True,
                  ckpt_path=str(tmp_path / "ck.pt"))
    (warning,) = [w for w in caught if "no state at" in str(w.message)]
    # the first frame outside the kerastorch package: the subclass's super().fit line
    assert warning.filename == __file__
    assert warning.lineno == MyModel.fit.__code__.co_firstlineno + 1
