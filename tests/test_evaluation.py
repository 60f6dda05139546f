"""Outputs -> classes, the confusion matrix and the report, checked against scikit-learn."""

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import classification_report as sk_report
from sklearn.metrics import confusion_matrix as sk_confusion

from kerastorch.evaluation import (binary_threshold, classification_reason, classification_report,
                                   confusion_matrix, per_class_report, to_classes)
from kerastorch.losses import DiceLoss, FocalLoss


@pytest.mark.parametrize("seed, classes", [(0, 2), (1, 3), (2, 7)])
def test_report_and_matrix_equal_scikit_learn(seed, classes):
    g = torch.Generator().manual_seed(seed)
    y_true = torch.randint(0, classes, (200,), generator=g)
    y_pred = torch.where(torch.rand(200, generator=g) < 0.6, y_true,
                         torch.randint(0, classes, (200,), generator=g))
    y_true[y_true == classes - 1] = 0  # one class never true: sklearn's zero_division=0 path
    matrix = confusion_matrix(y_true, y_pred, classes)
    np.testing.assert_array_equal(matrix.numpy(), sk_confusion(y_true, y_pred,
                                                               labels=list(range(classes))))
    ours = classification_report(matrix)
    theirs = sk_report(y_true, y_pred, labels=list(range(classes)), output_dict=True,
                       zero_division=0)
    for name in [str(c) for c in range(classes)] + ["macro avg", "weighted avg"]:
        expected = [theirs[name][k] for k in ("precision", "recall", "f1-score", "support")]
        np.testing.assert_allclose(ours.loc[name].to_numpy(), expected, rtol=1e-12)
    assert ours.loc["accuracy", "f1-score"] == pytest.approx(theirs["accuracy"], rel=1e-12)
    assert ours.loc["accuracy", "support"] == 200


def test_per_class_report_is_the_reports_class_rows():
    outputs = torch.tensor([[2.0, 0.0, 0.1], [0.0, 1.0, 0.0], [3.0, 1.0, 0.0], [0.0, 0.0, 5.0]])
    labels = torch.tensor([0, 1, 1, 2])
    rows = per_class_report(outputs, labels)
    assert rows.columns.tolist() == ["class", "precision", "recall", "f1", "support"]
    assert rows["precision"].tolist() == [0.5, 1.0, 1.0]
    assert rows["recall"].tolist() == [1.0, 0.5, 1.0]
    assert rows["support"].tolist() == [1, 2, 1]


@pytest.mark.parametrize("loss, outputs, expected", [
    (torch.nn.BCEWithLogitsLoss(), [0.2, 0.7], 0.0),    # logits, though inside [0, 1]
    (torch.nn.BCELoss(), [0.2, 0.7], 0.5),
    (FocalLoss(from_logits=False), [0.2, 0.7], 0.5),
    (DiceLoss(), [0.2, 0.7], 0.0),                      # from_logits=True by default
    (None, [0.2, 0.7], 0.5),                            # unknown loss: read the values
    (None, [-1.0, 0.7], 0.0),
])
def test_binary_threshold_follows_the_loss_then_the_values(loss, outputs, expected):
    assert binary_threshold(torch.tensor(outputs), loss) == expected


def test_to_classes_for_each_kind_of_output():
    assert to_classes(torch.tensor([[0.1, 0.9, 0.0], [2.0, 1.0, 0.0]])).tolist() == [1, 0]
    assert to_classes(torch.tensor([3, 1])).tolist() == [3, 1]              # already classes
    assert to_classes(torch.tensor([[0.7], [0.2]])).tolist() == [1, 0]      # probabilities
    assert to_classes(torch.tensor([[0.7], [-0.2]])).tolist() == [1, 0]     # logits > 0
    assert to_classes(torch.tensor([0.2, 0.6]), loss_fn=torch.nn.BCEWithLogitsLoss()
                      ).tolist() == [1, 1]
    masks = to_classes(torch.tensor([[[1.0, -1.0]], [[2.0, 3.0]]]))          # per element
    assert masks.shape == (2, 1, 2) and masks.sum().item() == 3


def test_classification_reason_says_why_not():
    assert classification_reason(torch.zeros(3, 2), torch.tensor([0, 1, 2])) == \
        "labels outside [0, 2) for a net with 2 outputs"
    assert "do not pair up" in classification_reason(torch.zeros(3, 2), torch.tensor([0, 1]))
    assert "integer labels" in classification_reason(torch.zeros(3, 2), torch.zeros(3))
    assert "not both tensors" in classification_reason([1, 2], torch.zeros(2))


def test_report_rejects_wrong_class_names():
    with pytest.raises(ValueError, match="class_names has 1 names for 2 classes"):
        classification_report([[1, 0], [0, 1]], ["cat"])
    frame = classification_report([[1, 0], [0, 1]], ["cat", "dog"])
    assert isinstance(frame, pd.DataFrame) and frame.index[:2].tolist() == ["cat", "dog"]
