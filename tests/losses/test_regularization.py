"""with_regularization / RegularizedLoss: penalties, gradients, the weight-decay relation, misuse.

The "seed" classes are re-implementations, written for these tests, of the code in the
blog posts under shared/seeds/; each regression test shows where ours differs and why.
"""

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from kerastorch.losses import RegularizedLoss, with_regularization


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
# argument validation
# ---------------------------------------------------------------------------
_NET = nn.Linear(2, 1)


BAD_CONSTRUCTIONS = [
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


def test_positional_signature_from_the_issue():
    reg = with_regularization(nn.MSELoss(), _NET, 0.1, 0.2, False)
    assert (reg.l1, reg.l2, reg.exclude_bias) == (0.1, 0.2, False)


# ---------------------------------------------------------------------------
# seed regressions (seed code re-implemented here, for comparison only)
# ---------------------------------------------------------------------------
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
