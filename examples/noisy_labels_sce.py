"""Learning with noisy labels (seeds 001/003): cross entropy vs Symmetric Cross Entropy.

scikit-learn's bundled digits, with ``--noise`` (default 40%) of the training labels
flipped to a different class chosen uniformly (symmetric noise, seeded); the test
labels stay clean. The same MLP is trained with ``nn.CrossEntropyLoss`` and with ``SCELoss``
(Wang et al., ICCV 2019) on ``--seeds`` seeds (5; 2 with ``--smoke``), both losses
from the same initial weights and shuffles within a seed. Printed: the clean-test
accuracy and how many of the flipped training labels each net has learned to
reproduce, per loss as mean and 95 % t-interval over seeds, and SCE minus CE paired
by seed (its interval and the paired t-test's p-value).

Measured here (5 seeds, 40 epochs, 40 % noise; 39 s wall with 2 workers on 2 CPU
cores): SCE's clean test accuracy is 0.956 [0.951, 0.960] vs CE's 0.819 [0.791, 0.846];
the paired difference is +0.137 [+0.110, +0.164], p = 0.00015. CE reproduces 0.307
[0.286, 0.328] of the flipped training labels, SCE 0.031 [0.027, 0.034] (difference
-0.276 [-0.299, -0.254], p = 4.5e-06).

No model selection looks at the clean labels: each run keeps the weights of its
lowest training loss (on the noisy labels) and never stops early. The per-epoch
clean-test accuracy in the history is shown for reading the curves only.

    python examples/noisy_labels_sce.py
    python examples/noisy_labels_sce.py --noise 0.6 --epochs 60 --seeds 10 --log-dir runs

``--log-dir`` writes compare_losses's experiment files (history, runs, per-class
report, summary.md, curves.png, final.png) and accuracy.png into a new run folder.
"""

import argparse
import json
import os
import time

import numpy as np
import torch
import torchmetrics
from torch import nn

from kerastorch import compare_losses
from kerastorch.callbacks import Callback
from kerastorch.experiments import format_summary, summary_record
from kerastorch.losses import SCELoss

KEY_METRICS = ["val_acc", "memorized"]  # clean test accuracy; flipped labels reproduced


def make_net():
    return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(),
                         nn.Linear(256, 10))


def load_data(seed: int, noise: float):
    """Digits in a stratified 70/30 split; ``noise`` of the training labels flipped."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(x / 16.0, y, test_size=0.3,
                                                        random_state=seed, stratify=y)
    rng = np.random.default_rng(seed)
    flipped = rng.choice(len(y_train), size=round(noise * len(y_train)), replace=False)
    y_noisy = y_train.copy()
    # adding 1..9 modulo 10 picks each of the nine other classes with equal probability
    y_noisy[flipped] = (y_train[flipped] + rng.integers(1, 10, size=len(flipped))) % 10
    return x_train, y_train, y_noisy, x_test, y_test


class Memorized(Callback):
    """Adds ``memorized`` to each epoch's history row: the share of the flipped training
    samples whose wrong label the net predicts, at the end of the epoch.

    It runs in whichever process trains the run (also compare_losses's workers), so
    the runs table holds it at each run's restored (best) epoch.
    """

    def __init__(self, x_train, y_noisy, flipped):
        self.x = torch.as_tensor(x_train[flipped], dtype=torch.float32)
        self.y = torch.as_tensor(y_noisy[flipped])

    def on_epoch_end(self, epoch, logs=None):
        net = self.model.net
        was_training = net.training
        net.eval()
        with torch.no_grad():
            predicted = net(self.x.to(next(net.parameters()).device)).argmax(1).cpu()
        net.train(was_training)
        memorized = (predicted == self.y).float().mean().item()
        self.model.history_callback.update_last({"memorized": memorized})


def save_pictures(run_dir, history, names):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for i, name in enumerate(names):
        mean = history[history["loss"] == name].groupby("epoch")[["train_acc", "val_acc"]].mean()
        axes[0].plot(mean.index, mean["train_acc"], color=f"C{i}", label=name)
        axes[1].plot(mean.index, mean["val_acc"], color=f"C{i}", label=name)
    axes[0].set(title="accuracy on the noisy training labels (mean of seeds)", xlabel="epoch")
    axes[1].set(title="accuracy on the clean test labels (mean of seeds)", xlabel="epoch")
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(os.path.join(run_dir, "accuracy.png"))
    plt.close("all")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--noise", type=float, default=0.4, help="fraction of flipped labels")
    # the paper's MNIST setting; its CIFAR-10 one (alpha=0.1) measured about 1 point lower
    parser.add_argument("--alpha", type=float, default=0.01, help="SCE's cross-entropy weight")
    parser.add_argument("--beta", type=float, default=1.0, help="SCE's reverse-CE weight")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=None, help="Adam's (1e-3; 3e-3 with --smoke)")
    parser.add_argument("--seed", type=int, default=0,
                        help="the data's split and flips, and the first training seed")
    parser.add_argument("--seeds", type=int, default=None,
                        help="training seeds, paired across the losses (5; 2 with --smoke)")
    parser.add_argument("--workers", type=int, default=None,
                        help="processes training runs at once (2; 1 with --smoke)")
    parser.add_argument("--log-dir", default=None, help="write pictures and tables here")
    parser.add_argument("--mixed-precision", default="no", choices=["no", "fp16", "bf16"])
    parser.add_argument("--cpu", action="store_true", help="use the CPU even with a GPU")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--smoke", action="store_true",
                        help="15 epochs at a higher learning rate, 2 seeds: the same effect, "
                             "sooner (tests)")
    args = parser.parse_args(argv)
    if not 0 <= args.noise < 0.9:
        # at 90% symmetric noise every wrong class is as frequent as the right one
        parser.error(f"--noise must be in [0, 0.9); received {args.noise}")
    return args


def main(argv=None):
    args = parse_args(argv)
    epochs = min(args.epochs, 15) if args.smoke else args.epochs
    lr = args.lr if args.lr is not None else (3e-3 if args.smoke else 1e-3)
    seeds = args.seeds if args.seeds is not None else (2 if args.smoke else 5)
    workers = args.workers if args.workers is not None else (1 if args.smoke else 2)

    x_train, y_train, y_noisy, x_test, y_test = load_data(args.seed, args.noise)
    flipped = y_noisy != y_train
    run_dir = None
    if args.log_dir:
        from kerastorch.callbacks import new_run_dir

        run_dir = new_run_dir(args.log_dir)
    losses = {"ce": nn.CrossEntropyLoss(),
              "sce": SCELoss(alpha=args.alpha, beta=args.beta, num_classes=10)}
    start = time.perf_counter()
    # workers run one thread each: the numbers equal a one-thread run in this process
    comparison = compare_losses(
        make_net, losses, (x_train, y_noisy), (x_test, y_test), epochs=epochs,
        metrics_dict={"acc": torchmetrics.Accuracy(task="multiclass", num_classes=10)},
        optimizer_fn=lambda params: torch.optim.Adam(params, lr=lr), seed=args.seed,
        seeds=seeds, workers=workers, log_dir=run_dir, batch_size=args.batch_size,
        monitor="train_loss", mode="min", patience=None, quiet=args.quiet, cpu=args.cpu,
        mixed_precision=args.mixed_precision,
        callbacks=[Memorized(x_train, y_noisy, flipped)])
    seconds = time.perf_counter() - start
    history, runs = comparison.history, comparison.runs
    table = comparison.summary(KEY_METRICS)

    print(history.to_string(index=False, float_format="%.4f"))
    print(f"over seeds {comparison.seeds} (mean, 95% t-interval; diff = loss - ce, paired "
          "by seed):")
    print(format_summary(table))
    result = {"noise": float(flipped.mean()), "train_size": len(y_train),
              "test_size": len(y_test), "epochs": epochs, "seeds": comparison.seeds,
              "workers": workers, "seconds": seconds}
    for name in losses:
        # the weights fit restored (lowest noisy training loss): their clean test
        # accuracy, and the flipped training samples whose wrong label they reproduce
        best = runs[runs["loss"] == name]
        peaks = history[history["loss"] == name].groupby("seed")["val_acc"].max()
        result[name] = {"clean_test_acc": float(best["val_acc"].mean()),
                        "memorized": float(best["memorized"].mean()),
                        "peak_test_acc": float(peaks.mean()),
                        "clean_test_acc_per_seed": best["val_acc"].tolist()}
    result["summary"] = summary_record(table, "val_acc", comparison.baseline)
    result["memorized_summary"] = summary_record(table, "memorized", comparison.baseline)
    print(json.dumps(result))
    if run_dir:
        save_pictures(run_dir, history, list(losses))
        print(f"pictures and history written to {run_dir}")
    return result


if __name__ == "__main__":
    main()
