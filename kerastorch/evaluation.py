"""Classification read-outs of a net's outputs: outputs -> classes, a confusion matrix, a report.

The one place that decides how outputs become classes, used by the run
directory (``confusion_matrix.png``, ``classification_report.csv``), by
:func:`kerastorch.compare_losses` (its per-class report) and by
:func:`kerastorch.plot_predictions`; also where class names are found on the data.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, List, Optional, Sequence, Tuple, Union

import torch

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["to_classes", "binary_threshold", "classification_reason", "confusion_matrix",
           "classification_report", "per_class_report", "class_names_of"]

REPORT_COLUMNS = ["precision", "recall", "f1-score", "support"]
# the columns of a HuggingFace dataset that may hold the labels, in the order looked at
LABEL_COLUMNS = ("label", "labels", "y", "target")
# how many wrappers (DataLoader -> Subset -> ...) class_names_of looks through
WRAPPER_DEPTH = 8


def binary_threshold(outputs: torch.Tensor, loss_fn: Any = None) -> float:
    """0.5 when single-score outputs are probabilities, 0.0 when they are logits.

    The loss says which, when it is known: ``nn.BCELoss`` and losses with
    ``from_logits=False`` take probabilities; ``nn.BCEWithLogitsLoss`` and losses
    with ``from_logits=True`` take logits. For any other loss the outputs are read
    as probabilities only when every one of them lies in ``[0, 1]`` (decided once
    for the whole set, never per batch, so one run never mixes two scales).

    Example:
        >>> binary_threshold(torch.tensor([0.2, 0.9]), torch.nn.BCEWithLogitsLoss())
        0.0
        >>> binary_threshold(torch.tensor([0.2, 0.9]))
        0.5
    """
    from_logits = getattr(loss_fn, "from_logits", None)
    if isinstance(loss_fn, torch.nn.BCELoss) or from_logits is False:
        return 0.5
    if isinstance(loss_fn, torch.nn.BCEWithLogitsLoss) or from_logits is True:
        return 0.0
    inside = bool(((outputs >= 0) & (outputs <= 1)).all()) if outputs.numel() else False
    return 0.5 if inside else 0.0


def to_classes(outputs: Any, *, loss_fn: Any = None) -> torch.Tensor:
    """Class indices from a net's outputs (or from class indices), as an int64 tensor.

    * integer or bool tensors already are classes (an ``(N, 1)`` column is flattened);
    * floating ``(N, C, ...)`` outputs with ``C > 1`` are scores: the argmax over dim 1;
    * any other floating outputs (``(N,)``, ``(N, 1)``, masks) are binary, element by
      element, with :func:`binary_threshold`'s threshold (``>= 0.5`` for
      probabilities, ``> 0`` for logits).

    Args:
        outputs: a tensor or array.
        loss_fn: the loss the net was trained with, which tells probabilities from
            logits. Defaults to None.

    Returns:
        ``(N,)`` classes for ``(N, C)`` or ``(N, 1)`` outputs; otherwise the shape of
        the outputs without the class dimension.

    Example:
        >>> to_classes(torch.tensor([[2.0, 0.1], [0.0, 1.0]])).tolist()
        [0, 1]
        >>> to_classes(torch.tensor([[-0.3], [1.7]])).tolist()
        [0, 1]
    """
    if not isinstance(outputs, torch.Tensor):
        outputs = torch.as_tensor(outputs)
    outputs = outputs.detach()
    if outputs.ndim == 2 and outputs.shape[1] == 1:
        outputs = outputs[:, 0]
    if not outputs.dtype.is_floating_point:
        return outputs.long()
    if outputs.ndim >= 2 and outputs.shape[1] > 1:
        return outputs.argmax(dim=1)
    threshold = binary_threshold(outputs, loss_fn)
    return (outputs >= threshold if threshold else outputs > threshold).long()


def classification_reason(outputs: Any, labels: Any) -> Optional[str]:
    """None when outputs and labels look like classification, else why they do not.

    Classification is ``(N, C)`` outputs with ``C > 1`` and ``(N,)`` integer labels
    in ``[0, C)``, or ``(N,)``/``(N, 1)`` outputs with one label per sample, every
    label 0 or 1 (any dtype).

    Example:
        >>> classification_reason(torch.zeros(4, 3), torch.tensor([0, 2, 1, 0])) is None
        True
        >>> classification_reason(torch.zeros(4, 1), torch.tensor([0.5, 1.0, 0.0, 2.0]))
        'binary outputs, but the labels are not all 0 or 1'
    """
    if not isinstance(outputs, torch.Tensor) or not isinstance(labels, torch.Tensor):
        return (f"the net's output ({type(outputs).__name__}) and the labels "
                f"({type(labels).__name__}) are not both tensors")
    shape = f"output shape {tuple(outputs.shape)}, labels {labels.dtype} {tuple(labels.shape)}"
    if outputs.ndim == 0 or labels.ndim == 0 or outputs.shape[0] != labels.shape[0]:
        return f"outputs and labels do not pair up ({shape})"
    if outputs.ndim == 2 and outputs.shape[1] > 1:
        integer = not labels.dtype.is_floating_point and not labels.dtype.is_complex \
            and labels.dtype != torch.bool
        if labels.ndim != 1 or not integer:
            return f"(N, C) outputs need (N,) integer labels ({shape})"
        classes = outputs.shape[1]
        if bool(((labels < 0) | (labels >= classes)).any()):
            return f"labels outside [0, {classes}) for a net with {classes} outputs"
        return None
    if outputs.ndim == 1 or (outputs.ndim == 2 and outputs.shape[1] == 1):
        if labels.numel() != outputs.shape[0]:
            return f"(N,) or (N, 1) outputs need one 0/1 label per sample ({shape})"
        if not bool(((labels == 0) | (labels == 1)).all()):
            return "binary outputs, but the labels are not all 0 or 1"
        return None
    return f"outputs of rank {outputs.ndim} ({shape})"


def confusion_matrix(y_true: Any, y_pred: Any, num_classes: int) -> torch.Tensor:
    """Counts of (true, predicted) pairs: rows are true classes, columns predicted ones.

    Example:
        >>> confusion_matrix(torch.tensor([0, 1, 1]), torch.tensor([0, 0, 1]), 2).tolist()
        [[1, 0], [1, 1]]
    """
    y_true = torch.as_tensor(y_true).reshape(-1).long().cpu()
    y_pred = torch.as_tensor(y_pred).reshape(-1).long().cpu()
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred must have as many elements; received "
                         f"{y_true.numel()} and {y_pred.numel()}")
    pairs = y_true * num_classes + y_pred
    return torch.bincount(pairs, minlength=num_classes * num_classes).reshape(
        num_classes, num_classes)


def classification_report(matrix: Any, class_names: Optional[Sequence[Any]] = None
                          ) -> pd.DataFrame:
    """Precision, recall, F1 and support per class from a confusion matrix.

    The rows and columns follow scikit-learn's ``classification_report``: one row
    per class (named by ``class_names`` or its index; a class with no samples and
    no predictions scores 0), then ``accuracy`` (in the ``f1-score`` column, the
    other scores NaN, support the number of samples), ``macro avg`` and
    ``weighted avg``; columns ``precision``, ``recall``, ``f1-score``, ``support``.

    Example:
        >>> report = classification_report([[1, 0], [1, 1]])
        >>> report.loc["0"].tolist(), float(report.loc["accuracy", "f1-score"])
        ([0.5, 1.0, 0.6666666666666666, 1.0], 0.6666666666666666)
    """
    matrix = torch.as_tensor(matrix, dtype=torch.float64)
    classes = matrix.shape[0]
    names = [str(n) for n in (class_names if class_names is not None else range(classes))]
    if len(names) != classes:
        raise ValueError(f"class_names has {len(names)} names for {classes} classes; pass one "
                         f"name per class")
    hits, predicted, support = matrix.diagonal(), matrix.sum(0), matrix.sum(1)
    precision = torch.where(predicted > 0, hits / predicted.clamp(min=1), 0.0)
    recall = torch.where(support > 0, hits / support.clamp(min=1), 0.0)
    both = precision + recall
    f1 = torch.where(both > 0, 2 * precision * recall / both.clamp(min=1e-300), 0.0)
    total = float(support.sum())
    import pandas as pd

    frame = pd.DataFrame({"precision": precision.tolist(), "recall": recall.tolist(),
                          "f1-score": f1.tolist(), "support": support.tolist()}, index=names)
    per_class = frame.copy()
    weights = support / total if total else support
    frame.loc["accuracy"] = [float("nan"), float("nan"),
                             float(hits.sum()) / total if total else 0.0, total]
    frame.loc["macro avg"] = [*per_class[REPORT_COLUMNS[:3]].mean().tolist(), total]
    frame.loc["weighted avg"] = [
        float((torch.tensor(per_class[c].to_numpy()) * weights).sum()) for c in
        REPORT_COLUMNS[:3]] + [total]
    frame.index.name = "class"
    return frame


def per_class_report(outputs: torch.Tensor, labels: torch.Tensor, *,
                     loss_fn: Any = None) -> pd.DataFrame:
    """Precision, recall, F1 and support per class from net outputs and labels.

    ``(N, C)`` outputs with ``C > 1`` are class scores (argmax); ``(N,)``/``(N, 1)``
    outputs or any other shape with as many elements as ``labels`` are binary
    (see :func:`to_classes`), e.g. segmentation masks, counted per element.

    Returns:
        One row per class: ``class`` (int), ``precision``, ``recall``, ``f1``,
        ``support`` (int).

    Example:
        >>> out = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0]])
        >>> per_class_report(out, torch.tensor([0, 1, 1]))[["class", "precision", "recall"]]
           class  precision  recall
        0      0        0.5     1.0
        1      1        1.0     0.5
    """
    outputs, labels = outputs.detach().cpu(), torch.as_tensor(labels).detach().cpu()
    if outputs.ndim == 2 and outputs.shape[1] > 1 and labels.shape == outputs.shape[:1]:
        classes = outputs.shape[1]
        truth = labels.long()
    elif outputs.numel() == labels.numel():
        classes = 2
        outputs = outputs.reshape(-1)
        truth = labels.reshape(-1).round().long()
    else:
        raise ValueError(f"cannot match outputs of shape {tuple(outputs.shape)} with labels of "
                         f"shape {tuple(labels.shape)} for a per-class report")
    predicted = to_classes(outputs, loss_fn=loss_fn)
    report = classification_report(confusion_matrix(truth, predicted, classes))
    rows = report.iloc[:classes].rename(columns={"f1-score": "f1"})
    rows.insert(0, "class", range(classes))
    rows["support"] = rows["support"].astype(int)
    return rows.reset_index(drop=True)


def predictions_and_classes(outputs: torch.Tensor, labels: torch.Tensor, loss_fn: Any = None
                            ) -> Union[str, Tuple[torch.Tensor, torch.Tensor, int]]:
    """``(y_true, y_pred, num_classes)`` for a classification task, else the reason it is not one.

    Example:
        >>> y_true, y_pred, n = predictions_and_classes(torch.tensor([[0.1, 2.0]]),
        ...                                             torch.tensor([1]))
        >>> y_true.tolist(), y_pred.tolist(), n
        ([1], [1], 2)
    """
    reason = classification_reason(outputs, labels)
    if reason is not None:
        return reason
    classes = outputs.shape[1] if outputs.ndim == 2 and outputs.shape[1] > 1 else 2
    return labels.reshape(-1).long(), to_classes(outputs, loss_fn=loss_fn), classes


def class_names_of(data: Any) -> Optional[List[str]]:
    """The class names a DataLoader or Dataset carries, or None when it carries none.

    Looked for, in this order, on ``data`` and then through what it wraps:

    * ``data.classes``: torchvision's ``ImageFolder``, ``DatasetFolder``, ``MNIST``,
      ``CIFAR10`` and many other datasets have it;
    * a HuggingFace ``datasets.Dataset``'s ``features[column].names``, for the first
      of the columns "label", "labels", "y", "target" that is a ``ClassLabel``
      (duck-typed: any ``features`` mapping whose entry has a ``names`` list);
    * a DataLoader's or a ``torch.utils.data.Subset``'s ``.dataset`` (nested ones
      too), and a ``ConcatDataset`` whose parts all carry the same names.

    Names count only as a non-empty list or tuple of distinct str; anything else
    (tensors, ``(X, y)`` pairs, a ``classes`` count or dict) gives None. Nothing is
    iterated and nothing is loaded, so any dataset is cheap to ask.

    Args:
        data: a DataLoader, a Dataset, or anything else (which gives None).

    Returns:
        The names as a list of str, index ``i`` naming class ``i``; or None.

    Example:
        >>> from torch.utils.data import DataLoader, Subset, TensorDataset
        >>> class Pets(TensorDataset):
        ...     classes = ["cat", "dog"]
        >>> pets = Pets(torch.zeros(4, 2), torch.tensor([0, 1, 1, 0]))
        >>> class_names_of(DataLoader(Subset(pets, [0, 1]), batch_size=2))
        ['cat', 'dog']
        >>> class_names_of((torch.zeros(4, 2), torch.zeros(4))) is None
        True
    """
    for _ in range(WRAPPER_DEPTH):
        names = _names(getattr(data, "classes", None)) or _feature_names(data)
        if names is not None:
            return names
        parts = getattr(data, "datasets", None)  # ConcatDataset
        if isinstance(parts, (list, tuple)) and parts:
            found = [class_names_of(part) for part in parts]
            return found[0] if all(f is not None and f == found[0] for f in found) else None
        data = getattr(data, "dataset", None)  # DataLoader, Subset
        if data is None:
            return None
    return None


def _feature_names(data: Any) -> Optional[List[str]]:
    """A HuggingFace dataset's ClassLabel names for its label column, or None."""
    features = getattr(data, "features", None)
    if not isinstance(features, Mapping):
        return None
    for column in LABEL_COLUMNS:
        names = _names(getattr(features.get(column), "names", None))
        if names is not None:
            return names
    return None


def _names(value: Any) -> Optional[List[str]]:
    """``value`` as a list when it is a non-empty list or tuple of distinct str, else None."""
    if not isinstance(value, (list, tuple)) or not value:
        return None
    if not all(isinstance(name, str) for name in value) or len(set(value)) != len(value):
        return None
    return list(value)


def check_class_names(class_names: Any) -> Optional[List[str]]:
    """``class_names`` as a list, after checking it is None or distinct str names.

    Raises:
        TypeError: not a list or tuple, or a name is not a str.
        ValueError: empty, or a name repeats.

    Example:
        >>> check_class_names(("cat", "dog"))
        ['cat', 'dog']
    """
    if class_names is None:
        return None
    if not isinstance(class_names, (list, tuple)):
        raise TypeError(f"class_names must be a list or tuple of str, one per class, or None; "
                        f"received {type(class_names).__name__}")
    for i, name in enumerate(class_names):
        if not isinstance(name, str):
            raise TypeError(f"class_names must hold str names; received "
                            f"{type(name).__name__} {name!r} at index {i}")
    if not class_names:
        raise ValueError("class_names must hold one name per class; received an empty "
                         f"{type(class_names).__name__}")
    repeated = sorted({name for name in class_names if class_names.count(name) > 1})
    if repeated:
        raise ValueError(f"class_names must hold distinct names; received {repeated} more "
                         "than once")
    return list(class_names)
