"""Focal loss with L1/L2 regularization on imbalanced two-ring data (seed 003).

1000 positives on a ring of radius about 5 inside 6000 negatives on a ring of radius
about 8 (generated, no download). The seed's 2-4-8-1 net is trained with
``FocalLoss`` plus an L1 and L2 penalty (``with_regularization``), with early stopping
on the validation ROC AUC. The variant ``weight-decay`` drops the penalty and puts the
L2 term into Adam's ``weight_decay`` instead, on a parameter group that holds the
weights only (biases get none). By default both variants run on ``--seeds`` seeds
(5; 2 with ``--smoke``), from the same initial weights and shuffles within a seed; the
validation ROC AUC and accuracy are printed per variant as mean and 95 % t-interval
over seeds, and weight-decay minus penalty paired by seed (t-interval and paired
t-test, scipy).

Measured here (5 seeds, full data; 24 s wall, one process): the validation ROC AUC
is 0.9793 [0.9780, 0.9806] with the penalty and 0.9798 [0.9784, 0.9811] with weight
decay; the paired difference +0.0004 [-0.0000, +0.0009], p = 0.054, is not significant:
the two ways of applying L2 do as well (accuracy 0.942 vs 0.943, p = 0.51).

    python examples/focal_regularization.py
    python examples/focal_regularization.py --variant weight-decay --log-dir runs
"""

import argparse
import json
import math
import os
import time

import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import BinaryAUROC

from kerastorch import KerasModel
from kerastorch.experiments import LossComparison, format_summary, summary_record
from kerastorch.losses import FocalLoss, with_regularization

VARIANTS = ("penalty", "weight-decay")


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(2, 4)
        self.fc2 = nn.Linear(4, 8)
        self.fc3 = nn.Linear(8, 1)

    def forward(self, x):
        x = F.relu(self.fc1(x))
        x = F.relu(self.fc2(x))
        return self.fc3(x)  # a logit: FocalLoss applies the sigmoid itself


class AUROC(BinaryAUROC):
    """ROC AUC of (N, 1) logits.

    The sigmoid is applied here: torchmetrics (and kerastorch.metrics.AUCROC) guess
    per batch whether scores are logits, so a batch whose logits all fall in [0, 1]
    would be ranked on another scale than the rest of the epoch.
    """

    def update(self, preds, target):
        super().update(preds.reshape(-1).float().sigmoid(), target.reshape(-1).long())


def two_rings(n_positive: int, n_negative: int, seed: int):
    """Points on two noisy rings (radius 5 positive, 8 negative), shuffled, 70/30 split."""
    g = torch.Generator().manual_seed(seed)

    def ring(n, radius):
        r = radius + torch.randn(n, 1, generator=g)
        theta = 2 * math.pi * torch.rand(n, 1, generator=g)
        return torch.cat([r * torch.cos(theta), r * torch.sin(theta)], dim=1)

    x = torch.cat([ring(n_positive, 5.0), ring(n_negative, 8.0)])
    y = torch.cat([torch.ones(n_positive, 1), torch.zeros(n_negative, 1)])
    order = torch.randperm(len(x), generator=g)
    x, y = x[order], y[order]
    n_train = len(x) * 7 // 10
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def make_model(variant: str, net: nn.Module, args) -> KerasModel:
    # alpha=0.75 weights the rare positives 3:1 against the negatives, as the seed did
    focal = FocalLoss(alpha=0.75, gamma=2.0)
    if variant == "penalty":
        loss_fn = with_regularization(focal, net, l1=args.l1, l2=args.l2)
        optimizer = torch.optim.Adam(net.parameters(), lr=args.lr)
    else:
        # Adam adds weight_decay * w to the gradient, and the penalty l2 * sum(w^2) has
        # gradient 2 * l2 * w: so weight_decay = 2 * l2 takes the same L2 steps.
        # L1 has no optimizer counterpart and is left out.
        weights = [p for name, p in net.named_parameters() if not name.endswith("bias")]
        biases = [p for name, p in net.named_parameters() if name.endswith("bias")]
        loss_fn = focal
        optimizer = torch.optim.Adam([{"params": weights, "weight_decay": 2 * args.l2},
                                      {"params": biases, "weight_decay": 0.0}], lr=args.lr)
    return KerasModel(net, loss_fn, metrics_dict={"auc": AUROC()}, optimizer=optimizer)


def save_pictures(run_dir, x, y, predictions, histories):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kerastorch import plot_history

    panels = [("y_true", y)] + [(f"y_pred ({v})", p) for v, p in predictions.items()]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 5))
    for ax, (title, labels) in zip(axes, panels):
        positive = labels.reshape(-1) > 0.5
        ax.scatter(*x[~positive].T, s=3, c="tab:green", label="negative")
        ax.scatter(*x[positive].T, s=3, c="tab:red", label="positive")
        ax.set(title=title, aspect="equal")
        ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(os.path.join(run_dir, "scatter.png"))
    for variant, history in histories.items():
        plot_history(history).savefig(os.path.join(run_dir, f"curves_{variant}.png"))
        history.to_csv(os.path.join(run_dir, f"history_{variant}.csv"), index=False)
    plt.close("all")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", default="both", choices=["both", *VARIANTS])
    parser.add_argument("--n-positive", type=int, default=1000)
    parser.add_argument("--n-negative", type=int, default=6000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=100)
    # the seed's lr=0.002 was still improving at epoch 20; 0.01 peaks near epoch 10
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--l1", type=float, default=1e-4)
    # penalty l2 * sum(w^2); the seed's 0.5 * 1e-4 * sum(w^2) would be --l2 5e-5
    parser.add_argument("--l2", type=float, default=1e-4)
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0,
                        help="the generated data, and the first training seed")
    parser.add_argument("--seeds", type=int, default=None,
                        help="training seeds, paired across the variants (5; 2 with --smoke)")
    parser.add_argument("--log-dir", default=None,
                        help="write pictures and histories (of the first seed) here")
    parser.add_argument("--mixed-precision", default="no", choices=["no", "fp16", "bf16"])
    parser.add_argument("--cpu", action="store_true", help="use the CPU even with a GPU")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--smoke", action="store_true", help="1/5 of the data, 2 seeds (tests)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.smoke:
        args.n_positive, args.n_negative = args.n_positive // 5, args.n_negative // 5

    seeds = args.seeds if args.seeds is not None else (2 if args.smoke else 5)
    seed_list = list(range(args.seed, args.seed + seeds))

    x_train, y_train, x_val, y_val = two_rings(args.n_positive, args.n_negative, args.seed)
    variants = VARIANTS if args.variant == "both" else (args.variant,)
    result, histories, predictions = {"train_size": len(x_train), "val_size": len(x_val),
                                      "seeds": seed_list}, {}, {}
    rows = []  # one per (variant, seed), at the restored (best) epoch
    start = time.perf_counter()
    for seed in seed_list:
        torch.manual_seed(seed)
        initial = Net().state_dict()  # every variant starts from these weights
        for variant in variants:
            net = Net()
            net.load_state_dict(initial)
            model = make_model(variant, net, args)
            torch.manual_seed(seed)  # the same shuffles for every variant
            history = model.fit((x_train, y_train), (x_val, y_val), epochs=args.epochs,
                                batch_size=args.batch_size, monitor="val_auc", mode="max",
                                patience=args.patience, ckpt_path=None, quiet=args.quiet,
                                mixed_precision=args.mixed_precision, cpu=args.cpu)
            # fit has restored the best epoch's weights; score those
            logits = model.predict(x_val)
            auc = AUROC()
            auc.update(logits, y_val)
            rows.append({
                "loss": variant, "seed": seed, "val_auc": auc.compute().item(),
                "val_acc": ((logits > 0).float() == y_val).float().mean().item(),
                "best_epoch": int(history["epoch"][history["val_auc"].idxmax()]),
                "epochs_run": len(history),
                "weight_abs_sum": sum(p.abs().sum().item() for n, p in net.named_parameters()
                                      if not n.endswith("bias"))})
            if seed == seed_list[0]:  # the pictures show the first seed
                histories[variant] = history
                predictions[variant] = (model.predict(torch.cat([x_train, x_val])) > 0).float()
    result["seconds"] = time.perf_counter() - start
    runs = pd.DataFrame(rows)
    # LossComparison's statistics over a runs table whose "loss" column holds the variants
    comparison = LossComparison(pd.DataFrame(), pd.DataFrame(), runs, baseline=variants[0])
    table = comparison.summary(["val_auc", "val_acc"])
    for variant in variants:
        mine = runs[runs["loss"] == variant]
        result[variant] = {"val_auc": float(mine["val_auc"].mean()),
                           "val_acc": float(mine["val_acc"].mean()),
                           "weight_abs_sum": float(mine["weight_abs_sum"].mean()),
                           "val_auc_per_seed": mine["val_auc"].tolist(),
                           "best_epoch": mine["best_epoch"].tolist(),  # per seed
                           "epochs_run": mine["epochs_run"].tolist()}
    result["summary"] = summary_record(table, "val_auc", comparison.baseline)
    result["val_acc_summary"] = summary_record(table, "val_acc", comparison.baseline)

    for variant in variants:
        print(f"{variant} (seed {seed_list[0]}):")
        print(histories[variant].to_string(index=False, float_format="%.4f"))
    print(runs.to_string(index=False, float_format="%.4f"))
    print(f"over seeds {seed_list} (mean, 95% t-interval; diff = variant - "
          f"{comparison.baseline}, paired by seed):")
    print(format_summary(table))
    print(json.dumps(result))
    if args.log_dir:
        from kerastorch.callbacks import new_run_dir

        run_dir = new_run_dir(args.log_dir)
        runs.to_csv(os.path.join(run_dir, "runs.csv"), index=False)
        table.to_csv(os.path.join(run_dir, "summary.csv"), index=False)
        save_pictures(run_dir, torch.cat([x_train, x_val]), torch.cat([y_train, y_val]),
                      predictions, histories)
        print(f"pictures and histories written to {run_dir}")
    return result


if __name__ == "__main__":
    main()
