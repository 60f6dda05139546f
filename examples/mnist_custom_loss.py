"""Cost-sensitive digit classification (seed 000): mistakes on 9 cost more than other mistakes.

Trains the seed's small CNN with plain cross entropy and with ``CostSensitiveLoss``
(a true 9 predicted as any other digit costs ``--cost`` instead of 1), on ``--seeds``
seeds (5; 2 with ``--smoke``), both losses from the same initial weights within a
seed, and prints the recall and precision of class 9 and the accuracy: per loss as
mean and 95 % t-interval over seeds, and cost minus ce paired by seed.

Measured here (digits, 5 seeds, 12 epochs, cost 10; 25 s wall with 2 workers on 2
CPU cores): the recall of 9 is 1.000 [1.000, 1.000] with the cost-sensitive loss vs
0.967 [0.947, 0.986] with CE, paired difference +0.033 [+0.014, +0.053], p = 0.0086.
The price in precision of 9 (0.912 [0.810, 1.015] vs 0.979 [0.939, 1.018], difference
-0.066 [-0.194, +0.062], p = 0.22) and in accuracy (0.953 vs 0.961, difference -0.008
[-0.021, +0.005], p = 0.16) is not significant on 5 seeds.

By default it runs offline on scikit-learn's bundled 8x8 digits with the seed's
network sized for 8x8 inputs (see ``Net``). ``--dataset mnist`` reads the real MNIST
IDX files (``train-images-idx3-ubyte[.gz]`` and friends) from ``--data-dir`` with a
small reader below, no torchvision needed; ``--download`` fetches them first with
torchvision when it is installed.

``--log-dir`` writes compare_losses's experiment files (history, runs, per-class
report, summary.md, curves.png, final.png) into a new run folder, and the first
seed's prediction grids: it trains in this process (``--workers 1``), where the nets are.

    python examples/mnist_custom_loss.py
    python examples/mnist_custom_loss.py --log-dir runs          # + curves and prediction grids
    python examples/mnist_custom_loss.py --seeds 10
    python examples/mnist_custom_loss.py --dataset mnist --data-dir ~/data/mnist --epochs 3
"""

import argparse
import gzip
import json
import math
import os
import struct
import time

import numpy as np
import torch
import torch.nn.functional as F
import torchmetrics
from torch import nn
from torchmetrics.classification import MulticlassRecall

from kerastorch import compare_losses
from kerastorch.experiments import format_summary, summary_record
from kerastorch.losses import CostSensitiveLoss

COSTLY_CLASS = 9
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081  # the seed's Normalize constants
# IDX type byte -> numpy dtype (big-endian, as the format stores them)
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class Net(nn.Module):
    """The seed's CNN: conv, pool, conv, dropout, pool, two linear layers.

    For 28x28 MNIST it is the seed's net exactly (5x5 kernels, 20*4*4 = 320
    features). For 8x8 digits the kernels are 3x3 with padding 1 (8 -> 4 -> 2 after
    the pools, 20*2*2 = 80 features): the same layers sized for the input, about 13
    times cheaper than upsampling the digits to 28x28 for the 28x28 net.
    """

    def __init__(self, image_size: int = 28):
        super().__init__()
        kernel, padding = (5, 0) if image_size >= 28 else (3, 1)
        self.conv1 = nn.Conv2d(1, 10, kernel_size=kernel, padding=padding)
        self.conv2 = nn.Conv2d(10, 20, kernel_size=kernel, padding=padding)
        self.conv2_drop = nn.Dropout2d()
        side = ((image_size + 2 * padding - kernel + 1) // 2 + 2 * padding - kernel + 1) // 2
        self.fc1 = nn.Linear(20 * side * side, 50)
        self.fc2 = nn.Linear(50, 10)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.conv1(x), 2))
        x = F.relu(F.max_pool2d(self.conv2_drop(self.conv2(x)), 2))
        x = F.relu(self.fc1(x.flatten(1)))
        x = F.dropout(x, training=self.training)
        # logits: the seed returned log_softmax into CrossEntropyLoss, which applies
        # log-softmax again (harmless but redundant); every loss here expects logits
        return self.fc2(x)


class ClassRecall(MulticlassRecall):
    """Recall of one class, so it can be a history column (``val_recall9``)."""

    def __init__(self, num_classes: int, index: int):
        super().__init__(num_classes=num_classes, average=None)
        self.index = index

    def compute(self):
        return super().compute()[self.index]


# -- data --------------------------------------------------------------------------

def read_idx(path: str) -> np.ndarray:
    """Read an IDX file (the MNIST format), gzipped or not, into a numpy array.

    The header is two zero bytes, a type byte, a dimension count ``d``, then ``d``
    big-endian uint32 sizes; the data follow in C order.

    Raises:
        ValueError: the file is not IDX, or its data do not match the header.
    """
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":  # gzip magic, whatever the file is called
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file: its first bytes are {raw[:4]!r}, expected "
                         "0x00 0x00 <type> <ndim>")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(IDX_DTYPES[raw[2]])
    expected = math.prod(shape) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(f"{path}: the header announces shape {shape} ({expected} bytes) but "
                         f"{len(raw) - header} bytes follow")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def find_idx(data_dir: str, prefix: str, kind: str) -> str:
    """The path of ``<prefix>-<kind>-idx?-ubyte[.gz]`` in data_dir or torchvision's MNIST/raw."""
    ndim = 3 if kind == "images" else 1
    tried = []
    for folder in (data_dir, os.path.join(data_dir, "MNIST", "raw")):
        for sep in ("-", "."):  # some mirrors name them train-images.idx3-ubyte
            for suffix in ("", ".gz"):
                path = os.path.join(folder, f"{prefix}-{kind}{sep}idx{ndim}-ubyte{suffix}")
                if os.path.isfile(path):
                    return path
                tried.append(path)
    raise FileNotFoundError(f"no MNIST {prefix} {kind} file in {data_dir!r}; looked for "
                            f"{tried[0]} (also .gz, and under MNIST/raw). Put the four IDX files "
                            "there, or pass --download (needs torchvision)")


def download_mnist(data_dir: str) -> None:
    """Fetch MNIST with torchvision into data_dir/MNIST/raw (read by find_idx)."""
    try:
        from torchvision import datasets
    except ImportError:
        raise SystemExit("--download needs torchvision, which is not installed (pip install "
                         "torchvision, matching your torch). Without it, download the four "
                         "MNIST IDX files (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
                         "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz) into --data-dir "
                         "yourself") from None
    for train in (True, False):
        datasets.MNIST(data_dir, train=train, download=True)


def load_mnist(data_dir: str):
    """MNIST's train and test splits as normalized (N, 1, 28, 28) float tensors and labels."""
    splits = []
    for prefix in ("train", "t10k"):
        images = read_idx(find_idx(data_dir, prefix, "images"))
        labels = read_idx(find_idx(data_dir, prefix, "labels"))
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise ValueError(f"MNIST {prefix}: images {images.shape} and labels {labels.shape} "
                             "do not pair up as (N, H, W) and (N,)")
        x = (torch.from_numpy(images.astype(np.float32) / 255.0) - MNIST_MEAN) / MNIST_STD
        splits += [x.unsqueeze(1), torch.from_numpy(labels.astype(np.int64))]
    return splits


def load_digits(seed: int):
    """scikit-learn's 8x8 digits, standardized, in a stratified 70/30 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = torch.as_tensor(x, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
    x_train, x_val, y_train, y_val = train_test_split(x, torch.as_tensor(y), test_size=0.3,
                                                      random_state=seed, stratify=y)
    mean, std = x_train.mean(), x_train.std()  # from the training split only
    return (x_train - mean) / std, y_train, (x_val - mean) / std, y_val


def cost_matrix(cost: float) -> torch.Tensor:
    """1 for every mistake, ``cost`` for a true 9 predicted as anything else."""
    matrix = torch.ones(10, 10) - torch.eye(10)
    matrix[COSTLY_CLASS, :COSTLY_CLASS] = cost
    return matrix


def predict(net: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """The net's outputs for ``x`` in eval mode, in batches (MNIST's test set is 10000)."""
    device = next(net.parameters()).device
    net.eval()
    with torch.no_grad():
        return torch.cat([net(x[i:i + batch_size].to(device)).float().cpu()
                          for i in range(0, len(x), batch_size)])


# -- pictures ----------------------------------------------------------------------

def save_pictures(run_dir, names, val_images, val_labels, outputs):
    """The first seed's prediction grids (compare_losses draws curves.png and final.png)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kerastorch import plot_predictions

    # the six true 9s the cross-entropy net found hardest, as each net saw them
    nines = (val_labels == COSTLY_CLASS).nonzero().squeeze(1)
    hardest = nines[outputs[names[0]][nines].softmax(1)[:, COSTLY_CLASS].argsort()[:6]]
    for name in names:
        fig = plot_predictions(val_images[hardest], outputs[name][hardest], val_labels[hardest])
        fig.suptitle(f"{name}: the 9s cross entropy found hardest")
        fig.tight_layout()
        fig.savefig(os.path.join(run_dir, f"predictions_{name}.png"))
    plt.close("all")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="digits", choices=["digits", "mnist"])
    parser.add_argument("--data-dir", default="data/mnist",
                        help="folder of the MNIST IDX files (--dataset mnist)")
    parser.add_argument("--download", action="store_true", help="fetch MNIST with torchvision")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--cost", type=float, default=10.0, help="cost of missing a 9")
    parser.add_argument("--seed", type=int, default=0,
                        help="the digits split, and the first training seed")
    parser.add_argument("--seeds", type=int, default=None,
                        help="training seeds, paired across the losses (5; 2 with --smoke)")
    parser.add_argument("--workers", type=int, default=None,
                        help="processes training runs at once (2; 1 with --smoke or --log-dir)")
    parser.add_argument("--log-dir", default=None, help="write pictures and tables here")
    parser.add_argument("--mixed-precision", default="no", choices=["no", "fp16", "bf16"])
    parser.add_argument("--cpu", action="store_true", help="use the CPU even with a GPU")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--smoke", action="store_true", help="4 epochs, 2 seeds (tests)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)

    if args.dataset == "mnist":
        if args.download:
            download_mnist(args.data_dir)
        x_train, y_train, x_val, y_val = load_mnist(args.data_dir)
    else:
        x_train, y_train, x_val, y_val = load_digits(args.seed)
    epochs = min(args.epochs, 4) if args.smoke else args.epochs
    seeds = args.seeds if args.seeds is not None else (2 if args.smoke else 5)
    workers = args.workers if args.workers is not None else \
        (1 if args.smoke or args.log_dir else 2)
    if args.log_dir and workers > 1:
        raise SystemExit("--log-dir draws the predictions of nets trained in this process: "
                         "pass --workers 1 with it (or leave --workers out)")

    nets = []  # compare_losses builds one start per seed, then one net per run, in order

    def make_net():
        nets.append(Net(image_size=x_train.shape[-1]))
        return nets[-1]

    run_dir = None
    if args.log_dir:
        from kerastorch.callbacks import new_run_dir

        run_dir = new_run_dir(args.log_dir)
    losses = {"ce": nn.CrossEntropyLoss(), "cost": CostSensitiveLoss(cost_matrix(args.cost))}
    metrics = {"acc": torchmetrics.Accuracy(task="multiclass", num_classes=10),
               f"recall{COSTLY_CLASS}": ClassRecall(10, COSTLY_CLASS)}
    start = time.perf_counter()
    # Adam, not the seed's SGD(lr=0.01, momentum=0.5): digits gives 40 steps per epoch
    # where MNIST gives 1875, and SGD was still far from converged after 12 epochs.
    # Workers run one thread each: the numbers equal a one-thread run in this process.
    comparison = compare_losses(
        make_net, losses, (x_train, y_train), (x_val, y_val), epochs=epochs,
        metrics_dict=metrics, seed=args.seed, seeds=seeds, workers=workers, log_dir=run_dir,
        batch_size=args.batch_size,
        optimizer_fn=lambda params: torch.optim.Adam(params, lr=args.lr),
        monitor="val_acc", mode="max", quiet=args.quiet, cpu=args.cpu,
        mixed_precision=args.mixed_precision)
    seconds = time.perf_counter() - start
    history, report = comparison.history, comparison.report
    # precision of 9 per run, from the per-class report at the restored weights
    nine = report[report["class"] == COSTLY_CLASS].set_index(["loss", "seed"])
    comparison.runs["val_precision9"] = [nine.loc[(r.loss, r.seed), "precision"]
                                         for r in comparison.runs.itertuples()]
    table = comparison.summary([f"val_recall{COSTLY_CLASS}", "val_precision9", "val_acc"])

    print(history.to_string(index=False, float_format="%.4f"))
    print(f"over seeds {comparison.seeds} (mean, 95% t-interval; diff = loss - ce, paired "
          "by seed):")
    print(format_summary(table))
    result = {"dataset": args.dataset, "train_size": len(x_train), "val_size": len(x_val),
              "seeds": comparison.seeds, "workers": workers, "seconds": seconds}
    for name in losses:
        runs = comparison.runs[comparison.runs["loss"] == name]
        # means over seeds, at each run's best epoch (whose weights fit restored)
        result[name] = {"val_acc": float(runs["val_acc"].mean()),
                        "recall_9": float(runs[f"val_recall{COSTLY_CLASS}"].mean()),
                        "precision_9": float(runs["val_precision9"].mean()),
                        "epochs_run": runs["epochs_run"].tolist(),  # per seed
                        "recall_9_per_seed": runs[f"val_recall{COSTLY_CLASS}"].tolist()}
    result["summary"] = summary_record(table, f"val_recall{COSTLY_CLASS}", comparison.baseline)
    result["precision_9_summary"] = summary_record(table, "val_precision9", comparison.baseline)
    result["val_acc_summary"] = summary_record(table, "val_acc", comparison.baseline)
    print(json.dumps(result))
    if run_dir:
        first = nets[len(comparison.seeds):len(comparison.seeds) + len(losses)]
        outputs = {name: predict(net, x_val) for name, net in zip(losses, first)}
        save_pictures(run_dir, list(losses), x_val, y_val, outputs)
        print(f"pictures and history written to {run_dir}")
    return result


if __name__ == "__main__":
    main()
