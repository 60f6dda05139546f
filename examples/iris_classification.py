"""Iris classification (seed 002): a 4-50-50-3 MLP with Adam and CrossEntropyLoss.

Runs offline on scikit-learn's bundled iris data. Prints the history table and the
validation accuracy and micro-averaged ROC AUC; with --log-dir it also writes the
training curves and the ROC curve there.

    python examples/iris_classification.py
    python examples/iris_classification.py --epochs 200 --log-dir runs
"""

import argparse
import json
import os
import time

import torch
import torch.nn.functional as F
import torchmetrics
from torch import nn

from kerastorch import KerasModel


class Model(nn.Module):
    def __init__(self, input_dim: int):
        super().__init__()
        self.layer1 = nn.Linear(input_dim, 50)
        self.layer2 = nn.Linear(50, 50)
        self.layer3 = nn.Linear(50, 3)

    def forward(self, x):
        x = F.relu(self.layer1(x))
        x = F.relu(self.layer2(x))
        return self.layer3(x)  # logits: CrossEntropyLoss applies log-softmax itself


def load_data(seed: int):
    from sklearn.datasets import load_iris
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    x, y = load_iris(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=0.2, random_state=seed,
                                                      stratify=y)
    scaler = StandardScaler().fit(x_train)  # fit on the training split only
    return scaler.transform(x_train), y_train, scaler.transform(x_val), y_val


def micro_roc(probs, labels):
    """Micro-averaged ROC over the one-vs-rest columns of softmax probabilities."""
    from sklearn.metrics import auc, roc_curve

    onehot = F.one_hot(torch.as_tensor(labels), 3).numpy().ravel()
    fpr, tpr, _ = roc_curve(onehot, probs.numpy().ravel())
    return fpr, tpr, auc(fpr, tpr)


def save_pictures(run_dir, history, fpr, tpr, roc_auc):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kerastorch import plot_history

    fig = plot_history(history)
    fig.savefig(os.path.join(run_dir, "curves.png"))
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], "k--")
    ax.plot(fpr, tpr, label=f"micro-average AUC = {roc_auc:.3f}")
    ax.set(xlabel="False positive rate", ylabel="True positive rate", title="ROC curve")
    ax.legend()
    fig.savefig(os.path.join(run_dir, "roc.png"))
    plt.close("all")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--patience", type=int, default=20)
    parser.add_argument("--log-dir", default=None, help="write pictures and history here")
    parser.add_argument("--mixed-precision", default="no", choices=["no", "fp16", "bf16"])
    parser.add_argument("--cpu", action="store_true", help="use the CPU even with a GPU")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    x_train, y_train, x_val, y_val = load_data(args.seed)
    net = Model(x_train.shape[1])
    model = KerasModel(
        net, nn.CrossEntropyLoss(),
        metrics_dict={"acc": torchmetrics.Accuracy(task="multiclass", num_classes=3)},
        optimizer=torch.optim.Adam(net.parameters(), lr=args.lr))
    run_dir = None
    if args.log_dir:
        run_dir = os.path.join(args.log_dir, time.strftime("%Y%m%d-%H%M%S"))
        os.makedirs(run_dir, exist_ok=True)
    start = time.perf_counter()
    history = model.fit((x_train, y_train), (x_val, y_val), epochs=args.epochs,
                        batch_size=args.batch_size, monitor="val_acc", mode="max",
                        patience=args.patience,
                        ckpt_path=os.path.join(run_dir, "best.pt") if run_dir else None,
                        mixed_precision=args.mixed_precision, cpu=args.cpu, quiet=args.quiet)
    seconds = time.perf_counter() - start
    probs = torch.softmax(model.predict(x_val), dim=1)
    fpr, tpr, roc_auc = micro_roc(probs, y_val)
    final = model.evaluate((x_val, y_val), quiet=True)

    print(history.to_string(index=False, float_format="%.4f"))
    result = {"epochs_run": len(history), "val_acc": final["val_acc"],
              "val_loss": final["val_loss"], "micro_auc": roc_auc, "seconds": seconds}
    print(json.dumps(result))
    if run_dir:
        history.to_csv(os.path.join(run_dir, "history.csv"), index=False)
        save_pictures(run_dir, history, fpr, tpr, roc_auc)
        print(f"pictures and history written to {run_dir}")
    return result


if __name__ == "__main__":
    main()
