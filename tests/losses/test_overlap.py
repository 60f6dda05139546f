"""Dice, Jaccard, Tversky and DiceBCE losses: closed forms, equalities, gradients, layouts, misuse, seeds.

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
    noncontiguous_binary,
    np_reduce,
    np_sigmoid,
    ref_bce,
    ref_overlap,
    tt,
)

from kerastorch.losses import DiceBCELoss, DiceLoss, FocalLoss, JaccardLoss, TverskyLoss


# ---------------------------------------------------------------------------
# closed-form values for every reduction
# ---------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------
# stated equalities
# ---------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------
# gradients
# ---------------------------------------------------------------------------
GRADCHECK_CASES = {
    "dice": (lambda: DiceLoss(), lambda: binary_pair()),
    "dice_per_sample_probs": (
        lambda: DiceLoss(from_logits=False, per_sample=True, reduction="none"),
        lambda: binary_pair(False),
    ),
    "jaccard": (lambda: JaccardLoss(per_sample=True), lambda: binary_pair()),
    "tversky": (lambda: TverskyLoss(0.3, 0.7, reduction="sum", per_sample=True), lambda: binary_pair()),
    "dice_bce": (lambda: DiceBCELoss(), lambda: binary_pair(soft=False)),
    "dice_bce_probs": (lambda: DiceBCELoss(from_logits=False, per_sample=True), lambda: binary_pair(False)),
}


@pytest.mark.parametrize("case", sorted(GRADCHECK_CASES))
def test_gradcheck_float64(case):
    make_loss, make_inputs = GRADCHECK_CASES[case]
    loss_fn = make_loss()
    y_pred, y_true = make_inputs()
    assert torch.autograd.gradcheck(lambda p: loss_fn(p, y_true), (y_pred,), eps=1e-6, atol=1e-7)


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
NONCONTIGUOUS_CASES = {
    "dice": (lambda: DiceLoss(), noncontiguous_binary),
    "dice_per_sample": (lambda: DiceLoss(per_sample=True, reduction="none"), noncontiguous_binary),
    "jaccard": (lambda: JaccardLoss(per_sample=True), noncontiguous_binary),
    "tversky": (lambda: TverskyLoss(0.2, 0.8), noncontiguous_binary),
    "dice_bce": (lambda: DiceBCELoss(per_sample=True, reduction="none"), noncontiguous_binary),
}


@pytest.mark.parametrize("case", sorted(NONCONTIGUOUS_CASES))
def test_noncontiguous_inputs_give_the_contiguous_result(case):
    make_loss, make_inputs = NONCONTIGUOUS_CASES[case]
    y_pred, y_true = make_inputs()
    assert not y_pred.is_contiguous() and not y_true.is_contiguous()
    loss_fn = make_loss()
    torch.testing.assert_close(loss_fn(y_pred, y_true), loss_fn(y_pred.contiguous(), y_true.contiguous()))


HALF_CASES = {
    "dice": (lambda: DiceLoss(per_sample=True), "binary"),
    "jaccard": (lambda: JaccardLoss(), "binary"),
    "tversky": (lambda: TverskyLoss(0.3, 0.7), "binary"),
    "dice_bce": (lambda: DiceBCELoss(), "binary"),
}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("case", sorted(HALF_CASES))
def test_half_precision_inputs_are_computed_in_float32(case, dtype):
    assert_half_precision_in_float32(*HALF_CASES[case], dtype)


# ---------------------------------------------------------------------------
# argument validation
# ---------------------------------------------------------------------------
BAD_CONSTRUCTIONS = [
    (lambda: DiceLoss(smooth=-1), ValueError, r"smooth must be >= 0; received -1.0"),
    (lambda: DiceLoss(per_sample=1), TypeError, r"per_sample must be a bool; received int 1"),
    (lambda: JaccardLoss(reduction=None), ValueError, r"reduction must be one of 'mean', 'sum', 'none'; received None"),
    (lambda: TverskyLoss(alpha=-0.5), ValueError, r"alpha must be >= 0; received -0.5"),
    (lambda: TverskyLoss(beta="1"), TypeError, r"beta must be a real number; received str '1'"),
    (lambda: DiceBCELoss(reduction="MEAN"), ValueError, r"received 'MEAN'"),
    (lambda: DiceBCELoss(from_logits=None), TypeError, r"from_logits must be a bool; received NoneType None"),
]


@pytest.mark.parametrize("build,exc,message", BAD_CONSTRUCTIONS)
def test_bad_arguments_raise_with_expected_and_received(build, exc, message):
    with pytest.raises(exc, match=message):
        build()


BAD_CALLS = [
    (DiceLoss(), torch.randn(2, 3), torch.ones(2, 3, 1), ValueError, r"received y_pred \(2, 3\) and y_true \(2, 3, 1\)"),
    (DiceLoss(per_sample=True), torch.tensor(0.5), torch.tensor(1.0), ValueError, r"per_sample=True needs a batch dim 0"),
    (JaccardLoss(from_logits=False), torch.randn(2, 3) - 3, torch.ones(2, 3), ValueError, r"JaccardLoss with from_logits=False expects probabilities"),
    (TverskyLoss(), torch.randn(2, 3), torch.ones(3, 2), ValueError, r"received y_pred \(2, 3\) and y_true \(3, 2\)"),
    (DiceBCELoss(), torch.randn(2, 3), torch.ones(2), ValueError, r"DiceBCELoss expects y_true with the same shape as y_pred; received y_pred \(2, 3\) and y_true \(2,\)"),
]


@pytest.mark.parametrize("loss_fn,y_pred,y_true,exc,message", BAD_CALLS)
def test_bad_inputs_raise_with_expected_and_received(loss_fn, y_pred, y_true, exc, message):
    with pytest.raises(exc, match=message):
        loss_fn(y_pred, y_true)


def test_positional_signatures_from_the_issue():
    for cls in (DiceLoss, JaccardLoss, DiceBCELoss):
        loss = cls(0.5, False, "none", True)
        assert (loss.smooth, loss.from_logits, loss.reduction, loss.per_sample) == (0.5, False, "none", True)
    tv = TverskyLoss(0.1, 0.9, 2.0, False, "sum", True)
    assert (tv.alpha, tv.beta, tv.smooth, tv.from_logits, tv.reduction, tv.per_sample) == (0.1, 0.9, 2.0, False, "sum", True)


# ---------------------------------------------------------------------------
# seed regressions (seed code re-implemented here, for comparison only)
# ---------------------------------------------------------------------------
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


@pytest.mark.parametrize("seed_cls,ours", [(Seed004DiceLoss, DiceLoss()), (Seed004IoULoss, JaccardLoss()), (Seed004DiceBCELoss, DiceBCELoss())])
def test_seed004_overlap_losses_agree_on_contiguous_input_and_fail_on_permuted(seed_cls, ours):
    x, t = noncontiguous_binary()
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
