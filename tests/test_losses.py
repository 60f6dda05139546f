"""Tests for kerastorch.losses: closed-form values, gradients, stated equalities, guard rails, seed regressions.

Every expected number is computed independently here, in float64 numpy (or explicit
torch formulas), never copied from the implementation. The "seed" classes below are
re-implementations, written for these tests, of the code in the blog posts under
shared/seeds/ (000: cost-sensitive MNIST loss; 001/003: FocalLoss, SCELoss, L1/L2;
004: Dice, DiceBCE, IoU, Focal); each regression test shows where ours differs and why.
"""

import doctest
import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import kerastorch.losses as losses_module
from kerastorch.losses import (
    CostSensitiveLoss,
    DiceBCELoss,
    DiceLoss,
    FocalLoss,
    JaccardLoss,
    MultiClassFocalLoss,
    RegularizedLoss,
    SCELoss,
    TverskyLoss,
    check_loss,
    with_regularization,
)

REDUCTIONS = ("mean", "sum", "none")
A_SCE = -math.log(1e-4)  # the constant -A of Wang et al.


# ---------------------------------------------------------------------------
# float64 references
# ---------------------------------------------------------------------------
def np_logsigmoid(x):
    return -np.logaddexp(0.0, -x)


def np_sigmoid(x):
    return np.exp(np_logsigmoid(x))


def np_log_softmax(z, axis=-1):
    m = z.max(axis=axis, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=axis, keepdims=True))


def np_reduce(v, reduction):
    if reduction == "mean":
        return np.mean(v)
    if reduction == "sum":
        return np.sum(v)
    return v


def ref_focal(x, t, alpha, gamma, from_logits=True):
    """torchvision.ops.sigmoid_focal_loss, transcribed (alpha=None for its alpha < 0)."""
    if from_logits:
        log_p, log_q = np_logsigmoid(x), np_logsigmoid(-x)
        p = np.exp(log_p)
    else:
        p = x
        log_p, log_q = np.log(p), np.log1p(-p)
    ce = -(t * log_p + (1 - t) * log_q)
    p_t = p * t + (1 - p) * (1 - t)
    loss = ce * (1 - p_t) ** gamma
    if alpha is not None:
        loss = loss * (alpha * t + (1 - alpha) * (1 - t))
    return loss


def ref_class_parts(z, y):
    """Softmax probabilities (classes last) and log p_y for logits z (N, C, *) and indices y (N, *)."""
    log_probs = np_log_softmax(np.moveaxis(z, 1, -1), axis=-1)
    log_p_y = np.take_along_axis(log_probs, y[..., None], axis=-1)[..., 0]
    return np.exp(log_probs), log_p_y


def ref_multiclass_focal(z, y, gamma, alpha, ignore_index, reduction):
    valid = y != ignore_index
    safe = np.where(valid, y, 0)
    _, log_p_y = ref_class_parts(z, safe)
    weight = np.ones_like(log_p_y) if alpha is None else np.asarray(alpha, dtype=np.float64)[safe]
    loss = np.where(valid, -weight * (1 - np.exp(log_p_y)) ** gamma * log_p_y, 0.0)
    if reduction == "mean":
        return loss.sum() / valid.sum()
    return np_reduce(loss, reduction)


def ref_sce(z, y, alpha, beta, reduction):
    _, log_p_y = ref_class_parts(z, y)
    return np_reduce(alpha * (-log_p_y) + beta * A_SCE * (1 - np.exp(log_p_y)), reduction)


def ref_cost_sensitive(z, y, cost, lambd, reduction):
    probs, log_p_y = ref_class_parts(z, y)
    return np_reduce(-log_p_y + lambd * (probs * cost[y]).sum(axis=-1), reduction)


def ref_overlap(kind, x, t, smooth, per_sample, from_logits=True, alpha=0.5, beta=0.5):
    p = np_sigmoid(x) if from_logits else x
    axes = tuple(range(1, x.ndim)) if per_sample else None
    tp = (p * t).sum(axis=axes)
    fp = (p * (1 - t)).sum(axis=axes)
    fn = ((1 - p) * t).sum(axis=axes)
    if kind == "dice":
        score = (2 * tp + smooth) / (p.sum(axis=axes) + t.sum(axis=axes) + smooth)
    elif kind == "jaccard":
        union = p.sum(axis=axes) + t.sum(axis=axes) - tp
        score = (tp + smooth) / (union + smooth)
    else:
        score = (tp + smooth) / (tp + alpha * fp + beta * fn + smooth)
    return 1 - score


def ref_bce(x, t, per_sample):
    bce = -(t * np_logsigmoid(x) + (1 - t) * np_logsigmoid(-x))
    return bce.reshape(bce.shape[0], -1).mean(axis=1) if per_sample else bce.mean()


def tt(a, requires_grad=False):
    return torch.tensor(np.asarray(a), dtype=torch.float64, requires_grad=requires_grad)


def assert_close64(actual, expected, rtol=1e-10, atol=1e-12):
    actual = actual.detach().cpu().numpy() if isinstance(actual, torch.Tensor) else np.asarray(actual)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol)


def binary_batch(seed, shape=(3, 2, 4), soft=False):
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, 2.0, size=shape)
    t = rng.uniform(0, 1, size=shape) if soft else (rng.uniform(0, 1, size=shape) < 0.4).astype(np.float64)
    return x, t


def class_batch(seed, shape=(6, 4), ignore_index=None):
    """Logits of shape (N, C, *) and targets of shape (N, *)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 2.0, size=shape)
    y = rng.integers(0, shape[1], size=(shape[0],) + tuple(shape[2:]))
    if ignore_index is not None:
        y.reshape(-1)[::3] = ignore_index
    return z, y


# ---------------------------------------------------------------------------
# closed-form values for every loss and reduction
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


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("alpha,beta", [(0.1, 1.0), (1.0, 0.5), (0.0, 2.0)])
@pytest.mark.parametrize("shape", [(7, 5), (2, 5, 3)])
def test_sce_matches_formula(reduction, alpha, beta, shape):
    z, y = class_batch(6, shape)
    out = SCELoss(alpha, beta, None, reduction)(tt(z), torch.from_numpy(y))
    assert_close64(out, ref_sce(z, y, alpha, beta, reduction))


@pytest.mark.parametrize("kind,cls", [("dice", DiceLoss), ("jaccard", JaccardLoss), ("tversky", TverskyLoss)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("from_logits", [True, False])
def test_overlap_losses_match_formula(kind, cls, reduction, per_sample, from_logits):
    x, t = binary_batch(7, soft=True)
    if not from_logits:
        x = np_sigmoid(x)
    kwargs = dict(smooth=0.7, from_logits=from_logits, reduction=reduction, per_sample=per_sample)
    extra = {}
    if kind == "tversky":
        extra = dict(alpha=0.3, beta=0.8)
        kwargs.update(extra)
    out = cls(**kwargs)(tt(x), tt(t))
    expected = ref_overlap(kind, x, t, 0.7, per_sample, from_logits, **extra)
    if per_sample:
        assert out.shape == ((3,) if reduction == "none" else ())
        expected = np_reduce(expected, reduction)
    else:
        assert out.shape == ()  # one pooled score whatever the reduction
    assert_close64(out, expected)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("per_sample", [False, True])
def test_dice_bce_matches_formula(reduction, per_sample):
    x, t = binary_batch(8)
    out = DiceBCELoss(1.0, True, reduction, per_sample)(tt(x), tt(t))
    expected = ref_overlap("dice", x, t, 1.0, per_sample) + ref_bce(x, t, per_sample)
    assert_close64(out, np_reduce(expected, reduction) if per_sample else expected)


def test_dice_bce_on_probabilities_matches_formula():
    x, t = binary_batch(9)
    p = np_sigmoid(x)
    out = DiceBCELoss(from_logits=False)(tt(p), tt(t))
    bce = -(t * np.log(p) + (1 - t) * np.log1p(-p)).mean()
    assert_close64(out, ref_overlap("dice", p, t, 1.0, False, from_logits=False) + bce)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("lambd", [1.0, 0.3])
@pytest.mark.parametrize("shape", [(9, 4), (2, 4, 3)])
def test_cost_sensitive_matches_formula(reduction, lambd, shape):
    z, y = class_batch(10, shape)
    rng = np.random.default_rng(11)
    cost = rng.uniform(0, 5, size=(4, 4))
    np.fill_diagonal(cost, 0.0)
    out = CostSensitiveLoss(torch.from_numpy(cost), lambd, reduction)(tt(z), torch.from_numpy(y))
    assert_close64(out, ref_cost_sensitive(z, y, cost, lambd, reduction))


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


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize("smooth", [0.0, 0.5, 1.0])
def test_tversky_half_half_equals_dice_with_doubled_smoothing(per_sample, smooth):
    x, t = binary_batch(16, soft=True)
    tversky = TverskyLoss(0.5, 0.5, smooth, per_sample=per_sample, reduction="none")(tt(x), tt(t))
    dice = DiceLoss(2 * smooth, per_sample=per_sample, reduction="none")(tt(x), tt(t))
    torch.testing.assert_close(tversky, dice, rtol=1e-12, atol=1e-14)
    if smooth > 0:
        same_smooth = DiceLoss(smooth, per_sample=per_sample, reduction="none")(tt(x), tt(t))
        assert not torch.allclose(tversky, same_smooth, rtol=1e-6, atol=0.0)


@pytest.mark.parametrize("per_sample", [False, True])
def test_tversky_one_one_equals_jaccard(per_sample):
    x, t = binary_batch(17, soft=True)
    torch.testing.assert_close(
        TverskyLoss(1.0, 1.0, 0.3, per_sample=per_sample, reduction="none")(tt(x), tt(t)),
        JaccardLoss(0.3, per_sample=per_sample, reduction="none")(tt(x), tt(t)),
        rtol=1e-12,
        atol=1e-14,
    )


@pytest.mark.parametrize("per_sample", [False, True])
def test_jaccard_score_equals_dice_over_two_minus_dice_without_smoothing(per_sample):
    x, t = binary_batch(18)
    d = 1 - DiceLoss(0.0, per_sample=per_sample, reduction="none")(tt(x), tt(t))
    j = 1 - JaccardLoss(0.0, per_sample=per_sample, reduction="none")(tt(x), tt(t))
    torch.testing.assert_close(j, d / (2 - d), rtol=1e-12, atol=1e-14)
    d_smooth = 1 - DiceLoss(1.0, per_sample=per_sample, reduction="none")(tt(x), tt(t))
    j_smooth = 1 - JaccardLoss(1.0, per_sample=per_sample, reduction="none")(tt(x), tt(t))
    assert not torch.allclose(j_smooth, d_smooth / (2 - d_smooth), rtol=1e-6, atol=0.0)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("per_sample", [False, True])
def test_dice_bce_is_dice_plus_bce_with_logits(reduction, per_sample):
    x, t = binary_batch(19)
    x, t = tt(x), tt(t)
    dice = DiceLoss(1.0, True, "none", per_sample)(x, t)
    if per_sample:
        bce = nn.BCEWithLogitsLoss(reduction="none")(x, t).flatten(1).mean(1)
        expected = {"mean": (dice + bce).mean(), "sum": (dice + bce).sum(), "none": dice + bce}[reduction]
    else:
        expected = dice + nn.BCEWithLogitsLoss()(x, t)
    torch.testing.assert_close(DiceBCELoss(1.0, True, reduction, per_sample)(x, t), expected)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_sce_is_alpha_ce_plus_beta_scaled_one_minus_p_y(reduction):
    z, y = class_batch(20, (9, 6))
    logits, target = tt(z), torch.from_numpy(y)
    p_y = torch.softmax(logits, dim=1).gather(1, target[:, None])[:, 0]
    per_sample = 0.4 * F.cross_entropy(logits, target, reduction="none") + 1.5 * A_SCE * (1 - p_y)
    expected = {"mean": per_sample.mean(), "sum": per_sample.sum(), "none": per_sample}[reduction]
    torch.testing.assert_close(SCELoss(0.4, 1.5, 6, reduction)(logits, target), expected)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cost_sensitive_with_zero_matrix_equals_cross_entropy(reduction):
    z, y = class_batch(21, (9, 4))
    logits, target = tt(z), torch.from_numpy(y)
    torch.testing.assert_close(
        CostSensitiveLoss(torch.zeros(4, 4, dtype=torch.float64), 1.0, reduction)(logits, target),
        nn.CrossEntropyLoss(reduction=reduction)(logits, target),
        rtol=1e-14,
        atol=0.0,
    )


def test_cost_sensitive_gradient_pushes_probability_away_from_costly_columns():
    cost = np.ones((4, 4)) - np.eye(4)
    cost[3, 1] = 20.0  # a true 3 predicted as 1 is expensive
    z = np.array([[0.2, 0.5, -0.3, 0.4], [1.0, 0.0, -1.0, 0.5]])
    y = np.array([3, 0])
    logits = tt(z, requires_grad=True)
    CostSensitiveLoss(torch.from_numpy(cost), lambd=1.0, reduction="sum")(logits, torch.from_numpy(y)).backward()
    # d/dz_k [CE + sum_j p_j C[y, j]] = p_k - [k == y] + p_k (C[y, k] - sum_j p_j C[y, j])
    p = np.exp(np_log_softmax(z))
    expected_cost = (p * cost[y]).sum(axis=1, keepdims=True)
    expected = p - np.eye(4)[y] + p * (cost[y] - expected_cost)
    assert_close64(logits.grad, expected)
    assert logits.grad[0, 1] > 0 and logits.grad[0, 1] > logits.grad[0, [0, 2]].max()

    # one SGD step lowers p(1 | true 3) more than plain cross entropy does
    def p_after_step(loss_fn):
        w = tt(z[:1], requires_grad=True)
        loss_fn(w, torch.tensor([3])).backward()
        with torch.no_grad():
            return torch.softmax(w - 0.5 * w.grad, dim=1)[0, 1].item()

    p_cost = p_after_step(CostSensitiveLoss(torch.from_numpy(cost)))
    p_ce = p_after_step(nn.CrossEntropyLoss())
    assert p_cost < p_ce < p[0, 1]


# ---------------------------------------------------------------------------
# gradients
# ---------------------------------------------------------------------------
def _binary_pair(from_logits=True, soft=True):
    x, t = binary_batch(22, shape=(2, 3, 2), soft=soft)
    if not from_logits:
        x = 0.05 + 0.9 * np_sigmoid(x)
    return tt(x, requires_grad=True), tt(t)


def _class_pair(shape=(4, 3, 2), ignore_index=None):
    z, y = class_batch(23, shape, ignore_index=ignore_index)
    return tt(z, requires_grad=True), torch.from_numpy(y)


GRADCHECK_CASES = {
    "focal": (lambda: FocalLoss(0.25, 2.0), lambda: _binary_pair()),
    "focal_gamma_half_hard": (lambda: FocalLoss(0.25, 0.5, "sum"), lambda: _binary_pair(soft=False)),
    "focal_no_alpha_none": (lambda: FocalLoss(None, 1.5, "none"), lambda: _binary_pair()),
    "focal_probabilities": (lambda: FocalLoss(0.75, 2.0, from_logits=False), lambda: _binary_pair(False)),
    "mc_focal": (lambda: MultiClassFocalLoss(2.0, [1.0, 0.5, 2.0]), lambda: _class_pair(ignore_index=-100)),
    "mc_focal_half_none": (lambda: MultiClassFocalLoss(0.5, reduction="none"), lambda: _class_pair()),
    "sce": (lambda: SCELoss(0.1, 1.0), lambda: _class_pair()),
    "dice": (lambda: DiceLoss(), lambda: _binary_pair()),
    "dice_per_sample_probs": (
        lambda: DiceLoss(from_logits=False, per_sample=True, reduction="none"),
        lambda: _binary_pair(False),
    ),
    "jaccard": (lambda: JaccardLoss(per_sample=True), lambda: _binary_pair()),
    "tversky": (lambda: TverskyLoss(0.3, 0.7, reduction="sum", per_sample=True), lambda: _binary_pair()),
    "dice_bce": (lambda: DiceBCELoss(), lambda: _binary_pair(soft=False)),
    "dice_bce_probs": (lambda: DiceBCELoss(from_logits=False, per_sample=True), lambda: _binary_pair(False)),
    "cost_sensitive": (
        lambda: CostSensitiveLoss(torch.tensor([[0.0, 1.0, 5.0], [2.0, 0.0, 1.0], [1.0, 3.0, 0.0]]), 0.7),
        lambda: _class_pair(),
    ),
}


@pytest.mark.parametrize("case", sorted(GRADCHECK_CASES))
def test_gradcheck_float64(case):
    make_loss, make_inputs = GRADCHECK_CASES[case]
    loss_fn = make_loss()
    y_pred, y_true = make_inputs()
    assert torch.autograd.gradcheck(lambda p: loss_fn(p, y_true), (y_pred,), eps=1e-6, atol=1e-7)


def test_with_regularization_gradcheck():
    torch.manual_seed(5)
    net = nn.Linear(3, 2).double()
    loss_fn = with_regularization(nn.MSELoss(), net, l1=0.01, l2=0.1)
    x, y = torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
    y_pred = net(x).detach().requires_grad_()
    assert torch.autograd.gradcheck(lambda p: loss_fn(p, y), (y_pred,))
    # parameter gradients: the wrapped loss against the penalty written out by hand
    net.zero_grad()
    loss_fn(net(x), y).backward()
    w = net.weight.detach().clone().requires_grad_()
    manual = nn.MSELoss()(F.linear(x, w, net.bias), y) + 0.01 * w.abs().sum() + 0.1 * (w * w).sum()
    manual.backward()
    torch.testing.assert_close(net.weight.grad, w.grad)


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


def test_sce_and_cost_sensitive_gradients_finite_at_saturated_logits():
    for loss_fn in (SCELoss(), CostSensitiveLoss(torch.ones(3, 3) - torch.eye(3))):
        logits = torch.tensor([[100.0, -100.0, -100.0], [-100.0, 100.0, -100.0]], requires_grad=True)
        loss = loss_fn(logits, torch.tensor([1, 1]))
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_overlap_losses_gradients_finite_at_saturated_logits():
    x = torch.tensor([[100.0, -100.0, 100.0, -100.0]], requires_grad=True)
    t = torch.tensor([[1.0, 0.0, 0.0, 1.0]])
    for loss_fn in (DiceLoss(), JaccardLoss(), TverskyLoss(0.3, 0.7), DiceBCELoss()):
        x.grad = None
        loss = loss_fn(x, t)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(x.grad).all()


# ---------------------------------------------------------------------------
# layouts and dtypes
# ---------------------------------------------------------------------------
def _noncontiguous_binary():
    rng = np.random.default_rng(24)
    x = torch.tensor(rng.normal(size=(3, 5, 4, 2)), dtype=torch.float64).permute(0, 3, 2, 1)
    t = torch.tensor((rng.uniform(size=(3, 5, 4, 2)) < 0.5).astype(np.float64)).permute(0, 3, 2, 1)
    return x, t


def _noncontiguous_class():
    rng = np.random.default_rng(25)
    z = torch.tensor(rng.normal(size=(2, 4, 3, 5)), dtype=torch.float64).permute(0, 3, 1, 2)  # (N, C, H, W)
    y = torch.tensor(rng.integers(0, 5, size=(2, 3, 4))).transpose(1, 2)  # (N, H, W)
    return z, y


NONCONTIGUOUS_CASES = {
    "focal": (lambda: FocalLoss(reduction="none"), _noncontiguous_binary),
    "dice": (lambda: DiceLoss(), _noncontiguous_binary),
    "dice_per_sample": (lambda: DiceLoss(per_sample=True, reduction="none"), _noncontiguous_binary),
    "jaccard": (lambda: JaccardLoss(per_sample=True), _noncontiguous_binary),
    "tversky": (lambda: TverskyLoss(0.2, 0.8), _noncontiguous_binary),
    "dice_bce": (lambda: DiceBCELoss(per_sample=True, reduction="none"), _noncontiguous_binary),
    "mc_focal": (lambda: MultiClassFocalLoss(reduction="none"), _noncontiguous_class),
    "sce": (lambda: SCELoss(reduction="none"), _noncontiguous_class),
    "cost_sensitive": (lambda: CostSensitiveLoss(torch.ones(5, 5) - torch.eye(5), reduction="none"), _noncontiguous_class),
}


@pytest.mark.parametrize("case", sorted(NONCONTIGUOUS_CASES))
def test_noncontiguous_inputs_give_the_contiguous_result(case):
    make_loss, make_inputs = NONCONTIGUOUS_CASES[case]
    y_pred, y_true = make_inputs()
    assert not y_pred.is_contiguous() and not y_true.is_contiguous()
    loss_fn = make_loss()
    torch.testing.assert_close(loss_fn(y_pred, y_true), loss_fn(y_pred.contiguous(), y_true.contiguous()))


def test_noncontiguous_class_inputs_match_formula():
    z, y = _noncontiguous_class()
    out = MultiClassFocalLoss(2.0, reduction="none")(z, y)
    assert out.shape == y.shape
    assert_close64(out, ref_multiclass_focal(z.numpy(), y.numpy(), 2.0, None, -100, "none"))


HALF_CASES = {
    "focal": (lambda: FocalLoss(gamma=0.5), "binary"),
    "focal_probs": (lambda: FocalLoss(from_logits=False), "probs"),
    "dice": (lambda: DiceLoss(per_sample=True), "binary"),
    "jaccard": (lambda: JaccardLoss(), "binary"),
    "tversky": (lambda: TverskyLoss(0.3, 0.7), "binary"),
    "dice_bce": (lambda: DiceBCELoss(), "binary"),
    "mc_focal": (lambda: MultiClassFocalLoss(alpha=[1.0, 2.0, 0.5, 1.0]), "class"),
    "sce": (lambda: SCELoss(), "class"),
    "cost_sensitive": (lambda: CostSensitiveLoss(torch.ones(4, 4) - torch.eye(4)), "class"),
}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("case", sorted(HALF_CASES))
def test_half_precision_inputs_are_computed_in_float32(case, dtype):
    make_loss, kind = HALF_CASES[case]
    if kind == "class":
        z, y = class_batch(26, (8, 4))
        y_true = torch.from_numpy(y)
    else:
        z, t = binary_batch(26, shape=(4, 6))
        z = np_sigmoid(z) if kind == "probs" else z
        y_true = torch.from_numpy(t).to(dtype)
    y_pred = torch.tensor(z, dtype=dtype, requires_grad=True)
    loss = make_loss()(y_pred, y_true)
    assert loss.dtype == torch.float32
    loss.backward()
    assert y_pred.grad.dtype == dtype and torch.isfinite(y_pred.grad.float()).all()
    # same loss as on the float64 copy of the rounded half inputs, to float32 accuracy
    rounded = y_pred.detach().double()
    target = y_true if kind == "class" else y_true.double()
    torch.testing.assert_close(loss.double(), make_loss()(rounded, target), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------------
# argument validation
# ---------------------------------------------------------------------------
_NET = nn.Linear(2, 1)

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
    (lambda: SCELoss(num_classes=1), ValueError, r"num_classes must be >= 2; received 1"),
    (lambda: SCELoss(num_classes=2.0), TypeError, r"num_classes must be an int or None; received float 2.0"),
    (lambda: SCELoss(beta=-0.1), ValueError, r"beta must be >= 0; received -0.1"),
    (lambda: SCELoss(reduction="batchmean"), ValueError, r"received 'batchmean'"),
    (lambda: DiceLoss(smooth=-1), ValueError, r"smooth must be >= 0; received -1.0"),
    (lambda: DiceLoss(per_sample=1), TypeError, r"per_sample must be a bool; received int 1"),
    (lambda: JaccardLoss(reduction=None), ValueError, r"reduction must be one of 'mean', 'sum', 'none'; received None"),
    (lambda: TverskyLoss(alpha=-0.5), ValueError, r"alpha must be >= 0; received -0.5"),
    (lambda: TverskyLoss(beta="1"), TypeError, r"beta must be a real number; received str '1'"),
    (lambda: DiceBCELoss(reduction="MEAN"), ValueError, r"received 'MEAN'"),
    (lambda: DiceBCELoss(from_logits=None), TypeError, r"from_logits must be a bool; received NoneType None"),
    (lambda: CostSensitiveLoss([[0.0, 1.0, 2.0]]), ValueError, r"cost_matrix must be a square \(C, C\) matrix with C >= 2; received shape \(1, 3\)"),
    (lambda: CostSensitiveLoss([[1.0, 1.0], [1.0, 0.0]]), ValueError, r"zero diagonal.*received C\[0, 0\] = 1"),
    (lambda: CostSensitiveLoss([[0.0, -1.0], [1.0, 0.0]]), ValueError, r"cost_matrix must hold finite non-negative costs; received \[\[0.0, -1.0\], \[1.0, 0.0\]\]"),
    (lambda: CostSensitiveLoss("abc"), TypeError, r"cost_matrix must be a square \(C, C\) tensor, array or nested list of numbers; received str"),
    (lambda: CostSensitiveLoss([[0.0, 1.0], [1.0, 0.0]], lambd=-1), ValueError, r"lambd must be >= 0; received -1.0"),
    (lambda: CostSensitiveLoss([[0.0, 1.0], [1.0, 0.0]], reduction="avg"), ValueError, r"received 'avg'"),
    (lambda: with_regularization(nn.MSELoss(), _NET, l2=-1), ValueError, r"l2 must be >= 0; received -1.0"),
    (lambda: with_regularization(nn.MSELoss(), _NET, l1="0.1"), TypeError, r"l1 must be a real number; received str '0.1'"),
    (lambda: with_regularization(nn.MSELoss(), "net"), TypeError, r"model must be a torch.nn.Module; received str"),
    (lambda: with_regularization(3, _NET), TypeError, r"loss_fn must be callable; received int"),
    (lambda: with_regularization(nn.MSELoss(), _NET, exclude_bias="no"), TypeError, r"exclude_bias must be a bool; received str 'no'"),
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
    (SCELoss(num_classes=10), _X43, torch.zeros(4, dtype=torch.long), ValueError, r"num_classes=10; received y_pred with 3 classes on dim 1 \(shape \(4, 3\)\)"),
    (SCELoss(), _X43, torch.zeros(3, dtype=torch.long), ValueError, r"expects y_true of shape \(4,\) .*y_true \(3,\)"),
    (DiceLoss(), torch.randn(2, 3), torch.ones(2, 3, 1), ValueError, r"received y_pred \(2, 3\) and y_true \(2, 3, 1\)"),
    (DiceLoss(per_sample=True), torch.tensor(0.5), torch.tensor(1.0), ValueError, r"per_sample=True needs a batch dim 0"),
    (JaccardLoss(from_logits=False), torch.randn(2, 3) - 3, torch.ones(2, 3), ValueError, r"JaccardLoss with from_logits=False expects probabilities"),
    (TverskyLoss(), torch.randn(2, 3), torch.ones(3, 2), ValueError, r"received y_pred \(2, 3\) and y_true \(3, 2\)"),
    (DiceBCELoss(), torch.randn(2, 3), torch.ones(2), ValueError, r"DiceBCELoss expects y_true with the same shape as y_pred; received y_pred \(2, 3\) and y_true \(2,\)"),
    (CostSensitiveLoss(torch.ones(3, 3) - torch.eye(3)), torch.randn(4, 4), torch.zeros(4, dtype=torch.long), ValueError, r"\(3, 3\) cost_matrix but y_pred has 4 classes on dim 1"),
    (CostSensitiveLoss(torch.ones(3, 3) - torch.eye(3)), _X43, torch.zeros(4, 3), TypeError, r"integer class-index targets .*received dtype torch.float32"),
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
    sce = SCELoss(0.2, 0.9, 4, "sum")
    assert (sce.alpha, sce.beta, sce.num_classes, sce.reduction) == (0.2, 0.9, 4, "sum")
    for cls in (DiceLoss, JaccardLoss, DiceBCELoss):
        loss = cls(0.5, False, "none", True)
        assert (loss.smooth, loss.from_logits, loss.reduction, loss.per_sample) == (0.5, False, "none", True)
    tv = TverskyLoss(0.1, 0.9, 2.0, False, "sum", True)
    assert (tv.alpha, tv.beta, tv.smooth, tv.from_logits, tv.reduction, tv.per_sample) == (0.1, 0.9, 2.0, False, "sum", True)
    cs = CostSensitiveLoss([[0, 1], [2, 0]], 0.5, "none")
    assert (cs.cost_matrix.tolist(), cs.lambd, cs.reduction) == ([[0.0, 1.0], [2.0, 0.0]], 0.5, "none")
    reg = with_regularization(nn.MSELoss(), _NET, 0.1, 0.2, False)
    assert (reg.l1, reg.l2, reg.exclude_bias) == (0.1, 0.2, False)


def test_losses_move_with_module_and_follow_input_device_and_dtype():
    loss_fn = CostSensitiveLoss(np.array([[0.0, 2.0], [1.0, 0.0]]))  # float64 buffer
    logits = torch.tensor([[0.3, -0.2]], dtype=torch.float32)
    out = loss_fn(logits, torch.tensor([0]))
    assert out.dtype == torch.float32
    assert "cost_matrix" in dict(loss_fn.named_buffers())
    assert "alpha" in dict(MultiClassFocalLoss(alpha=[1.0, 2.0]).named_buffers())


# ---------------------------------------------------------------------------
# check_loss
# ---------------------------------------------------------------------------
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
# with_regularization
# ---------------------------------------------------------------------------
class _Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 4)
        self.bias_head = nn.Linear(4, 2, bias=False)  # a weight despite the module name
        self.attn = nn.MultiheadAttention(4, 1)  # in_proj_bias, out_proj.bias
        self.rnn = nn.GRU(4, 2)  # bias_ih_l0, bias_hh_l0
        self.frozen = nn.Linear(2, 2)
        self.frozen.requires_grad_(False)

    def forward(self, x):
        return self.bias_head(torch.tanh(self.fc(x)))


def _manual_penalty(model, l1, l2, exclude_bias):
    total = 0.0
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        own = name.split(".")[-1]
        if exclude_bias and own in ("bias", "in_proj_bias", "bias_ih_l0", "bias_hh_l0"):
            continue
        w = p.detach().double().numpy()
        total += l1 * np.abs(w).sum() + l2 * (w ** 2).sum()
    return total


@pytest.mark.parametrize("exclude_bias", [True, False])
@pytest.mark.parametrize("l1,l2", [(0.01, 0.0), (0.0, 0.05), (0.02, 0.3)])
def test_with_regularization_equals_manual_sum(exclude_bias, l1, l2):
    torch.manual_seed(0)
    model = _Tiny()
    x, y = torch.randn(5, 3), torch.randn(5, 2)
    loss_fn = with_regularization(nn.MSELoss(), model, l1, l2, exclude_bias)
    assert isinstance(loss_fn, RegularizedLoss)
    out = model(x)
    expected = nn.MSELoss()(out, y).item() + _manual_penalty(model, l1, l2, exclude_bias)
    assert loss_fn(out, y).item() == pytest.approx(expected, rel=1e-6)


def test_with_regularization_excludes_biases_by_parameter_name():
    model = _Tiny()
    names = {name for name, _ in with_regularization(nn.MSELoss(), model, l2=1.0).named_penalized_parameters()}
    assert names == {"fc.weight", "bias_head.weight", "attn.in_proj_weight", "attn.out_proj.weight", "rnn.weight_ih_l0", "rnn.weight_hh_l0"}
    all_trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    kept = {n for n, _ in with_regularization(nn.MSELoss(), model, l2=1.0, exclude_bias=False).named_penalized_parameters()}
    assert kept == all_trainable and "frozen.weight" not in kept


def test_with_regularization_reads_parameters_at_call_time():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 1))
    loss_fn = with_regularization(nn.MSELoss(), model, l1=0.1, l2=0.2)
    x, y = torch.randn(8, 3), torch.randn(8, 1)
    before = loss_fn.penalty().item()
    assert before == pytest.approx(_manual_penalty(model, 0.1, 0.2, True), rel=1e-6)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    loss_fn(model(x), y).backward()
    opt.step()
    after = loss_fn.penalty().item()
    assert after == pytest.approx(_manual_penalty(model, 0.1, 0.2, True), rel=1e-6)
    assert abs(after - before) > 1e-4
    model[2].weight.data.zero_()
    assert loss_fn.penalty().item() == pytest.approx(_manual_penalty(model, 0.1, 0.2, True), rel=1e-6)


def test_with_regularization_gradient_is_l1_sign_plus_two_l2_w():
    torch.manual_seed(2)
    model = nn.Linear(3, 2)
    loss_fn = with_regularization(lambda p, t: (p * 0).sum(), model, l1=0.1, l2=0.3)
    loss_fn(model(torch.randn(4, 3)), None).backward()
    w = model.weight.detach()
    torch.testing.assert_close(model.weight.grad, 0.1 * torch.sign(w) + 2 * 0.3 * w)
    torch.testing.assert_close(model.bias.grad, torch.zeros(2))


def _train(optimizer_fn, loss_fn_fn, steps=5):
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 1)).double()
    x, y = torch.randn(16, 4, dtype=torch.float64), torch.randn(16, 1, dtype=torch.float64)
    opt = optimizer_fn(model)
    loss_fn = loss_fn_fn(model)
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def _groups(model, weight_decay):
    decay = [p for n, p in model.named_parameters() if "bias" not in n]
    no_decay = [p for n, p in model.named_parameters() if "bias" in n]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_weight_decay_two_l2_on_weights_group_takes_the_same_steps(optimizer):
    l2 = 0.05
    make = {
        "sgd": lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9),
        "adam": lambda params: torch.optim.Adam(params, lr=0.01),
    }[optimizer]
    decayed = _train(lambda m: make(_groups(m, 2 * l2)), lambda m: nn.MSELoss())
    penalized = _train(lambda m: make(_groups(m, 0.0)), lambda m: with_regularization(nn.MSELoss(), m, l2=l2))
    plain = _train(lambda m: make(_groups(m, 0.0)), lambda m: nn.MSELoss())
    torch.testing.assert_close(penalized, decayed, rtol=1e-10, atol=1e-12)
    assert (penalized - plain).abs().max() > 1e-4


def test_adamw_weight_decay_is_not_an_l2_penalty():
    l2 = 0.05
    adamw = _train(lambda m: torch.optim.AdamW(_groups(m, 2 * l2), lr=0.01), lambda m: nn.MSELoss())
    adam_l2 = _train(lambda m: torch.optim.Adam(_groups(m, 0.0), lr=0.01), lambda m: with_regularization(nn.MSELoss(), m, l2=l2))
    # AdamW with weight_decay = 2 * l2 decays by lr * 2 * l2 * w, outside the adaptive scaling
    assert (adamw - adam_l2).abs().max() > 1e-4


def test_with_regularization_needs_scalar_loss():
    model = nn.Linear(2, 1)
    loss_fn = with_regularization(nn.MSELoss(reduction="none"), model, l2=0.1)
    with pytest.raises(ValueError, match=r"needs loss_fn to return a scalar tensor .*received \(4, 1\)"):
        loss_fn(model(torch.randn(4, 2)), torch.randn(4, 1))


def test_with_regularization_zero_coefficients_return_the_loss():
    model = nn.Linear(2, 1)
    x, y = torch.randn(4, 2), torch.randn(4, 1)
    out = model(x)
    torch.testing.assert_close(with_regularization(nn.MSELoss(), model)(out, y), nn.MSELoss()(out, y))
    assert with_regularization(nn.MSELoss(), model).penalty().item() == 0.0


# ---------------------------------------------------------------------------
# seed regressions (seed code re-implemented here, for comparison only)
# ---------------------------------------------------------------------------
class Seed000CustomLoss(nn.Module):
    """Seed 000's 'misclassifying a 9 costs more' loss, as printed in the blog post."""

    def forward(self, output, target):
        target = torch.LongTensor(target)
        loss = nn.CrossEntropyLoss()(output, target)
        mask = target == 9
        high_cost = (loss * mask.float()).mean()
        return loss + high_cost


def test_seed000_custom_loss_only_rescales_the_batch_cross_entropy():
    rng = np.random.default_rng(28)
    z = rng.normal(size=(8, 10))
    y = np.array([9, 9, 0, 1, 2, 3, 4, 5])
    logits, target = tt(z, requires_grad=True), torch.from_numpy(y)
    seed_loss = Seed000CustomLoss()(logits, target)
    ce = F.cross_entropy(logits, target)
    frac9 = (y == 9).mean()
    # the "high cost" is the batch mean CE times the fraction of 9s: (1 + 2/8) * CE
    assert seed_loss.item() == pytest.approx((1 + frac9) * ce.item(), rel=1e-6)  # mask.float() drops to float32
    seed_grad = torch.autograd.grad(seed_loss, logits)[0]
    ce_grad = torch.autograd.grad(ce, logits)[0]
    # so its gradient is CE's, scaled uniformly: rows that are 9s get no extra weight
    torch.testing.assert_close(seed_grad, (1 + frac9) * ce_grad, rtol=1e-6, atol=1e-9)
    assert Seed000CustomLoss()(logits[2:], target[2:]).item() == pytest.approx(F.cross_entropy(logits[2:], target[2:]).item())

    # ours: mistakes on a true 9 cost c, per sample; rows with other labels keep CE's gradient
    cost = np.zeros((10, 10))
    cost[9, :9] = 5.0
    ours = CostSensitiveLoss(torch.from_numpy(cost), reduction="sum")(logits, target)
    ours_grad = torch.autograd.grad(ours, logits)[0]
    ce_sum_grad = torch.autograd.grad(F.cross_entropy(logits, target, reduction="sum"), logits)[0]
    torch.testing.assert_close(ours_grad[2:], ce_sum_grad[2:])
    p = np.exp(np_log_softmax(z[:2]))
    extra = 5.0 * p * (np.r_[np.ones(9), 0.0] - p[:, :9].sum(axis=1, keepdims=True))
    assert_close64(ours_grad[:2] - ce_sum_grad[:2], extra)
    # the extra gradient raises the true-9 logit (negative gradient) on each 9-row
    assert (ours_grad[:2, 9] < ce_sum_grad[:2, 9]).all()


def test_seed000_network_log_softmax_into_cross_entropy_is_flagged():
    rng = np.random.default_rng(29)
    logits = torch.tensor(rng.normal(size=(8, 10)), dtype=torch.float32, requires_grad=True)
    target = torch.tensor([9, 1, 2, 3, 4, 5, 6, 7])
    network_output = F.log_softmax(logits, dim=1)  # seed 000's Net.forward ends this way
    with pytest.warns(UserWarning, match=r"CrossEntropyLoss received y_pred whose rows exponentiate to 1"):
        loss = check_loss(nn.CrossEntropyLoss(), network_output, target)
    # redundant rather than wrong: log_softmax is idempotent, so the value is CE on the logits
    torch.testing.assert_close(loss, F.cross_entropy(logits, target))


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


class Seed003SCELoss(nn.Module):
    """Seed 003's SCELoss: num_classes fixed at 10, predictions clamped to [1e-4, 1]."""

    def __init__(self, num_classes=10, a=1, b=1):
        super().__init__()
        self.num_classes = num_classes
        self.a = a
        self.b = b
        self.cross_entropy = nn.CrossEntropyLoss()

    def forward(self, pred, labels):
        ce = self.cross_entropy(pred, labels)
        pred = F.softmax(pred, dim=1)
        pred = torch.clamp(pred, min=1e-4, max=1.0)
        label_one_hot = F.one_hot(labels, self.num_classes).float().to(pred.device)
        label_one_hot = torch.clamp(label_one_hot, min=1e-4, max=1.0)
        rce = -1 * torch.sum(pred * torch.log(label_one_hot), dim=1)
        return self.a * ce + self.b * rce.mean()


def test_seed003_sce_agrees_when_no_probability_is_clamped():
    z, y = class_batch(30, (6, 10))
    z = z / 4  # keeps every softmax probability above 1e-4
    logits, target = tt(z), torch.from_numpy(y)
    assert torch.softmax(logits, 1).min() > 1e-4
    torch.testing.assert_close(SCELoss(0.3, 1.2)(logits, target), Seed003SCELoss(a=0.3, b=1.2)(logits, target))


def test_seed003_sce_clamp_leaves_a_floor_at_perfect_predictions():
    logits = torch.zeros(1, 10, dtype=torch.float64)
    logits[0, 0] = 20.0
    target = torch.tensor([0])
    seed_rce = Seed003SCELoss(a=0, b=1)(logits, target).item()
    ours_rce = SCELoss(alpha=0.0, beta=1.0)(logits, target).item()
    # seed: A * sum_{k != y} max(p_k, 1e-4) = A * 9e-4, however confident the prediction
    assert seed_rce == pytest.approx(A_SCE * 9 * 1e-4, rel=1e-6)  # its one-hot is float32
    # ours: A * (1 - p_y) with p_y = 1 / (1 + 9 e^-20), which goes to 0 as the prediction becomes perfect
    p_y = 1 / (1 + 9 * math.exp(-20))
    assert ours_rce == pytest.approx(A_SCE * (1 - p_y), rel=1e-9)
    assert ours_rce < 1e-6 < seed_rce


def test_seed003_sce_hard_coded_num_classes_breaks_other_class_counts():
    logits, target = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    with pytest.raises(RuntimeError):
        Seed003SCELoss()(logits, target)
    z, y = logits.double().numpy(), target.numpy()
    assert_close64(SCELoss()(logits.double(), target), ref_sce(z, y, 0.1, 1.0, "mean"))


def seed003_l2(model, alpha):
    l2_loss = torch.tensor(0.0, requires_grad=True)
    for name, param in model.named_parameters():
        if "bias" not in name:
            l2_loss = l2_loss + (0.5 * alpha * torch.sum(torch.pow(param, 2)))
    return l2_loss


def seed003_l1(model, beta):
    l1_loss = torch.tensor(0.0, requires_grad=True)
    for name, param in model.named_parameters():
        if "bias" not in name:
            l1_loss = l1_loss + beta * torch.sum(torch.abs(param))
    return l1_loss


def test_seed003_regularization_convention_maps_to_half_l2():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    alpha, beta = 1e-2, 3e-3
    seed_penalty = (seed003_l2(model, alpha) + seed003_l1(model, beta)).item()
    ours = with_regularization(nn.MSELoss(), model, l1=beta, l2=alpha / 2).penalty().item()
    assert ours == pytest.approx(seed_penalty, rel=1e-6)
    # the seed's alpha is the SGD weight_decay (gradient alpha * w), ours is l2 = weight_decay / 2
    assert with_regularization(nn.MSELoss(), model, l2=alpha).penalty().item() == pytest.approx(2 * seed003_l2(model, alpha).item(), rel=1e-6)


class Seed004DiceLoss(nn.Module):
    def forward(self, inputs, targets, smooth=1):
        inputs = torch.sigmoid(inputs)  # the seed writes F.sigmoid, the same function
        inputs = inputs.view(-1)
        targets = targets.view(-1)
        intersection = (inputs * targets).sum()
        dice = (2.0 * intersection + smooth) / (inputs.sum() + targets.sum() + smooth)
        return 1 - dice


class Seed004DiceBCELoss(nn.Module):
    def forward(self, inputs, targets, smooth=1):
        inputs = torch.sigmoid(inputs)
        inputs = inputs.view(-1)
        targets = targets.view(-1)
        intersection = (inputs * targets).sum()
        dice_loss = 1 - (2.0 * intersection + smooth) / (inputs.sum() + targets.sum() + smooth)
        bce = F.binary_cross_entropy(inputs, targets, reduction="mean")
        return bce + dice_loss


class Seed004IoULoss(nn.Module):
    def forward(self, inputs, targets, smooth=1):
        inputs = torch.sigmoid(inputs)
        inputs = inputs.view(-1)
        targets = targets.view(-1)
        intersection = (inputs * targets).sum()
        total = (inputs + targets).sum()
        union = total - intersection
        return 1 - (intersection + smooth) / (union + smooth)


class Seed004FocalLoss(nn.Module):
    def forward(self, inputs, targets, alpha=0.8, gamma=2, smooth=1):
        inputs = torch.sigmoid(inputs)
        inputs = inputs.view(-1)
        targets = targets.view(-1)
        bce = F.binary_cross_entropy(inputs, targets, reduction="mean")
        bce_exp = torch.exp(-bce)
        return alpha * (1 - bce_exp) ** gamma * bce


@pytest.mark.parametrize("seed_cls,ours", [(Seed004DiceLoss, DiceLoss()), (Seed004IoULoss, JaccardLoss()), (Seed004DiceBCELoss, DiceBCELoss())])
def test_seed004_overlap_losses_agree_on_contiguous_input_and_fail_on_permuted(seed_cls, ours):
    x, t = _noncontiguous_binary()
    x, t = x.float(), t.float()
    torch.testing.assert_close(ours(x.contiguous(), t.contiguous()), seed_cls()(x.contiguous(), t.contiguous()))
    with pytest.raises(RuntimeError, match="view size is not compatible"):
        seed_cls()(x, t)  # channels-last style permuted masks
    torch.testing.assert_close(ours(x, t), seed_cls()(x.contiguous(), t.contiguous()))


def test_seed004_dice_smooths_numerator_too_so_empty_masks_score_zero_loss():
    # Verified, not a seed bug: with smoothing in the numerator an empty mask predicted empty scores
    # 1 (loss ~ 0); a denominator-only smoothing would give loss 1 here.
    x = torch.full((2, 8), -30.0)
    t = torch.zeros(2, 8)
    seed = Seed004DiceLoss()(x, t).item()
    ours = DiceLoss()(x, t).item()
    p_sum = 16 / (1 + math.exp(30))
    assert ours == pytest.approx(1 - 1 / (p_sum + 1), abs=1e-9)
    assert seed == pytest.approx(ours, abs=1e-9) and ours < 1e-10
    assert DiceLoss(per_sample=True)(x, t).item() < 1e-10


def test_seed004_dice_bce_from_probabilities_loses_the_gradient_of_wrong_logits():
    x = torch.tensor([[-30.0, 2.0, -1.0, 0.5]], requires_grad=True)
    t = torch.tensor([[1.0, 1.0, 0.0, 1.0]])
    n = t.numel()
    dice_grad = torch.autograd.grad(DiceLoss()(x, t), x)[0]
    seed_grad = torch.autograd.grad(Seed004DiceBCELoss()(x, t), x)[0]
    ours_grad = torch.autograd.grad(DiceBCELoss()(x, t), x)[0]
    bce_grad = (torch.sigmoid(x.detach()) - t) / n  # d/dx of mean BCE from logits
    torch.testing.assert_close(ours_grad, dice_grad + bce_grad)
    seed_bce_grad_0 = (seed_grad - dice_grad)[0, 0].item()
    assert bce_grad[0, 0].item() == pytest.approx(-0.25, rel=1e-6)
    # the seed's BCE on sigmoid(x) (epsilon-guarded backward) passes ~7% of it at x = -30
    assert 0 < -seed_bce_grad_0 < 0.1 * 0.25
    # and at x = -200 sigmoid underflows: its BCE is capped at 100 instead of 200, gradient exactly 0
    far = torch.tensor([-200.0], requires_grad=True)
    capped = F.binary_cross_entropy(torch.sigmoid(far), torch.ones(1))
    assert capped.item() == pytest.approx(100.0) and torch.autograd.grad(capped, far)[0].item() == 0.0
    assert FocalLoss(None, 0.0)(far, torch.ones(1)).item() == pytest.approx(200.0)


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


# ---------------------------------------------------------------------------
# module hygiene
# ---------------------------------------------------------------------------
def test_docstring_examples_run():
    result = doctest.testmod(losses_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


def test_public_api_is_listed_and_documented():
    assert losses_module.__doc__.splitlines()[0].startswith("Loss functions for kerastorch")
    for name in losses_module.__all__:
        doc = getattr(losses_module, name).__doc__
        assert doc is not None, name
        assert "Args:" in doc and "Example:" in doc and "Defaults to" in doc, name


def test_losses_module_imports_no_other_kerastorch_module():
    with open(losses_module.__file__, encoding="utf-8") as handle:
        source = handle.read()
    assert "from kerastorch" not in source and "import kerastorch" not in source
    assert "from ." not in source
