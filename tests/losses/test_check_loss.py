"""check_loss: activation warnings, target checks per mode, non-scalar and detached losses."""

import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from loss_reference import class_batch

from kerastorch.losses import (
    CostSensitiveLoss,
    DiceLoss,
    FocalLoss,
    MultiClassFocalLoss,
    SCELoss,
    check_loss,
    with_regularization,
)
from kerastorch.losses.misuse import check_loss_value


def _logits_and_target(n=6, c=4, seed=27):
    z, y = class_batch(seed, (n, c))
    return torch.tensor(z, dtype=torch.float32, requires_grad=True), torch.from_numpy(y)


@pytest.mark.parametrize("loss_fn", [nn.CrossEntropyLoss(), MultiClassFocalLoss(), SCELoss(), CostSensitiveLoss(torch.ones(4, 4) - torch.eye(4))])
def test_check_loss_warns_on_log_softmax_outputs(loss_fn):
    logits, target = _logits_and_target()
    with pytest.warns(UserWarning, match=r"rows exponentiate to 1.*remove the log_softmax from the net's forward") as record:
        check_loss(loss_fn, F.log_softmax(logits, dim=1), target)
    assert record[0].filename == __file__  # stacklevel points at the caller
    if isinstance(loss_fn, nn.CrossEntropyLoss):
        assert "or use nn.NLLLoss" in str(record[0].message)


def test_check_loss_log_softmax_into_cross_entropy_is_redundant_not_wrong():
    logits, target = _logits_and_target()
    torch.testing.assert_close(F.cross_entropy(F.log_softmax(logits, 1), target), F.cross_entropy(logits, target))


@pytest.mark.parametrize("loss_fn", [nn.CrossEntropyLoss(), MultiClassFocalLoss()])
def test_check_loss_warns_on_softmax_outputs(loss_fn):
    logits, target = _logits_and_target()
    with pytest.warns(UserWarning, match=r"rows sum to 1.*remove the softmax from the net's forward") as record:
        check_loss(loss_fn, torch.softmax(logits, dim=1), target)
    assert record[0].filename == __file__


def test_softmax_warning_states_the_true_loss_floor():
    c = 4
    floor = math.log(1 + (c - 1) / math.e)
    perfect = torch.softmax(torch.tensor([[60.0, 0.0, 0.0, 0.0]]), dim=1)
    assert F.cross_entropy(perfect, torch.tensor([0])).item() == pytest.approx(floor, rel=1e-6)
    logits, target = _logits_and_target(c=c)
    with pytest.warns(UserWarning, match=rf"log\(1 \+ \(C-1\)/e\) = {floor:.3f} for C={c}"):
        check_loss(nn.CrossEntropyLoss(), torch.softmax(logits, 1), target)


def test_check_loss_on_raw_logits_is_silent_and_returns_the_attached_loss():
    logits, target = _logits_and_target()
    net = nn.Linear(3, 4)
    x = torch.randn(6, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loss = check_loss(nn.CrossEntropyLoss(), net(x), target, net=net)
    torch.testing.assert_close(loss, F.cross_entropy(net(x), target))
    loss.backward()
    expected = torch.autograd.grad(F.cross_entropy(net(x), target), net.weight)[0]
    torch.testing.assert_close(net.weight.grad, expected)


def test_check_loss_nll_loss_wants_log_probabilities():
    logits, target = _logits_and_target()
    with pytest.warns(UserWarning, match=r"NLLLoss .* not log-probabilities .*use nn.CrossEntropyLoss"):
        check_loss(nn.NLLLoss(), logits, target)
    with pytest.warns(UserWarning, match=r"NLLLoss received y_pred whose rows sum to 1"):
        check_loss(nn.NLLLoss(), torch.softmax(logits, 1), target)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_loss(nn.NLLLoss(), F.log_softmax(logits, 1), target)


def test_check_loss_accepts_masked_log_probabilities_for_nll_loss():
    logits, target = _logits_and_target()
    masked = F.log_softmax(logits.masked_fill(torch.arange(4) == 3, float("-inf")), dim=1)
    assert torch.isinf(masked).any()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_loss(nn.NLLLoss(), masked, target.clamp(max=2))


def test_check_loss_sees_through_with_regularization():
    logits, target = _logits_and_target()
    wrapped = with_regularization(nn.CrossEntropyLoss(), nn.Linear(2, 2), l2=0.1)
    with pytest.warns(UserWarning, match="CrossEntropyLoss received y_pred whose rows exponentiate to 1"):
        check_loss(wrapped, F.log_softmax(logits, 1), target)


def test_check_loss_passes_custom_stacklevel():
    logits, target = _logits_and_target()

    def trainer_step():
        return check_loss(nn.CrossEntropyLoss(), F.log_softmax(logits, 1), target, stacklevel=3)

    with pytest.warns(UserWarning) as record:
        trainer_step()  # the warning should point here, past the trainer frame
    assert record[0].filename == __file__
    assert record[0].lineno == trainer_step.__code__.co_firstlineno + 4


def test_check_loss_checks_a_regularized_loss_before_its_penalty():
    net, other = nn.Linear(3, 4), nn.Linear(3, 4)
    x = torch.randn(6, 3)
    _, target = _logits_and_target()
    wrapped = with_regularization(nn.CrossEntropyLoss(), net, l2=0.1)
    loss = check_loss(wrapped, net(x), target, net=net)
    expected = F.cross_entropy(net(x), target) + 0.1 * net.weight.pow(2).sum()
    torch.testing.assert_close(loss, expected)
    # the penalty reaches net's weights, but the data term must too
    with pytest.raises(ValueError, match=r"reaches none of net's trainable parameters"):
        check_loss(wrapped, other(x), target, net=net)


class _MeanButVector(nn.Module):
    reduction = "mean"

    def forward(self, y_pred, y_true):
        return F.cross_entropy(y_pred, y_true, reduction="none")


def test_check_loss_rejects_non_scalar_under_mean():
    logits, target = _logits_and_target()
    with pytest.raises(ValueError, match=r"_MeanButVector returned a tensor of shape \(6,\) under reduction='mean'; a training loss must be a scalar"):
        check_loss(_MeanButVector(), logits, target)


def test_check_loss_rejects_reduction_none_and_plain_vector_functions():
    logits, target = _logits_and_target()
    with pytest.raises(ValueError, match=r"reduction='none' and returned per-element losses of shape \(6,\).*use reduction='mean' or 'sum'"):
        check_loss(nn.CrossEntropyLoss(reduction="none"), logits, target)

    def per_sample(y_pred, y_true):
        return F.cross_entropy(y_pred, y_true, reduction="none")

    with pytest.raises(ValueError, match=r"per_sample returned a tensor of shape \(6,\); a training loss must be a scalar"):
        check_loss(per_sample, logits, target)


def test_check_loss_rejects_non_tensor_return():
    logits, target = _logits_and_target()
    with pytest.raises(TypeError, match=r"must return a torch.Tensor; received float"):
        check_loss(lambda p, t: 0.5, logits, target)


def test_check_loss_cross_entropy_float_targets_name_probability_mode():
    logits, target = _logits_and_target()
    with pytest.raises(ValueError, match=r"class-probability mode .* expects y_true of shape \(6, 4\) \(same as y_pred\); received \(6,\).*y_true.long\(\)"):
        check_loss(nn.CrossEntropyLoss(), logits, target.float())


def test_check_loss_cross_entropy_float_one_hot_is_legal():
    logits, target = _logits_and_target()
    one_hot = F.one_hot(target, 4).float()
    loss = check_loss(nn.CrossEntropyLoss(), logits, one_hot)
    torch.testing.assert_close(loss, F.cross_entropy(logits, target))


@pytest.mark.parametrize(
    "make_target,message",
    [
        (lambda t: t[:, None], r"class-index mode expects y_true of shape \(6,\) \(y_pred \(6, 4\) without the class dim 1\); received \(6, 1\): reshape"),
        (lambda t: t.int(), r"class-index mode expects integer class indices \(torch.long\) of shape \(6,\); received dtype torch.int32"),
        (lambda t: F.one_hot(t, 4), r"class-index mode expects y_true of shape \(6,\).*received \(6, 4\): one-hot targets convert with y_true.argmax\(dim=1\)"),
        (lambda t: torch.full_like(t, 4), r"class-index mode expects class indices in \[0, 3\] or equal ignore_index=-100 .*received values in \[4, 4\]"),
    ],
)
def test_check_loss_cross_entropy_index_mode_errors(make_target, message):
    logits, target = _logits_and_target()
    with pytest.raises(ValueError, match=message):
        check_loss(nn.CrossEntropyLoss(), logits, make_target(target))


def test_check_loss_accepts_ignore_index_targets():
    logits, target = _logits_and_target()
    target[0] = -100
    loss = check_loss(MultiClassFocalLoss(), logits, target)
    assert torch.isfinite(loss)


@pytest.mark.parametrize("loss_fn", [MultiClassFocalLoss(), SCELoss(), CostSensitiveLoss(torch.ones(4, 4) - torch.eye(4))])
def test_check_loss_index_only_losses_reject_float_targets(loss_fn):
    logits, target = _logits_and_target()
    with pytest.raises(ValueError, match=rf"{type(loss_fn).__name__} in class-index mode expects integer class indices .*received dtype torch.float32"):
        check_loss(loss_fn, logits, F.one_hot(target, 4).float())


def test_check_loss_binary_mode_errors():
    x = torch.randn(5, 1, requires_grad=True)
    with pytest.raises(ValueError, match=r"binary/multi-label mode expects floating-point targets in \[0, 1\]; received dtype torch.int64"):
        check_loss(nn.BCEWithLogitsLoss(), x, torch.ones(5, 1, dtype=torch.long))
    with pytest.raises(ValueError, match=r"FocalLoss in binary/multi-label mode expects y_true with the same shape as y_pred; received y_pred \(5, 1\) and y_true \(5,\): reshape"):
        check_loss(FocalLoss(), x, torch.ones(5))
    with pytest.raises(ValueError, match=r"DiceLoss in binary/multi-label mode expects targets in \[0, 1\]; received values in \[0, 7\]"):
        check_loss(DiceLoss(), x, torch.tensor([[0.0], [7.0], [1.0], [2.0], [0.0]]))
    with pytest.raises(ValueError, match=r"BCELoss expects probabilities in \[0, 1\] as y_pred; .*use nn.BCEWithLogitsLoss"):
        check_loss(nn.BCELoss(), x * 10, torch.ones(5, 1))
    # integer 0/1 masks are legal for our binary losses
    assert torch.isfinite(check_loss(FocalLoss(), x, torch.ones(5, 1, dtype=torch.uint8)))


def test_check_loss_regression_shape_mismatch():
    with pytest.raises(ValueError, match=r"MSELoss expects y_true with the same shape as y_pred; received y_pred \(5, 1\) and y_true \(5,\)"):
        check_loss(nn.MSELoss(), torch.randn(5, 1), torch.randn(5))


def test_check_loss_detects_detached_loss():
    logits, target = _logits_and_target()

    def detaching(y_pred, y_true):
        return torch.tensor(F.cross_entropy(y_pred, y_true).item())

    with pytest.raises(ValueError, match=r"no gradient path from the loss to the net: y_pred.requires_grad is True but the loss returned by detaching has requires_grad=False"):
        check_loss(detaching, logits, target)


def test_check_loss_detects_outputs_not_from_the_net():
    net, other = nn.Linear(3, 4), nn.Linear(3, 4)
    x = torch.randn(6, 3)
    _, target = _logits_and_target()
    with pytest.raises(ValueError, match=r"reaches none of net's trainable parameters"):
        check_loss(nn.CrossEntropyLoss(), other(x), target, net=net)
    with torch.no_grad():
        frozen_output = net(x)
    with pytest.raises(ValueError, match=r"net has 2 trainable parameter tensors but the loss .* requires_grad=False"):
        check_loss(nn.CrossEntropyLoss(), frozen_output, target, net=net)


def test_check_loss_skips_gradient_checks_when_grad_is_off():
    net = nn.Linear(3, 4)
    _, target = _logits_and_target()
    with torch.no_grad():
        loss = check_loss(nn.CrossEntropyLoss(), net(torch.randn(6, 3)), target, net=net)
    assert not loss.requires_grad


def test_check_loss_warns_on_non_finite_loss():
    logits, target = _logits_and_target()
    with pytest.warns(UserWarning, match=r"non-finite loss \(nan\)"):
        check_loss(MultiClassFocalLoss(), logits, torch.full_like(target, -100))


# ---------------------------------------------------------------------------
# seed regressions (seed code re-implemented here, for comparison only)
# ---------------------------------------------------------------------------
def test_seed000_network_log_softmax_into_cross_entropy_is_flagged():
    rng = np.random.default_rng(29)
    logits = torch.tensor(rng.normal(size=(8, 10)), dtype=torch.float32, requires_grad=True)
    target = torch.tensor([9, 1, 2, 3, 4, 5, 6, 7])
    network_output = F.log_softmax(logits, dim=1)  # seed 000's Net.forward ends this way
    with pytest.warns(UserWarning, match=r"CrossEntropyLoss received y_pred whose rows exponentiate to 1"):
        loss = check_loss(nn.CrossEntropyLoss(), network_output, target)
    # redundant rather than wrong: log_softmax is idempotent, so the value is CE on the logits
    torch.testing.assert_close(loss, F.cross_entropy(logits, target))


# ---------------------------------------------------------------------------
# check_loss_value, the loss-value checks check_loss shares with the trainer
# ---------------------------------------------------------------------------
def test_check_loss_value_outside_training_checks_only_type_and_shape():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_loss_value(torch.tensor(float("nan")), "val_loss_fn", y_pred=torch.ones(2, requires_grad=True),
                         training=False)
    with pytest.raises(TypeError, match=r"val_loss_fn must return a torch.Tensor; received int"):
        check_loss_value(3, "val_loss_fn", training=False)


def test_check_loss_value_names_the_source_in_every_message():
    y_pred = torch.ones(3, requires_grad=True)
    with pytest.raises(ValueError, match=r"my_loss returned a tensor of shape \(3,\) under reduction='sum'"):
        check_loss_value(y_pred * 2, "my_loss", reduction="sum")
    with pytest.raises(ValueError, match=r"loss returned by my_loss has requires_grad=False"):
        check_loss_value(y_pred.detach().sum(), "my_loss", y_pred=y_pred)
    with pytest.warns(UserWarning, match=r"my_loss returned a non-finite loss \(inf\)") as record:
        check_loss_value(y_pred.sum() * float("inf"), "my_loss", y_pred=y_pred)
    assert record[0].filename == __file__
