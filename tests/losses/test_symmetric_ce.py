"""SCELoss (symmetric cross entropy): closed form, gradients, layouts, misuse, seed regressions.

The "seed" classes are re-implementations, written for these tests, of the code in the
blog posts under shared/seeds/; each regression test shows where ours differs and why.
"""

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from loss_reference import (
    assert_half_precision_in_float32,
    A_SCE,
    REDUCTIONS,
    assert_close64,
    class_batch,
    class_pair,
    noncontiguous_class,
    ref_sce,
    tt,
)

from kerastorch.losses import SCELoss


# ---------------------------------------------------------------------------
# closed form and stated equalities
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("alpha,beta", [(0.1, 1.0), (1.0, 0.5), (0.0, 2.0)])
@pytest.mark.parametrize("shape", [(7, 5), (2, 5, 3)])
def test_sce_matches_formula(reduction, alpha, beta, shape):
    z, y = class_batch(6, shape)
    out = SCELoss(alpha, beta, None, reduction)(tt(z), torch.from_numpy(y))
    assert_close64(out, ref_sce(z, y, alpha, beta, reduction))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_sce_is_alpha_ce_plus_beta_scaled_one_minus_p_y(reduction):
    z, y = class_batch(20, (9, 6))
    logits, target = tt(z), torch.from_numpy(y)
    p_y = torch.softmax(logits, dim=1).gather(1, target[:, None])[:, 0]
    per_sample = 0.4 * F.cross_entropy(logits, target, reduction="none") + 1.5 * A_SCE * (1 - p_y)
    expected = {"mean": per_sample.mean(), "sum": per_sample.sum(), "none": per_sample}[reduction]
    torch.testing.assert_close(SCELoss(0.4, 1.5, 6, reduction)(logits, target), expected)


# ---------------------------------------------------------------------------
# gradients
# ---------------------------------------------------------------------------
GRADCHECK_CASES = {
    "sce": (lambda: SCELoss(0.1, 1.0), lambda: class_pair()),
}


@pytest.mark.parametrize("case", sorted(GRADCHECK_CASES))
def test_gradcheck_float64(case):
    make_loss, make_inputs = GRADCHECK_CASES[case]
    loss_fn = make_loss()
    y_pred, y_true = make_inputs()
    assert torch.autograd.gradcheck(lambda p: loss_fn(p, y_true), (y_pred,), eps=1e-6, atol=1e-7)


def test_sce_gradients_finite_at_saturated_logits():
    logits = torch.tensor([[100.0, -100.0, -100.0], [-100.0, 100.0, -100.0]], requires_grad=True)
    loss = SCELoss()(logits, torch.tensor([1, 1]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


# ---------------------------------------------------------------------------
# layouts and dtypes
# ---------------------------------------------------------------------------
NONCONTIGUOUS_CASES = {
    "sce": (lambda: SCELoss(reduction="none"), noncontiguous_class),
}


@pytest.mark.parametrize("case", sorted(NONCONTIGUOUS_CASES))
def test_noncontiguous_inputs_give_the_contiguous_result(case):
    make_loss, make_inputs = NONCONTIGUOUS_CASES[case]
    y_pred, y_true = make_inputs()
    assert not y_pred.is_contiguous() and not y_true.is_contiguous()
    loss_fn = make_loss()
    torch.testing.assert_close(loss_fn(y_pred, y_true), loss_fn(y_pred.contiguous(), y_true.contiguous()))


HALF_CASES = {
    "sce": (lambda: SCELoss(), "class"),
}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("case", sorted(HALF_CASES))
def test_half_precision_inputs_are_computed_in_float32(case, dtype):
    assert_half_precision_in_float32(*HALF_CASES[case], dtype)


# ---------------------------------------------------------------------------
# argument validation
# ---------------------------------------------------------------------------
BAD_CONSTRUCTIONS = [
    (lambda: SCELoss(num_classes=1), ValueError, r"num_classes must be >= 2; received 1"),
    (lambda: SCELoss(num_classes=2.0), TypeError, r"num_classes must be an int or None; received float 2.0"),
    (lambda: SCELoss(beta=-0.1), ValueError, r"beta must be >= 0; received -0.1"),
    (lambda: SCELoss(reduction="batchmean"), ValueError, r"received 'batchmean'"),
]


@pytest.mark.parametrize("build,exc,message", BAD_CONSTRUCTIONS)
def test_bad_arguments_raise_with_expected_and_received(build, exc, message):
    with pytest.raises(exc, match=message):
        build()


_X43 = torch.randn(4, 3)


BAD_CALLS = [
    (SCELoss(num_classes=10), _X43, torch.zeros(4, dtype=torch.long), ValueError, r"num_classes=10; received y_pred with 3 classes on dim 1 \(shape \(4, 3\)\)"),
    (SCELoss(), _X43, torch.zeros(3, dtype=torch.long), ValueError, r"expects y_true of shape \(4,\) .*y_true \(3,\)"),
]


@pytest.mark.parametrize("loss_fn,y_pred,y_true,exc,message", BAD_CALLS)
def test_bad_inputs_raise_with_expected_and_received(loss_fn, y_pred, y_true, exc, message):
    with pytest.raises(exc, match=message):
        loss_fn(y_pred, y_true)


def test_positional_signature_from_the_issue():
    sce = SCELoss(0.2, 0.9, 4, "sum")
    assert (sce.alpha, sce.beta, sce.num_classes, sce.reduction) == (0.2, 0.9, 4, "sum")


# ---------------------------------------------------------------------------
# seed regressions (seed code re-implemented here, for comparison only)
# ---------------------------------------------------------------------------
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
