"""Outputs -> classes, the confusion matrix and the report, checked against scikit-learn."""

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import classification_report as sk_report
from sklearn.metrics import confusion_matrix as sk_confusion

from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset, TensorDataset

from kerastorch.evaluation import (binary_threshold, check_class_names, class_names_of,
                                   classification_reason, classification_report,
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


class Pets(TensorDataset):
    """A torchvision-like dataset: samples plus a ``classes`` list."""

    def __init__(self, classes=("cat", "dog", "bird")):
        super().__init__(torch.zeros(6, 2), torch.tensor([0, 1, 2, 0, 1, 2]))
        self.classes = classes


class ClassLabelLike:
    """Duck-types ``datasets.ClassLabel``: a ``names`` list."""

    def __init__(self, names):
        self.names = names


class ValueLike:
    """Duck-types ``datasets.Value``: a dtype, no names."""

    dtype = "int64"


class HFLike(Dataset):
    """Duck-types a HuggingFace ``datasets.Dataset``: rows plus a ``features`` dict."""

    def __init__(self, features):
        self.features = features

    def __len__(self):
        return 2

    def __getitem__(self, i):
        return {"x": torch.zeros(2), "label": i}


def test_class_names_of_finds_torchvision_style_classes_through_wrappers():
    pets = Pets()
    assert class_names_of(pets) == ["cat", "dog", "bird"]
    assert class_names_of(DataLoader(pets, batch_size=2)) == ["cat", "dog", "bird"]
    assert class_names_of(Subset(pets, [0, 1])) == ["cat", "dog", "bird"]
    nested = DataLoader(Subset(Subset(pets, [0, 1, 2]), [1]), batch_size=1)
    assert class_names_of(nested) == ["cat", "dog", "bird"]
    assert class_names_of(Pets(("a", "b"))) == ["a", "b"]  # a tuple comes back as a list
    assert class_names_of(ConcatDataset([Pets(), Subset(Pets(), [0])])) == ["cat", "dog", "bird"]
    assert class_names_of(ConcatDataset([Pets(), Pets(["x", "y", "z"])])) is None  # disagree


@pytest.mark.parametrize("column", ["label", "labels", "y", "target"])
def test_class_names_of_reads_a_huggingface_class_label(column):
    features = {"x": ValueLike(), column: ClassLabelLike(["neg", "pos"])}
    assert class_names_of(HFLike(features)) == ["neg", "pos"]
    assert class_names_of(DataLoader(Subset(HFLike(features), [1]))) == ["neg", "pos"]


def test_class_names_of_skips_non_class_label_columns_in_order():
    # "label" is a plain value column: the next label column with names wins
    features = {"label": ValueLike(), "target": ClassLabelLike(["a", "b", "c"]),
                "other": ClassLabelLike(["p", "q"])}
    assert class_names_of(HFLike(features)) == ["a", "b", "c"]
    assert class_names_of(HFLike({"label": ValueLike()})) is None
    assert class_names_of(HFLike({"genre": ClassLabelLike(["p", "q"])})) is None  # not a label


@pytest.mark.parametrize("data", [
    (torch.zeros(3, 2), torch.tensor([0, 1, 0])),          # an (X, y) pair
    torch.zeros(3, 2),
    TensorDataset(torch.zeros(3, 2), torch.tensor([0, 1, 0])),
    DataLoader(TensorDataset(torch.zeros(3, 2))),
    Pets(classes=10),                                      # a count, not names
    Pets(classes=[0, 1, 2]),                               # not str
    Pets(classes=["a", "a"]),                              # repeated
    Pets(classes=[]),
    Pets(classes={"cat": 0, "dog": 1}),
    HFLike(features=["label"]),                            # features not a mapping
    None,
])
def test_class_names_of_gives_none_without_usable_names(data):
    assert class_names_of(data) is None


def test_class_names_of_stops_on_a_dataset_that_wraps_itself():
    class Loop:
        pass

    loop = Loop()
    loop.dataset = loop
    assert class_names_of(loop) is None


def test_check_class_names_names_the_argument_expected_and_received():
    assert check_class_names(None) is None
    assert check_class_names(("cat", "dog")) == ["cat", "dog"]
    with pytest.raises(TypeError, match="class_names must be a list or tuple of str, one per "
                                        "class, or None; received str"):
        check_class_names("cat,dog")
    with pytest.raises(TypeError, match="class_names must hold str names; received int 1 at "
                                        "index 1"):
        check_class_names(["cat", 1])
    with pytest.raises(ValueError, match="class_names must hold one name per class; received "
                                         "an empty list"):
        check_class_names([])
    with pytest.raises(ValueError, match=r"class_names must hold distinct names; received "
                                         r"\['cat'\] more than once"):
        check_class_names(["cat", "dog", "cat"])
