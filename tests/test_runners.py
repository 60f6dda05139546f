"""StepRunner/EpochRunner: batch layouts, custom steps, hook dispatch, and no per-step syncs."""

import pytest
import torch
from conftest import RecordingCallback, TinyNet, loader, make_classification
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

import kerastorch
from kerastorch import EpochRunner, KerasModel, StepRunner
from kerastorch.callbacks import Callback, CallbackList


class TwoInputNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(4, 3)
        self.b = nn.Linear(2, 3)

    def forward(self, x1, x2):
        return self.a(x1) + self.b(x2)


def test_multi_input_batches_call_net_with_all_inputs():
    x, y = make_classification(n=24)
    x2 = torch.randn(24, 2)
    net = TwoInputNet()
    model = KerasModel(net, nn.CrossEntropyLoss(), optimizer=torch.optim.SGD(net.parameters(), 0))
    dl = DataLoader(TensorDataset(x, x2, y), batch_size=10)
    df = model.fit(dl, dl, epochs=1, ckpt_path=None, quiet=True)
    with torch.no_grad():
        expected = nn.functional.cross_entropy(net(x, x2), y).item()
    assert df["val_loss"][0] == pytest.approx(expected, rel=1e-6)
    torch.testing.assert_close(model.predict(dl), net(x, x2).detach())


class DictDataset(Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"image": self.x[i], "label": self.y[i]}


class DictStep(StepRunner):
    def unpack_batch(self, batch):
        return (batch["image"],), batch["label"]


def test_dict_batches_through_an_overridden_unpack_batch_on_instance_and_subclass():
    x, y = make_classification(n=20)
    dl = DataLoader(DictDataset(x, y), batch_size=8)
    net = TinyNet()
    model = KerasModel(net, nn.CrossEntropyLoss(), step_runner=DictStep,
                       optimizer=torch.optim.SGD(net.parameters(), 0))
    df = model.fit(dl, dl, epochs=1, ckpt_path=None, quiet=True)
    with torch.no_grad():
        assert df["val_loss"][0] == pytest.approx(nn.functional.cross_entropy(net(x), y).item(),
                                                  rel=1e-6)

    class DictModel(KerasModel):
        step_runner_class = DictStep

    df2 = DictModel(net, nn.CrossEntropyLoss(),
                    optimizer=torch.optim.SGD(net.parameters(), 0)).fit(
        dl, dl, epochs=1, ckpt_path=None, quiet=True)
    assert df2["val_loss"][0] == pytest.approx(df["val_loss"][0])
    # kerastorch's own classes are untouched by either way of customising
    assert KerasModel.step_runner_class is StepRunner
    assert KerasModel(net, nn.CrossEntropyLoss()).step_runner_class is StepRunner


class Generator(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(2, 2)

    def forward(self, z):
        return self.fc(z)


class GANModule(nn.Module):
    """Holds both halves so one prepare() moves them together."""

    def __init__(self):
        super().__init__()
        self.generator = Generator()
        self.discriminator = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 1))

    def forward(self, z):
        return self.generator(z)


class GANStep(StepRunner):
    """A two-optimizer step: the discriminator, then the generator."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        gan = self.accelerator.unwrap_model(self.net)
        self.d_optimizer = torch.optim.SGD(gan.discriminator.parameters(), lr=0.1)

    def train_step(self, inputs, labels):
        (real,) = inputs
        gan = self.accelerator.unwrap_model(self.net)
        bce = nn.functional.binary_cross_entropy_with_logits
        z = torch.randn_like(real)
        fake = self.net(z)
        ones, zeros = torch.ones(len(real), 1), torch.zeros(len(real), 1)
        d_loss = bce(gan.discriminator(real), ones) + bce(gan.discriminator(fake.detach()), zeros)
        self.d_optimizer.zero_grad()
        d_loss.backward()
        self.d_optimizer.step()
        g_loss = bce(gan.discriminator(fake), ones)
        self.optimizer.zero_grad()
        self.accelerator.backward(g_loss)
        self.optimizer.step()
        self.batch_size = len(real)
        return {"train_loss": g_loss.detach(), "train_d_loss": d_loss.detach()}, {}


def test_gan_style_two_optimizer_step_logs_its_own_columns():
    torch.manual_seed(0)
    real = torch.randn(64, 2) * 0.5 + torch.tensor([2.0, -1.0])
    gan = GANModule()
    d_before = [p.detach().clone() for p in gan.discriminator.parameters()]
    g_before = [p.detach().clone() for p in gan.generator.parameters()]
    target = torch.tensor([2.0, -1.0])
    with torch.no_grad():
        start = torch.dist(gan(torch.randn(512, 2)).mean(0), target)
    model = KerasModel(gan, loss_fn=lambda p, t: p.sum(), step_runner=GANStep,
                       optimizer=torch.optim.Adam(gan.generator.parameters(), lr=0.1))
    df = model.fit((real, torch.zeros(64)), epochs=60, batch_size=16, ckpt_path=None,
                   patience=None, quiet=True)
    assert list(df.columns) == ["epoch", "train_loss", "train_d_loss", "lr"]
    assert all(df["train_d_loss"] > 0)
    assert any(not torch.equal(p, b) for p, b in zip(gan.discriminator.parameters(), d_before))
    assert any(not torch.equal(p, b) for p, b in zip(gan.generator.parameters(), g_before))
    # the generator moved its output mean toward the real data's
    with torch.no_grad():
        end = torch.dist(gan(torch.randn(512, 2)).mean(0), target)
    assert end < 0.5 * start


def test_hook_order_is_exact(recorder):
    x, y = make_classification(n=12)
    model = KerasModel(TinyNet(), nn.CrossEntropyLoss())
    model.fit(loader(x, y, 8), loader(x, y, 12), epochs=2, ckpt_path=None, quiet=True,
              callbacks=[recorder])
    epoch = lambda e: [("on_epoch_begin", e),  # noqa: E731
                       ("on_train_batch_begin", 0), ("on_train_batch_end", 0),
                       ("on_train_batch_begin", 1), ("on_train_batch_end", 1),
                       ("on_val_batch_begin", 0), ("on_val_batch_end", 0),
                       ("on_epoch_end", e)]
    assert recorder.calls == [("on_fit_begin", None), *epoch(1), *epoch(2), ("on_fit_end", None)]


def test_batch_hooks_only_reach_callbacks_that_override_them():
    class EpochOnly(Callback):
        def on_epoch_end(self, epoch, logs=None):
            pass

    cbs = CallbackList([EpochOnly()])
    assert not cbs.wants("on_train_batch_end") and cbs.wants("on_epoch_end")
    cbs = CallbackList([EpochOnly(), RecordingCallback()])
    assert cbs.wants("on_train_batch_end")
    assert cbs._by_hook["on_train_batch_end"] == [cbs.callbacks[1]]


def test_callback_exception_propagates_with_a_note_naming_callback_and_hook():
    class Broken(Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise RuntimeError("boom")

    x, y = make_classification(n=8)
    model = KerasModel(TinyNet(), nn.CrossEntropyLoss())
    with pytest.raises(RuntimeError, match="boom") as info:
        model.fit(loader(x, y), epochs=2, ckpt_path=None, quiet=True, callbacks=[Broken()])
    assert "raised in callback Broken.on_epoch_end" in info.value.__notes__
    # History (first in line) kept the completed row; fit still sets model.history
    assert model.history["epoch"].tolist() == [1]


def test_epoch_runner_alone_returns_float_logs():
    from accelerate import Accelerator

    x, y = make_classification(n=10)
    net = TinyNet()
    acc = Accelerator(cpu=True)
    step = StepRunner(net, nn.CrossEntropyLoss(), acc, stage="val")
    logs = EpochRunner(step)(loader(x, y, 4))
    with torch.no_grad():
        assert logs == {"val_loss": pytest.approx(nn.functional.cross_entropy(net(x), y).item(),
                                                  rel=1e-6)}
    assert isinstance(logs["val_loss"], float)
    with pytest.raises(ValueError, match="stage must be 'train' or 'val'; received 'test'"):
        StepRunner(net, nn.CrossEntropyLoss(), acc, stage="test")
    with pytest.raises(ValueError, match="the train stage needs an optimizer"):
        StepRunner(net, nn.CrossEntropyLoss(), acc, stage="train")


def _count_host_syncs(monkeypatch, fn):
    """Count tensor->host conversions (item, tolist, cpu, float, bool, ...) that kerastorch's
    own code makes while fn runs (torch's CPU Adam calls .item() on its step counter; that
    is the optimizer's, and no device sync)."""
    import sys

    counts = {"n": 0}
    for name in ("item", "tolist", "cpu", "numpy", "__float__", "__bool__", "__int__"):
        real = getattr(torch.Tensor, name)

        def wrapper(self, *a, _real=real, **k):
            if "/kerastorch/" in sys._getframe(1).f_code.co_filename:
                counts["n"] += 1
            return _real(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, wrapper)
    fn()
    monkeypatch.undo()
    return counts["n"]


def test_no_framework_host_sync_per_training_step(monkeypatch):
    import torchmetrics

    x, y = make_classification(n=256)
    acc = torchmetrics.Accuracy(task="multiclass", num_classes=3)

    def run(batch_size, epochs=2):
        model = KerasModel(TinyNet(), nn.CrossEntropyLoss(), metrics_dict={"acc": acc})
        return lambda: model.fit(loader(x, y, batch_size), epochs=epochs, ckpt_path=None,
                                 quiet=True)

    few = _count_host_syncs(monkeypatch, run(128))   # 2 steps per epoch
    many = _count_host_syncs(monkeypatch, run(8))    # 32 steps per epoch
    assert many == few, f"syncs grow with the number of steps: {few} -> {many}"
    # per epoch: one read of the loss totals and one compute per metric
    per_epoch = (_count_host_syncs(monkeypatch, run(8, epochs=3)) - few) / 1
    assert per_epoch == 2


def test_public_api_is_what_all_lists():
    for name in kerastorch.__all__:
        assert hasattr(kerastorch, name)
    assert {"KerasModel", "StepRunner", "EpochRunner", "callbacks"} <= set(kerastorch.__all__)


def test_stop_training_set_mid_epoch_ends_the_epoch_after_that_batch(recorder):
    class StopAtStep(Callback):
        def on_train_batch_end(self, step, logs=None):
            if step == 1:
                self.model.stop_training = True

    x, y = make_classification(n=40)
    net = TinyNet()
    model = KerasModel(net, nn.CrossEntropyLoss(), optimizer=torch.optim.SGD(net.parameters(), 0))
    df = model.fit(loader(x, y, 8), epochs=3, ckpt_path=None, quiet=True,
                   callbacks=[StopAtStep(), recorder])
    assert df["epoch"].tolist() == [1]
    assert [c for c in recorder.calls if c[0] == "on_train_batch_end"] == [
        ("on_train_batch_end", 0), ("on_train_batch_end", 1)]
    with torch.no_grad():  # the epoch's loss covers the 16 samples it ran
        assert df["train_loss"][0] == pytest.approx(
            nn.functional.cross_entropy(net(x[:16]), y[:16]).item(), rel=1e-6)


def test_on_fit_end_says_how_the_fit_ended_and_logs_are_private_per_callback():
    ends, seen = [], []

    class Vandal(Callback):
        def on_epoch_end(self, epoch, logs=None):
            logs["train_loss"] = -1.0

    class Watcher(Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append(logs["train_loss"])

        def on_fit_end(self, logs=None):
            ends.append(logs)

    x, y = make_classification(n=16)
    model = KerasModel(TinyNet(), nn.CrossEntropyLoss())
    df = model.fit(loader(x, y), epochs=2, ckpt_path=None, quiet=True,
                   callbacks=[Vandal(), Watcher()])
    assert seen == df["train_loss"].tolist() and -1.0 not in seen
    assert ends == [{"epochs_completed": 2, "stopped_early": False, "interrupted": False,
                     "error": None}]
