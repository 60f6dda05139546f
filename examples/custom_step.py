"""Custom training steps: a GAN with two optimizers, and a two-input net fed dict batches.

Both customise ``kerastorch.StepRunner`` in a subclass, as the README describes:

* ``GANStep`` overrides ``train_step``: each batch updates the discriminator with its
  own optimizer, then the generator with the model's optimizer. Every key it returns
  becomes a history column (``train_loss`` is the generator's loss, ``train_d_loss``
  the discriminator's, ``train_d_real``/``train_d_fake`` its mean output on real and
  generated points). The generator learns to draw points on a ring of radius 2.
* ``DictStep`` overrides ``unpack_batch`` only: the batches are dicts, and the net
  takes two inputs (a digit image and its total ink); the default step, metrics and
  validation do the rest.

    python examples/custom_step.py
    python examples/custom_step.py --log-dir runs      # + samples and curves
"""

import argparse
import json
import math
import os
import time

import torch
import torchmetrics
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from kerastorch import KerasModel, StepRunner

RADIUS = 2.0
LATENT = 4


# -- a GAN: one train_step, two optimizers --------------------------------------------

class GAN(nn.Module):
    """Both halves in one module, so that fit moves them to the device together."""

    def __init__(self):
        super().__init__()
        self.generator = nn.Sequential(nn.Linear(LATENT, 64), nn.ReLU(), nn.Linear(64, 64),
                                       nn.ReLU(), nn.Linear(64, 2))
        self.discriminator = nn.Sequential(nn.Linear(2, 64), nn.LeakyReLU(0.2),
                                           nn.Linear(64, 64), nn.LeakyReLU(0.2),
                                           nn.Linear(64, 1))

    def forward(self, z):
        return self.generator(z)


class GANStep(StepRunner):
    """Discriminator step, then generator step, on every batch of real points.

    For one process (under DDP the discriminator, called outside the wrapped forward,
    would not have its gradients averaged across processes).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        gan = self.accelerator.unwrap_model(self.net)
        self.discriminator = gan.discriminator
        if self.stage == "train":  # a new fit starts a fresh discriminator optimizer
            self.d_optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=1e-3,
                                                betas=(0.5, 0.999))

    def unpack_batch(self, batch):
        # the data are real points only, (x,) batches: no labels
        return (batch[0],), None

    def train_step(self, inputs, labels):
        (real,) = inputs
        n = len(real)
        ones, zeros = real.new_ones(n, 1), real.new_zeros(n, 1)
        z = torch.randn(n, LATENT, device=real.device)
        with self.accelerator.autocast():
            fake = self.net(z)
        # the discriminator runs in float32 and outside accelerate's gradient scaler,
        # which belongs to the generator's (prepared) optimizer
        fake = fake.float()
        d_real, d_fake = self.discriminator(real), self.discriminator(fake.detach())
        d_loss = self.loss_fn(d_real, ones) + self.loss_fn(d_fake, zeros)
        self.d_optimizer.zero_grad()
        d_loss.backward()
        self.d_optimizer.step()
        # the generator wants the (just updated) discriminator to call its points real
        g_loss = self.loss_fn(self.discriminator(fake), ones)
        self.optimizer.zero_grad()
        self.accelerator.backward(g_loss)
        self.optimizer.step()
        self.batch_size = n
        return {"train_loss": g_loss.detach(), "train_d_loss": d_loss.detach(),
                "train_d_real": torch.sigmoid(d_real).mean().detach(),
                "train_d_fake": torch.sigmoid(d_fake).mean().detach()}, {}


def ring(n: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    r = RADIUS + 0.1 * torch.randn(n, 1, generator=g)
    theta = 2 * math.pi * torch.rand(n, 1, generator=g)
    return torch.cat([r * torch.cos(theta), r * torch.sin(theta)], dim=1)


def ring_quality(points: torch.Tensor) -> dict:
    """Mean and spread of the radius, and the share of 12 angular sectors covered."""
    radius = points.norm(dim=1)
    sector = ((torch.atan2(points[:, 1], points[:, 0]) + math.pi) / (2 * math.pi) * 12).long()
    counts = torch.bincount(sector.clamp(max=11), minlength=12).float()
    # a sector counts when it holds at least a quarter of its fair share
    covered = (counts >= 0.25 * len(points) / 12).float().mean()
    return {"radius_mean": radius.mean().item(), "radius_std": radius.std().item(),
            "sectors_covered": covered.item()}


def train_gan(args, epochs):
    real = ring(2048, args.seed)
    torch.manual_seed(args.seed)
    gan = GAN()
    with torch.no_grad():
        before = ring_quality(gan(torch.randn(2000, LATENT)))
    model = KerasModel(gan, nn.BCEWithLogitsLoss(),  # GANStep's loss for both players
                       optimizer=torch.optim.Adam(gan.generator.parameters(), lr=1e-3,
                                                  betas=(0.5, 0.999)),
                       step_runner=GANStep)
    loader = DataLoader(TensorDataset(real), batch_size=args.batch_size, shuffle=True)
    # fit keeps the weights of the best epoch by `monitor`; a GAN's losses say little
    # about sample quality, so monitor the epoch number itself: the last epoch is "best"
    history = model.fit(loader, epochs=epochs, monitor="epoch", mode="max", patience=None,
                        ckpt_path=None, quiet=args.quiet, cpu=args.cpu,
                        mixed_precision=args.mixed_precision)
    with torch.no_grad():
        device = next(gan.parameters()).device
        samples = gan(torch.randn(2000, LATENT, device=device)).float().cpu()
    return history, real, before, samples


# -- a two-input net fed dict batches: override unpack_batch only ----------------------

class DigitsDict(Dataset):
    """Digits as dicts: {"image": (1, 8, 8), "ink": (1,), "label": ()}."""

    def __init__(self, images, labels):
        self.images, self.labels = images, labels
        self.ink = images.flatten(1).mean(1, keepdim=True)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return {"image": self.images[i], "ink": self.ink[i], "label": self.labels[i]}


class TwoInputNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                  nn.Flatten())
        self.head = nn.Sequential(nn.Linear(16 * 4 * 4 + 1, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, image, ink):
        return self.head(torch.cat([self.conv(image), ink], dim=1))


class DictStep(StepRunner):
    def unpack_batch(self, batch):
        return (batch["image"], batch["ink"]), batch["label"]  # net(image, ink), labels


def train_two_input(args, epochs):
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = torch.as_tensor(x, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0
    y = torch.as_tensor(y)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(args.seed))
    n_val = len(y) // 4
    val, train = order[:n_val], order[n_val:]
    if args.smoke:
        train, val = train[:400], val[:200]
    torch.manual_seed(args.seed)
    net = TwoInputNet()
    model = KerasModel(net, nn.CrossEntropyLoss(),
                       metrics_dict={"acc": torchmetrics.Accuracy(task="multiclass",
                                                                  num_classes=10)},
                       optimizer=torch.optim.Adam(net.parameters(), lr=args.lr),
                       step_runner=DictStep)
    history = model.fit(
        DataLoader(DigitsDict(x[train], y[train]), batch_size=args.batch_size, shuffle=True),
        DataLoader(DigitsDict(x[val], y[val]), batch_size=args.batch_size),
        epochs=epochs, monitor="val_acc", mode="max", ckpt_path=None, quiet=args.quiet,
        cpu=args.cpu, mixed_precision=args.mixed_precision)
    return history


def save_pictures(run_dir, gan_history, real, samples, two_input_history):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from kerastorch import plot_history

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.scatter(*real.T, s=2, alpha=0.5, label="real")
    ax.scatter(*samples.T, s=2, alpha=0.5, label="generated")
    ax.set(aspect="equal", title="GAN: real and generated points")
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(os.path.join(run_dir, "gan_samples.png"))
    plot_history(gan_history).savefig(os.path.join(run_dir, "gan_curves.png"))
    plot_history(two_input_history).savefig(os.path.join(run_dir, "two_input_curves.png"))
    gan_history.to_csv(os.path.join(run_dir, "history_gan.csv"), index=False)
    two_input_history.to_csv(os.path.join(run_dir, "history_two_input.csv"), index=False)
    plt.close("all")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60, help="GAN epochs")
    parser.add_argument("--two-input-epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3, help="two-input net's Adam lr")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-dir", default=None, help="write pictures and histories here")
    parser.add_argument("--mixed-precision", default="no", choices=["no", "fp16", "bf16"])
    parser.add_argument("--cpu", action="store_true", help="use the CPU even with a GPU")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--smoke", action="store_true",
                        help="fewer epochs, less digits data (tests)")
    args = parser.parse_args(argv)
    gan_epochs = min(args.epochs, 25) if args.smoke else args.epochs
    two_input_epochs = min(args.two_input_epochs, 2) if args.smoke else args.two_input_epochs

    start = time.perf_counter()
    gan_history, real, before, samples = train_gan(args, gan_epochs)
    two_input_history = train_two_input(args, two_input_epochs)
    seconds = time.perf_counter() - start

    print("GAN:")
    print(gan_history.to_string(index=False, float_format="%.4f"))
    print("two-input net on dict batches:")
    print(two_input_history.to_string(index=False, float_format="%.4f"))
    result = {"gan": {"columns": list(gan_history.columns), "epochs_run": len(gan_history),
                      "real": ring_quality(real), "generated_at_start": before,
                      "generated": ring_quality(samples)},
              "two_input": {"columns": list(two_input_history.columns),
                            "epochs_run": len(two_input_history),
                            "val_acc": float(two_input_history["val_acc"].max())},
              "seconds": seconds}
    print(json.dumps(result))
    if args.log_dir:
        from kerastorch.callbacks import new_run_dir

        run_dir = new_run_dir(args.log_dir)
        save_pictures(run_dir, gan_history, real, samples, two_input_history)
        print(f"pictures and histories written to {run_dir}")
    return result


if __name__ == "__main__":
    main()
