"""Float64 references and input builders shared by the loss tests (not a test module).

Every expected number is computed independently here, in float64 numpy (or explicit
torch formulas), never copied from the implementation.
"""

import math

import numpy as np
import torch

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


# ---------------------------------------------------------------------------
# inputs
# ---------------------------------------------------------------------------
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


def binary_pair(from_logits=True, soft=True):
    x, t = binary_batch(22, shape=(2, 3, 2), soft=soft)
    if not from_logits:
        x = 0.05 + 0.9 * np_sigmoid(x)
    return tt(x, requires_grad=True), tt(t)


def class_pair(shape=(4, 3, 2), ignore_index=None):
    z, y = class_batch(23, shape, ignore_index=ignore_index)
    return tt(z, requires_grad=True), torch.from_numpy(y)


def noncontiguous_binary():
    rng = np.random.default_rng(24)
    x = torch.tensor(rng.normal(size=(3, 5, 4, 2)), dtype=torch.float64).permute(0, 3, 2, 1)
    t = torch.tensor((rng.uniform(size=(3, 5, 4, 2)) < 0.5).astype(np.float64)).permute(0, 3, 2, 1)
    return x, t


def noncontiguous_class():
    rng = np.random.default_rng(25)
    z = torch.tensor(rng.normal(size=(2, 4, 3, 5)), dtype=torch.float64).permute(0, 3, 1, 2)  # (N, C, H, W)
    y = torch.tensor(rng.integers(0, 5, size=(2, 3, 4))).transpose(1, 2)  # (N, H, W)
    return z, y


def assert_half_precision_in_float32(make_loss, kind: str, dtype) -> None:
    """float16/bfloat16 inputs: a float32 loss, gradients in the input dtype, and the value of
    the float64 computation on the rounded inputs to float32 accuracy."""
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
