"""CostSensitiveLoss: closed form, gradients, layouts, misuse, and seed 000's cost-sensitive loss.

The "seed" classes are re-implementations, written for these tests, of the code in the
blog posts under shared/seeds/; each regression test shows where ours differs and why.
"""

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from loss_reference import (
    assert_half_precision_in_float32,
    REDUCTIONS,
    assert_close64,
    class_batch,
    class_pair,
    noncontiguous_class,
    np_log_softmax,
    ref_cost_sensitive,
    tt,
)

from kerastorch.losses import CostSensitiveLoss


# ---------------------------------------------------------------------------
# closed form and stated equalities
# ---------------------------------------------------------------------------
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
GRADCHECK_CASES = {
    "cost_sensitive": (
        lambda: CostSensitiveLoss(torch.tensor([[0.0, 1.0, 5.0], [2.0, 0.0, 1.0], [1.0, 3.0, 0.0]]), 0.7),
        lambda: class_pair(),
    ),
}


@pytest.mark.parametrize("case", sorted(GRADCHECK_CASES))
def test_gradcheck_float64(case):
    make_loss, make_inputs = GRADCHECK_CASES[case]
    loss_fn = make_loss()
    y_pred, y_true = make_inputs()
    assert torch.autograd.gradcheck(lambda p: loss_fn(p, y_true), (y_pred,), eps=1e-6, atol=1e-7)


def test_cost_sensitive_gradients_finite_at_saturated_logits():
    logits = torch.tensor([[100.0, -100.0, -100.0], [-100.0, 100.0, -100.0]], requires_grad=True)
    loss = CostSensitiveLoss(torch.ones(3, 3) - torch.eye(3))(logits, torch.tensor([1, 1]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


# ---------------------------------------------------------------------------
# layouts and dtypes
# ---------------------------------------------------------------------------
NONCONTIGUOUS_CASES = {
    "cost_sensitive": (lambda: CostSensitiveLoss(torch.ones(5, 5) - torch.eye(5), reduction="none"), noncontiguous_class),
}


@pytest.mark.parametrize("case", sorted(NONCONTIGUOUS_CASES))
def test_noncontiguous_inputs_give_the_contiguous_result(case):
    make_loss, make_inputs = NONCONTIGUOUS_CASES[case]
    y_pred, y_true = make_inputs()
    assert not y_pred.is_contiguous() and not y_true.is_contiguous()
    loss_fn = make_loss()
    torch.testing.assert_close(loss_fn(y_pred, y_true), loss_fn(y_pred.contiguous(), y_true.contiguous()))


HALF_CASES = {
    "cost_sensitive": (lambda: CostSensitiveLoss(torch.ones(4, 4) - torch.eye(4)), "class"),
}


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("case", sorted(HALF_CASES))
def test_half_precision_inputs_are_computed_in_float32(case, dtype):
    assert_half_precision_in_float32(*HALF_CASES[case], dtype)


def test_cost_matrix_is_a_buffer_and_the_loss_follows_the_input_dtype():
    loss_fn = CostSensitiveLoss(np.array([[0.0, 2.0], [1.0, 0.0]]))  # float64 buffer
    logits = torch.tensor([[0.3, -0.2]], dtype=torch.float32)
    out = loss_fn(logits, torch.tensor([0]))
    assert out.dtype == torch.float32
    assert "cost_matrix" in dict(loss_fn.named_buffers())


# ---------------------------------------------------------------------------
# argument validation
# ---------------------------------------------------------------------------
BAD_CONSTRUCTIONS = [
    (lambda: CostSensitiveLoss([[0.0, 1.0, 2.0]]), ValueError, r"cost_matrix must be a square \(C, C\) matrix with C >= 2; received shape \(1, 3\)"),
    (lambda: CostSensitiveLoss([[1.0, 1.0], [1.0, 0.0]]), ValueError, r"zero diagonal.*received C\[0, 0\] = 1"),
    (lambda: CostSensitiveLoss([[0.0, -1.0], [1.0, 0.0]]), ValueError, r"cost_matrix must hold finite non-negative costs; received \[\[0.0, -1.0\], \[1.0, 0.0\]\]"),
    (lambda: CostSensitiveLoss("abc"), TypeError, r"cost_matrix must be a square \(C, C\) tensor, array or nested list of numbers; received str"),
    (lambda: CostSensitiveLoss([[0.0, 1.0], [1.0, 0.0]], lambd=-1), ValueError, r"lambd must be >= 0; received -1.0"),
    (lambda: CostSensitiveLoss([[0.0, 1.0], [1.0, 0.0]], reduction="avg"), ValueError, r"received 'avg'"),
]


@pytest.mark.parametrize("build,exc,message", BAD_CONSTRUCTIONS)
def test_bad_arguments_raise_with_expected_and_received(build, exc, message):
    with pytest.raises(exc, match=message):
        build()


_X43 = torch.randn(4, 3)


BAD_CALLS = [
    (CostSensitiveLoss(torch.ones(3, 3) - torch.eye(3)), torch.randn(4, 4), torch.zeros(4, dtype=torch.long), ValueError, r"\(3, 3\) cost_matrix but y_pred has 4 classes on dim 1"),
    (CostSensitiveLoss(torch.ones(3, 3) - torch.eye(3)), _X43, torch.zeros(4, 3), TypeError, r"integer class-index targets .*received dtype torch.float32"),
]


@pytest.mark.parametrize("loss_fn,y_pred,y_true,exc,message", BAD_CALLS)
def test_bad_inputs_raise_with_expected_and_received(loss_fn, y_pred, y_true, exc, message):
    with pytest.raises(exc, match=message):
        loss_fn(y_pred, y_true)


def test_positional_signature_from_the_issue():
    cs = CostSensitiveLoss([[0, 1], [2, 0]], 0.5, "none")
    assert (cs.cost_matrix.tolist(), cs.lambd, cs.reduction) == ([[0.0, 1.0], [2.0, 0.0]], 0.5, "none")


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
