"""FocalLoss and MultiClassFocalLoss: closed forms, equalities, gradients, layouts, misuse, seeds.

The "seed" classes are re-implementations, written for these tests, of the code in the
blog posts under shared/seeds/; each regression test shows where ours differs and why.
"""

import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from loss_reference import (
    assert_half_precision_in_float32,
    REDUCTIONS,
    assert_close64,
    binary_batch,
    binary_pair,
    class_batch,
    class_pair,
    noncontiguous_binary,
    noncontiguous_class,
    np_logsigmoid,
    np_reduce,
    ref_focal,
    ref_multiclass_focal,
    tt,
)

from kerastorch.losses import FocalLoss, MultiClassFocalLoss


# ---------------------------------------------------------------------------
# closed-form values for every reduction
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("alpha", [0.25, None, 0.9])
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("soft", [False, True])
def test_focal_matches_sigmoid_focal_formula(reduction, alpha, gamma, soft):
    x, t = binary_batch(1, soft=soft)
    out = FocalLoss(alpha, gamma, reduction)(tt(x), tt(t))
    assert_close64(out, np_reduce(ref_focal(x, t, alpha, gamma), reduction))


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
def test_focal_on_probabilities_matches_formula(reduction, gamma):
    rng = np.random.default_rng(2)
    p = rng.uniform(0.02, 0.98, size=(5, 3))
    t = (rng.uniform(size=(5, 3)) < 0.5).astype(np.float64)
    out = FocalLoss(alpha=0.3, gamma=gamma, reduction=reduction, from_logits=False)(tt(p), tt(t))
    assert_close64(out, np_reduce(ref_focal(p, t, 0.3, gamma, from_logits=False), reduction))


def test_focal_alpha_weights_positive_class():
    x = tt([0.3, -1.2, 2.0])
    ones, zeros = torch.ones(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)
    unweighted_pos = FocalLoss(alpha=None, reduction="none")(x, ones)
    unweighted_neg = FocalLoss(alpha=None, reduction="none")(x, zeros)
    torch.testing.assert_close(FocalLoss(alpha=0.25, reduction="none")(x, ones), 0.25 * unweighted_pos)
    torch.testing.assert_close(FocalLoss(alpha=0.25, reduction="none")(x, zeros), 0.75 * unweighted_neg)


def test_focal_accepts_integer_and_bool_targets():
    x, t = binary_batch(3)
    expected = FocalLoss()(tt(x), tt(t))
    torch.testing.assert_close(FocalLoss()(tt(x), torch.from_numpy(t).long()), expected)
    torch.testing.assert_close(FocalLoss()(tt(x), torch.from_numpy(t).bool()), expected)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("gamma", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("alpha", [None, np.array([0.2, 1.0, 3.0, 0.5])])  # float64 weights stay float64
@pytest.mark.parametrize("shape", [(7, 4), (3, 4, 5)])
def test_multiclass_focal_matches_formula(reduction, gamma, alpha, shape):
    z, y = class_batch(4, shape, ignore_index=-100)
    out = MultiClassFocalLoss(gamma, alpha, reduction)(tt(z), torch.from_numpy(y))
    assert_close64(out, ref_multiclass_focal(z, y, gamma, alpha, -100, reduction))


def test_multiclass_focal_custom_ignore_index():
    z, y = class_batch(5, (8, 3), ignore_index=255)
    out = MultiClassFocalLoss(gamma=1.5, ignore_index=255)(tt(z), torch.from_numpy(y))
    assert_close64(out, ref_multiclass_focal(z, y, 1.5, None, 255, "mean"))


# ---------------------------------------------------------------------------
# stated equalities
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("shape", [(9, 5), (3, 5, 4)])
def test_multiclass_focal_gamma0_equals_cross_entropy(reduction, shape):
    z, y = class_batch(12, shape, ignore_index=-100)
    logits, target = tt(z), torch.from_numpy(y)
    ours = MultiClassFocalLoss(gamma=0.0, alpha=None, reduction=reduction)(logits, target)
    theirs = nn.CrossEntropyLoss(reduction=reduction, ignore_index=-100)(logits, target)
    torch.testing.assert_close(ours, theirs, rtol=1e-14, atol=0.0)


def test_multiclass_focal_gamma0_equals_cross_entropy_with_custom_ignore_index():
    z, y = class_batch(13, (10, 3), ignore_index=1)
    logits, target = tt(z), torch.from_numpy(y)
    torch.testing.assert_close(
        MultiClassFocalLoss(gamma=0.0, ignore_index=1)(logits, target),
        nn.CrossEntropyLoss(ignore_index=1)(logits, target),
        rtol=1e-14,
        atol=0.0,
    )


def test_multiclass_focal_all_ignored_mean_is_nan_like_cross_entropy():
    logits = tt(np.zeros((3, 4)))
    target = torch.full((3,), -100)
    assert math.isnan(nn.CrossEntropyLoss()(logits, target).item())
    assert math.isnan(MultiClassFocalLoss(gamma=0.0)(logits, target).item())


def test_multiclass_focal_alpha_mean_divides_by_number_of_targets():
    z, y = class_batch(14, (8, 3), ignore_index=-100)
    w = [0.5, 2.0, 4.0]
    logits, target = tt(z), torch.from_numpy(y)
    valid = y != -100
    total = nn.CrossEntropyLoss(weight=tt(w), reduction="sum")(logits, target)
    torch.testing.assert_close(MultiClassFocalLoss(0.0, w, "sum")(logits, target), total)
    ours_mean = MultiClassFocalLoss(0.0, w, "mean")(logits, target)
    assert_close64(ours_mean, total.item() / valid.sum())
    ce_weighted_mean = nn.CrossEntropyLoss(weight=tt(w))(logits, target)
    assert_close64(ce_weighted_mean, total.item() / np.asarray(w)[y[valid]].sum())
    assert abs(ours_mean.item() - ce_weighted_mean.item()) > 1e-3


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_focal_gamma0_without_alpha_equals_bce_with_logits(reduction):
    x, t = binary_batch(15, soft=True)
    torch.testing.assert_close(
        FocalLoss(alpha=None, gamma=0.0, reduction=reduction)(tt(x), tt(t)),
        nn.BCEWithLogitsLoss(reduction=reduction)(tt(x), tt(t)),
        rtol=1e-14,
        atol=0.0,
    )


# ---------------------------------------------------------------------------
# gradients
# ---------------------------------------------------------------------------
GRADCHECK_CASES = {
    "focal": (lambda: FocalLoss(0.25, 2.0), lambda: binary_pair()),
    "focal_gamma_half_hard": (lambda: FocalLoss(0.25, 0.5, "sum"), lambda: binary_pair(soft=False)),
    "focal_no_alpha_none": (lambda: FocalLoss(None, 1.5, "none"), lambda: binary_pair()),
    "focal_probabilities": (lambda: FocalLoss(0.75, 2.0, from_logits=False), lambda: binary_pair(False)),
    "mc_focal": (lambda: MultiClassFocalLoss(2.0, [1.0, 0.5, 2.0]), lambda: class_pair(ignore_index=-100)),
    "mc_focal_half_none": (lambda: MultiClassFocalLoss(0.5, reduction="none"), lambda: class_pair()),
}


@pytest.mark.parametrize("case", sorted(GRADCHECK_CASES))
def test_gradcheck_float64(case):
    make_loss, make_inputs = GRADCHECK_CASES[case]
    loss_fn = make_loss()
    y_pred, y_true = make_inputs()
    assert torch.autograd.gradcheck(lambda p: loss_fn(p, y_true), (y_pred,), eps=1e-6, atol=1e-7)


def _focal_grad_closed_form(x, t, alpha, gamma):
    """d/dx of the hard-target focal loss: with z = (2t - 1) x and q = sigmoid(-z),
    dL/dz = -alpha_t q^gamma (gamma (1 - q) softplus(-z) + q)."""
    z = (2 * t - 1) * x
    log_q = np_logsigmoid(-z)
    q = np.exp(log_q)
    alpha_t = alpha * t + (1 - alpha) * (1 - t)
    d_dz = -alpha_t * np.exp(gamma * log_q) * (gamma * (1 - q) * np.logaddexp(0.0, -z) + q)
    return d_dz * (2 * t - 1)


@pytest.mark.parametrize("gamma", [0.5, 2.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_focal_gradients_finite_and_exact_at_saturated_logits(gamma, dtype):
    x = np.array([-100.0, -100.0, 100.0, 100.0, -30.0, 30.0, 0.0, 3.0])
    t = np.array([1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 0.0])
    logits = torch.tensor(x, dtype=dtype, requires_grad=True)
    loss = FocalLoss(0.25, gamma, reduction="sum")(logits, torch.tensor(t, dtype=dtype))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    assert_close64(loss, ref_focal(x, t, 0.25, gamma).sum(), rtol=1e-5 if dtype == torch.float32 else 1e-12)
    expected = _focal_grad_closed_form(x, t, 0.25, gamma)
    assert_close64(logits.grad, expected, rtol=1e-5 if dtype == torch.float32 else 1e-12, atol=1e-30)
    # the confidently wrong positive still pulls with -alpha, the wrong negative with 1 - alpha
    assert logits.grad[0].item() == pytest.approx(-0.25, rel=1e-6)
    assert logits.grad[3].item() == pytest.approx(0.75, rel=1e-6)


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_focal_on_saturated_probabilities_has_finite_gradient(gamma):
    p = torch.tensor([0.0, 1.0, 1.0, 0.0, 0.5], requires_grad=True)
    t = torch.tensor([0.0, 1.0, 0.0, 1.0, 1.0])
    loss = FocalLoss(0.25, gamma, from_logits=False, reduction="sum")(p, t)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(p.grad).all()
    assert p.grad[0].item() == 0.0 and p.grad[1].item() == 0.0  # perfect predictions


@pytest.mark.parametrize("gamma", [0.5, 2.0])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_multiclass_focal_gradients_finite_at_saturated_logits(gamma, dtype):
    logits = torch.tensor([[100.0, -100.0, -100.0], [-100.0, 100.0, -100.0]], dtype=dtype, requires_grad=True)
    target = torch.tensor([1, 1])  # row 0 confidently wrong, row 1 confidently right
    loss = MultiClassFocalLoss(gamma, reduction="sum")(logits, target)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    # row 0: (1 - p_y) = 1 to within e^-200, so the gradient is the CE gradient p - onehot = [1, -1, 0]
    assert_close64(logits.grad[0], [1.0, -1.0, 0.0], rtol=1e-6, atol=1e-12)
    # row 1: loss ~ 2 e^-200 (1 + ...) ~ 0 and so is its gradient
    assert logits.grad[1].abs().max().item() < 1e-30
    assert_close64(loss, 200.0, rtol=1e-6)


# ---------------------------------------------------------------------------
# layouts and dtypes
# ---------------------------------------------------------------------------
NONCONTIGUOUS_CASES = {
    "focal": (lambda: FocalLoss(reduction="none"), noncontiguous_binary),
    "mc_focal": (lambda: MultiClassFocalLoss(reduction="none"), noncontiguous_class),
}


@pytest.mark.parametrize("case", sorted(NONCONTIGUOUS_CASES))
def test_noncontiguous_inputs_give_the_contiguous_result(case):
    make_loss, make_inputs = NONCONTIGUOUS_CASES[case]
    y_pred, y_true = make_inputs()
    assert not y_pred.is_contiguous() and not y_true.is_contiguous()
    loss_fn = make_loss()
    torch.testing.assert_close(loss_fn(y_pred, y_true), loss_fn(y_pred.contiguous(), y_true.contiguous()))


def test_noncontiguous_class_inputs_match_formula():
    z, y = noncontiguous_class()
    out = MultiClassFocalLoss(2.0, reduction="none")(z, y)
    assert out.shape == y.shape
    assert_close64(out, ref_multiclass_focal(z.numpy(), y.numpy(), 2.0, None, -100, "none"))


HALF_CASES = {
    "focal": (lambda: FocalLoss(gamma=0.5), "binary"),
    "focal_probs": (lambda: FocalLoss(from_logits=False), "probs"),
    "mc_focal": (lambda: MultiClassFocalLoss(alpha=[1.0, 2.0, 0.5, 1.0]), "class"),
}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("case", sorted(HALF_CASES))
def test_half_precision_inputs_are_computed_in_float32(case, dtype):
    assert_half_precision_in_float32(*HALF_CASES[case], dtype)


# ---------------------------------------------------------------------------
# argument validation
# ---------------------------------------------------------------------------
BAD_CONSTRUCTIONS = [
    (lambda: FocalLoss(reduction="avg"), ValueError, r"reduction must be one of 'mean', 'sum', 'none'; received 'avg'"),
    (lambda: FocalLoss(alpha=1.5), ValueError, r"alpha must be in \[0, 1\]; received 1.5"),
    (lambda: FocalLoss(alpha=-1), ValueError, r"alpha must be in \[0, 1\]; received -1.0"),
    (lambda: FocalLoss(alpha="0.25"), TypeError, r"alpha must be a real number or None; received str '0.25'"),
    (lambda: FocalLoss(gamma=-1), ValueError, r"gamma must be >= 0; received -1.0"),
    (lambda: FocalLoss(gamma=True), TypeError, r"gamma must be a real number; received bool True"),
    (lambda: FocalLoss(gamma=float("nan")), ValueError, r"gamma must be >= 0; received nan"),
    (lambda: FocalLoss(from_logits="yes"), TypeError, r"from_logits must be a bool; received str 'yes'"),
    (lambda: MultiClassFocalLoss(reduction="elementwise"), ValueError, r"received 'elementwise'"),
    (lambda: MultiClassFocalLoss(alpha=0.25), TypeError, r"alpha must be a sequence or 1-D tensor of per-class weights, or None; received float 0.25"),
    (lambda: MultiClassFocalLoss(alpha=[1.0, -1.0]), ValueError, r"alpha must hold finite non-negative weights; received \[1.0, -1.0\]"),
    (lambda: MultiClassFocalLoss(alpha=[[1.0, 2.0]]), ValueError, r"alpha must be a non-empty 1-D sequence of per-class weights; received shape \(1, 2\)"),
    (lambda: MultiClassFocalLoss(ignore_index=1.5), TypeError, r"ignore_index must be an int; received float 1.5"),
]


@pytest.mark.parametrize("build,exc,message", BAD_CONSTRUCTIONS)
def test_bad_arguments_raise_with_expected_and_received(build, exc, message):
    with pytest.raises(exc, match=message):
        build()


_X43 = torch.randn(4, 3)


BAD_CALLS = [
    (FocalLoss(), torch.randn(4, 1), torch.ones(4), ValueError, r"same shape as y_pred; received y_pred \(4, 1\) and y_true \(4,\)"),
    (FocalLoss(from_logits=False), _X43 * 5, torch.ones(4, 3), ValueError, r"from_logits=False expects probabilities in \[0, 1\]; received values in"),
    (FocalLoss(), torch.ones(4, dtype=torch.long), torch.ones(4), TypeError, r"expects floating-point y_pred .*; received dtype torch.int64"),
    (FocalLoss(), [0.1, 0.2], torch.ones(2), TypeError, r"FocalLoss expects y_pred to be a torch.Tensor; received list"),
    (MultiClassFocalLoss(), _X43, torch.zeros(4), TypeError, r"integer class-index targets .*; received dtype torch.float32"),
    (MultiClassFocalLoss(), _X43, torch.zeros(4, 1, dtype=torch.long), ValueError, r"expects y_true of shape \(4,\) .*received y_pred \(4, 3\) and y_true \(4, 1\)"),
    (MultiClassFocalLoss(alpha=[1.0, 1.0]), _X43, torch.zeros(4, dtype=torch.long), ValueError, r"2 alpha weights but y_pred has 3 classes"),
    (MultiClassFocalLoss(), torch.randn(4), torch.zeros(4, dtype=torch.long), ValueError, r"expects y_pred of shape \(N, C\) or \(N, C, d1, \.\.\.\) .*received \(4,\)"),
    (MultiClassFocalLoss(), torch.randn(4, 1), torch.zeros(4, dtype=torch.long), ValueError, r"at least 2 classes on dim 1; received y_pred \(4, 1\)"),
]


@pytest.mark.parametrize("loss_fn,y_pred,y_true,exc,message", BAD_CALLS)
def test_bad_inputs_raise_with_expected_and_received(loss_fn, y_pred, y_true, exc, message):
    with pytest.raises(exc, match=message):
        loss_fn(y_pred, y_true)


def test_positional_signatures_from_the_issue():
    focal = FocalLoss(0.5, 1.0, "sum", False)
    assert (focal.alpha, focal.gamma, focal.reduction, focal.from_logits) == (0.5, 1.0, "sum", False)
    mc = MultiClassFocalLoss(1.0, [1.0, 2.0], "none", 7)
    assert (mc.gamma, mc.alpha.tolist(), mc.reduction, mc.ignore_index) == (1.0, [1.0, 2.0], "none", 7)


def test_multiclass_focal_alpha_is_a_buffer_that_moves_with_the_module():
    assert "alpha" in dict(MultiClassFocalLoss(alpha=[1.0, 2.0]).named_buffers())


# ---------------------------------------------------------------------------
# seed regressions (seed code re-implemented here, for comparison only)
# ---------------------------------------------------------------------------
class Seed003FocalLoss(nn.Module):
    """Seed 001/003's FocalLoss: takes probabilities, alpha=0.75 weights positives."""

    def __init__(self, gamma=2.0, alpha=0.75):
        super().__init__()
        self.gamma = gamma
        self.alpha = alpha

    def forward(self, y_pred, y_true):
        bce = torch.nn.BCELoss(reduction="none")(y_pred, y_true)
        p_t = (y_true * y_pred) + ((1 - y_true) * (1 - y_pred))
        alpha_factor = y_true * self.alpha + (1 - y_true) * (1 - self.alpha)
        modulating_factor = torch.pow(1.0 - p_t, self.gamma)
        return torch.mean(alpha_factor * modulating_factor * bce)


def test_seed003_focal_numbers_from_the_blog_are_reproduced_with_its_alpha():
    # blog output: focal(easy)=0.0005, focal(hard)=0.0866 with alpha=0.75 on probabilities
    hard_p, hard_t = torch.tensor([[0.5], [0.5]]), torch.tensor([[1.0], [0.0]])
    easy_p = torch.tensor([[0.9], [0.1]])
    ours = FocalLoss(alpha=0.75, gamma=2.0, from_logits=False)
    assert round(ours(easy_p, hard_t).item(), 4) == 0.0005
    assert round(ours(hard_p, hard_t).item(), 4) == 0.0866
    # per element, alpha=0.75 weights the positive (p=0.9) and 1 - alpha the negative (p=0.1)
    per_element = FocalLoss(0.75, 2.0, "none", False)(easy_p, hard_t)[:, 0]
    bce = -math.log(0.9)
    assert_close64(per_element, [0.75 * 0.1**2 * bce, 0.25 * 0.1**2 * bce], rtol=1e-6)


def test_seed003_focal_agrees_in_the_normal_range():
    x = torch.linspace(-8, 8, 17)
    t = (torch.arange(17) % 2).float()
    seed = Seed003FocalLoss()(torch.sigmoid(x), t)
    torch.testing.assert_close(FocalLoss(alpha=0.75, gamma=2.0)(x, t), seed, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("x0,t0,gamma,seed_is,ours_expected", [
    (-100.0, 1.0, 2.0, "zero", -0.75),  # confidently wrong positive: seed gradient vanishes
    (-30.0, 1.0, 2.0, "small", -0.75),  # seed gradient ~ 0.07, about 10x too small
    (100.0, 0.0, 2.0, "zero", 0.25),  # confidently wrong negative
    (100.0, 1.0, 0.5, "nan", 0.0),  # confidently right with gamma < 1: seed gradient is NaN
])
def test_seed003_focal_gradient_breaks_at_saturation_ours_does_not(x0, t0, gamma, seed_is, ours_expected):
    x = torch.tensor([x0], requires_grad=True)
    Seed003FocalLoss(gamma=gamma)(torch.sigmoid(x), torch.tensor([t0])).backward()
    seed_grad = x.grad.item()
    x_ours = torch.tensor([x0], requires_grad=True)
    FocalLoss(alpha=0.75, gamma=gamma)(x_ours, torch.tensor([t0])).backward()
    exact = _focal_grad_closed_form(np.array([x0]), np.array([t0]), 0.75, gamma)[0]
    assert x_ours.grad.item() == pytest.approx(exact, rel=1e-6, abs=1e-30)
    assert exact == pytest.approx(ours_expected, rel=1e-9, abs=1e-12)
    if seed_is == "zero":
        assert seed_grad == 0.0
    elif seed_is == "small":
        assert 0 < abs(seed_grad) < 0.15 * abs(exact)
    else:
        assert math.isnan(seed_grad)


class Seed004FocalLoss(nn.Module):
    def forward(self, inputs, targets, alpha=0.8, gamma=2, smooth=1):
        inputs = torch.sigmoid(inputs)
        inputs = inputs.view(-1)
        targets = targets.view(-1)
        bce = F.binary_cross_entropy(inputs, targets, reduction="mean")
        bce_exp = torch.exp(-bce)
        return alpha * (1 - bce_exp) ** gamma * bce


def test_seed004_focal_uses_the_batch_mean_bce_not_per_sample_focusing():
    t = torch.ones(2)
    same = torch.zeros(2)  # every sample has BCE = log 2
    easy = 5.0
    hard = -math.log(math.exp(2 * math.log(2) - math.log1p(math.exp(-easy))) - 1)
    mixed = torch.tensor([easy, hard])  # one easy, one hard sample, same mean BCE
    torch.testing.assert_close(F.binary_cross_entropy_with_logits(mixed, t), F.binary_cross_entropy_with_logits(same, t))
    seed_same, seed_mixed = Seed004FocalLoss()(same, t).item(), Seed004FocalLoss()(mixed, t).item()
    assert seed_mixed == pytest.approx(seed_same, rel=1e-6)
    ours_same, ours_mixed = FocalLoss(None, 2.0)(same, t).item(), FocalLoss(None, 2.0)(mixed, t).item()
    assert ours_same == pytest.approx(ref_focal(np.zeros(2), np.ones(2), None, 2.0).mean(), rel=1e-6)
    assert ours_mixed == pytest.approx(ref_focal(mixed.double().numpy(), np.ones(2), None, 2.0).mean(), rel=1e-6)
    assert abs(ours_mixed - ours_same) > 0.1 * ours_same
    # and its alpha scales both classes alike: swapping labels and logit signs changes nothing
    x = torch.tensor([1.5, -0.5, 2.0])
    y = torch.tensor([1.0, 0.0, 1.0])
    torch.testing.assert_close(Seed004FocalLoss()(x, y), Seed004FocalLoss()(-x, 1 - y))
    assert FocalLoss(0.25)(x, y).item() != pytest.approx(FocalLoss(0.25)(-x, 1 - y).item(), rel=1e-3)
