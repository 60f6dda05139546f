"""Overlap losses for segmentation (seed 004): Dice, Dice+BCE, Jaccard and focal, compared.

A small synthetic set is generated here (no download): noisy 24x24 images with one to
three bright discs or rectangles, whose pixels form the mask. A tiny fully
convolutional net is trained from the same initial weights with each of
``DiceLoss``, ``DiceBCELoss``, ``JaccardLoss`` and ``FocalLoss`` in one
``compare_losses`` call; the validation IoU (intersection over union of the
thresholded masks, over all validation pixels) is printed for each.

    python examples/segmentation_dice.py
    python examples/segmentation_dice.py --log-dir runs     # + image / mask / prediction
"""

import argparse
import json
import os
import time

import numpy as np
import torch
from torch import nn
from torchmetrics.classification import BinaryJaccardIndex

from kerastorch import compare_losses
from kerastorch.losses import DiceBCELoss, DiceLoss, FocalLoss, JaccardLoss


def make_shapes(n: int, size: int, rng: np.random.Generator, noise: float = 0.6):
    """``n`` images (n, 1, size, size) of shapes on Gaussian noise, and their 0/1 masks."""
    rows, cols = np.mgrid[:size, :size]
    masks = np.zeros((n, size, size), dtype=bool)
    for mask in masks:
        for _ in range(rng.integers(1, 4)):
            r, c = rng.integers(4, size - 4, size=2)
            if rng.random() < 0.5:
                radius = rng.uniform(2.5, 6.0)
                mask |= (rows - r) ** 2 + (cols - c) ** 2 <= radius ** 2
            else:
                h, w = rng.integers(3, 9, size=2)
                mask |= (abs(rows - r) <= h // 2 + 1) & (abs(cols - c) <= w // 2 + 1)
    # shapes are only 1 noise-sigma brighter than the background: a pixel alone is
    # ambiguous, so the net has to use its neighbourhood
    images = masks + rng.normal(0.0, noise, size=masks.shape)
    return (torch.tensor(images, dtype=torch.float32).unsqueeze(1),
            torch.tensor(masks, dtype=torch.float32).unsqueeze(1))


def make_net():
    """Four 3x3 convolutions (dilations 1, 2, 4) and a 1x1 head: a 17-pixel field of view."""
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=2, dilation=2), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=4, dilation=4), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.Conv2d(8, 1, 1))  # one logit per pixel


class IoU(BinaryJaccardIndex):
    """Intersection over union of the masks ``sigmoid(logit) > 0.5``, pooled over pixels.

    The sigmoid is applied here: torchmetrics guesses per batch whether scores are
    logits, which a batch of logits that all fall in [0, 1] would fool.
    """

    def update(self, preds, target):
        super().update(preds.float().sigmoid(), target.long())


def iou(logits: torch.Tensor, masks: torch.Tensor) -> float:
    predicted, truth = logits > 0, masks > 0.5
    return ((predicted & truth).sum() / (predicted | truth).sum()).item()


def save_pictures(run_dir, history, images, masks, outputs):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(outputs)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for i, name in enumerate(names):
        rows = history[history["loss"] == name]
        axes[0].plot(rows["epoch"], rows["val_iou"], color=f"C{i}", marker="o", label=name)
        axes[1].plot(rows["epoch"], rows["train_loss"], color=f"C{i}", marker="o", label=name)
    axes[0].set(title="validation IoU", xlabel="epoch")
    axes[1].set(title="training loss (each its own scale)", xlabel="epoch")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(os.path.join(run_dir, "curves.png"))

    shown = range(min(3, len(images)))
    titles = ["image", "mask", *names]
    fig, axes = plt.subplots(len(shown), len(titles), figsize=(2.2 * len(titles), 2.3 * len(shown)),
                             squeeze=False)
    for row in shown:
        pictures = [images[row, 0], masks[row, 0],
                    *((outputs[name][row, 0] > 0).float() for name in names)]
        for ax, picture, title in zip(axes[row], pictures, titles):
            ax.imshow(picture.numpy(), cmap="gray", interpolation="none")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(title)
    fig.tight_layout()
    fig.savefig(os.path.join(run_dir, "predictions.png"))
    plt.close("all")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=320)
    parser.add_argument("--n-val", type=int, default=96)
    parser.add_argument("--image-size", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-dir", default=None, help="write pictures and history here")
    parser.add_argument("--mixed-precision", default="no", choices=["no", "fp16", "bf16"])
    parser.add_argument("--cpu", action="store_true", help="use the CPU even with a GPU")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--smoke", action="store_true", help="less data, 6 epochs (tests)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    epochs = args.epochs
    if args.smoke:
        args.n_train, args.n_val, epochs = 192, 64, min(epochs, 6)

    rng = np.random.default_rng(args.seed)
    x_train, y_train = make_shapes(args.n_train, args.image_size, rng)
    x_val, y_val = make_shapes(args.n_val, args.image_size, rng)
    nets = []  # compare_losses builds the start once, then one net per loss, in order

    def build():
        nets.append(make_net())
        return nets[-1]

    # focal: alpha=0.75 weights the foreground (about 15% of the pixels) up, where the
    # paper's alpha=0.25 would weight it down further and shrink the predicted masks
    losses = {"dice": DiceLoss(), "dice_bce": DiceBCELoss(), "jaccard": JaccardLoss(),
              "focal": FocalLoss(alpha=0.75, gamma=2.0)}
    start = time.perf_counter()
    history, report = compare_losses(
        build, losses, (x_train, y_train), (x_val, y_val), epochs=epochs,
        metrics_dict={"iou": IoU()}, seed=args.seed, batch_size=args.batch_size,
        optimizer_fn=lambda params: torch.optim.Adam(params, lr=args.lr),
        monitor="val_iou", mode="max", quiet=args.quiet, cpu=args.cpu,
        mixed_precision=args.mixed_precision)
    seconds = time.perf_counter() - start

    print(history.to_string(index=False, float_format="%.4f"))
    result = {"foreground": y_train.mean().item(), "train_size": args.n_train,
              "val_size": args.n_val, "seconds": seconds}
    outputs = {}
    for name, net in zip(losses, nets[1:]):
        # each net holds its best epoch's weights (by val_iou), restored by fit
        with torch.no_grad():
            outputs[name] = net.eval()(x_val.to(next(net.parameters()).device)).float().cpu()
        foreground = report[(report["loss"] == name) & (report["class"] == 1)].iloc[0]
        result[name] = {"val_iou": iou(outputs[name], y_val),
                        "dice": float(foreground["f1"]),  # F1 of the pixels is Dice
                        "precision": float(foreground["precision"]),
                        "recall": float(foreground["recall"]),
                        "epochs_run": int((history["loss"] == name).sum())}
    print(json.dumps(result))
    if args.log_dir:
        from kerastorch.callbacks import new_run_dir

        run_dir = new_run_dir(args.log_dir)
        history.to_csv(os.path.join(run_dir, "history.csv"), index=False)
        report.to_csv(os.path.join(run_dir, "per_class_report.csv"), index=False)
        save_pictures(run_dir, history, x_val, y_val, outputs)
        print(f"pictures and history written to {run_dir}")
    return result


if __name__ == "__main__":
    main()
