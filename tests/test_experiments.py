"""compare_losses: identical starts, one table, per-class reports that show each loss's effect."""

import numpy as np
import pytest
import torch
from torch import nn

from kerastorch.experiments import compare_losses, per_class_report
from kerastorch.losses import CostSensitiveLoss, FocalLoss


def digits():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(x / 16.0, y, test_size=0.3, random_state=0,
                                                      stratify=y)
    return (x_train, y_train), (x_val, y_val)


def mlp():
    return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))


def test_cost_on_nines_raises_class_9_recall_over_cross_entropy():
    train, val = digits()
    cost = torch.ones(10, 10) - torch.eye(10)
    cost[9, :9] = 10.0  # a true 9 predicted as anything else costs 10x
    history, report = compare_losses(
        mlp, {"ce": nn.CrossEntropyLoss(), "cost": CostSensitiveLoss(cost, lambd=1.0)},
        train, val, epochs=8, patience=None)
    assert history["loss"].tolist() == ["ce"] * 8 + ["cost"] * 8
    assert list(history.columns[:4]) == ["loss", "seed", "epoch", "train_loss"]
    nine = report[report["class"] == 9].set_index("loss")
    assert nine.loc["cost", "recall"] > nine.loc["ce", "recall"] + 0.05
    # the price: more other digits called 9
    assert nine.loc["cost", "precision"] < nine.loc["ce", "precision"]
    assert nine.loc["ce", "support"] == nine.loc["cost", "support"] == 54


def test_runs_start_from_identical_weights_and_data_order():
    train, val = digits()
    # two identical losses under different names must give identical histories
    history, report = compare_losses(mlp, {"a": nn.CrossEntropyLoss(),
                                           "b": nn.CrossEntropyLoss()},
                                     train, val, epochs=2, seed=3)
    a = history[history["loss"] == "a"].drop(columns="loss").reset_index(drop=True)
    b = history[history["loss"] == "b"].drop(columns="loss").reset_index(drop=True)
    assert a.equals(b)
    assert report[report["loss"] == "a"].drop(columns="loss").reset_index(drop=True).equals(
        report[report["loss"] == "b"].drop(columns="loss").reset_index(drop=True))


def test_focal_alpha_trades_minority_recall_for_precision_on_imbalanced_data():
    from sklearn.datasets import load_breast_cancer
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    x, y = load_breast_cancer(return_X_y=True)
    y = (y == 0).astype(np.float32)  # malignant is the positive, minority class
    rng = np.random.RandomState(0)
    keep = np.concatenate([rng.choice(np.where(y == 1)[0], 30, replace=False),
                           np.where(y == 0)[0]])  # 30 positives against 357 negatives
    x_train, x_val, y_train, y_val = train_test_split(x[keep], y[keep], test_size=0.4,
                                                      random_state=0, stratify=y[keep])
    scaler = StandardScaler().fit(x_train)
    train = (scaler.transform(x_train), y_train[:, None])
    val = (scaler.transform(x_val), y_val[:, None])
    _, report = compare_losses(
        lambda: nn.Linear(30, 1),
        {"bce": nn.BCEWithLogitsLoss(), "focal_a75": FocalLoss(alpha=0.75, gamma=2.0),
         "focal_a25": FocalLoss(alpha=0.25, gamma=2.0)},
        train, val, epochs=5, patience=None,
        optimizer_fn=lambda p: torch.optim.Adam(p, lr=0.02))
    positive = report[report["class"] == 1].set_index("loss")
    negative = report[report["class"] == 0].set_index("loss")
    # alpha weights the positive class: 0.75 favours it, 0.25 favours the majority
    assert positive.loc["focal_a75", "recall"] >= positive.loc["focal_a25", "recall"]
    assert positive.loc["focal_a75", "precision"] < positive.loc["focal_a25", "precision"]
    assert negative.loc["focal_a75", "recall"] < negative.loc["focal_a25", "recall"]
    assert (negative["recall"] > 0.8).all() and (positive["recall"] > 0.8).all()


def test_argument_errors_and_report_shapes():
    with pytest.raises(TypeError, match="losses must be a non-empty dict"):
        compare_losses(mlp, {}, (torch.zeros(4, 64), torch.zeros(4)), None)
    with pytest.raises(ValueError, match=r"cannot match outputs of shape \(3, 2\) with labels"):
        per_class_report(torch.zeros(3, 2), torch.zeros(4))
    masks = per_class_report(torch.tensor([[[1.0, -1.0]], [[2.0, 3.0]]]),
                             torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]]))
    assert masks["support"].tolist() == [2, 2] and masks["recall"].tolist() == [0.5, 1.0]
