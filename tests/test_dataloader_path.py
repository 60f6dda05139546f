"""The DataLoader path in one process: the user's loader is iterated as it is
(data.DeviceBatches), not through Accelerate's prepared loader, and every fit ends
with the weights of a hand-written loop doing the same work, bit for bit."""

import pytest
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from torch import nn
from torch.utils.data import DataLoader, Dataset, IterableDataset, RandomSampler

from kerastorch import KerasModel
from kerastorch.data import DeviceBatches, device_loader


class Rows(Dataset):
    """A map-style dataset (not a TensorDataset), optionally augmenting with the global RNG."""

    def __init__(self, n=50, augment=False):
        gen = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 6, generator=gen)
        self.y = torch.randint(0, 3, (n,), generator=gen)
        self.augment = augment

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        x = self.x[i]
        if self.augment:
            x = x + 0.1 * torch.randn(6)  # the global RNG, as torchvision transforms draw
        return x, self.y[i]


class Stream(IterableDataset):
    def __init__(self, rows):
        self.rows = rows

    def __iter__(self):
        return (self.rows[i] for i in range(len(self.rows)))


class MySampler(RandomSampler):
    """A custom sampler: the fast path never applies to it."""


def _net(dropout=0.0):
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, 3))


def _loader(dataset, workers=0, batch_size=8):
    sampler = None if isinstance(dataset, IterableDataset) else MySampler(dataset)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers)


def _raw(net, loader, epochs, accumulation=1):
    """The hand-written loop: Adam, mean cross-entropy, the last partial accumulation steps."""
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    net.train()
    for _ in range(epochs):
        batches = list(enumerate(loader, start=1)) if accumulation > 1 else enumerate(loader, 1)
        last = len(batches) if accumulation > 1 else None
        for i, (x, y) in batches:
            loss = F.cross_entropy(net(x), y)
            (loss / accumulation).backward()
            if accumulation == 1 or i % accumulation == 0 or i == last:
                opt.step()
                opt.zero_grad()
    return net


def _fit(net, loader, epochs, **kwargs):
    model = KerasModel(net, nn.CrossEntropyLoss(),
                       optimizer=torch.optim.Adam(net.parameters(), lr=1e-2))
    model.fit(loader, epochs=epochs, ckpt_path=None, quiet=True, patience=None, **kwargs)
    return model


def _same(a, b):
    return all(torch.equal(p, q) for p, q in zip(a.state_dict().values(),
                                                 b.state_dict().values()))


@pytest.mark.parametrize("workers", [0, 2])
def test_custom_sampler_over_a_map_style_dataset_equals_the_raw_loop(workers):
    torch.manual_seed(1)
    raw = _raw(_net(), _loader(Rows(), workers), epochs=3)
    rng_raw = torch.get_rng_state()
    torch.manual_seed(1)
    model = _fit(_net(), _loader(Rows(), workers), epochs=3)
    assert _same(raw, model.net)
    assert torch.equal(rng_raw, torch.get_rng_state())  # the same draws, in the same order


def test_the_users_rng_order_is_kept_with_augmentation_and_dropout():
    """No look-ahead: batch k+1 is fetched (and augmented from the global RNG) after
    step k's dropout draws, as in the raw loop; Accelerate's prepared loader fetches
    one batch ahead, which interleaves the draws differently."""
    torch.manual_seed(1)
    raw = _raw(_net(dropout=0.3), _loader(Rows(augment=True)), epochs=2)
    rng_raw = torch.get_rng_state()
    torch.manual_seed(1)
    model = _fit(_net(dropout=0.3), _loader(Rows(augment=True)), epochs=2)
    assert _same(raw, model.net)
    assert torch.equal(rng_raw, torch.get_rng_state())


@pytest.mark.parametrize("iterable", [False, True], ids=["map_style", "iterable"])
def test_gradient_accumulation_steps_on_the_last_partial_group(iterable):
    """50 rows in batches of 8 are 7 batches; accumulating 3 steps after batches 3, 6
    and 7: the last, incomplete group must step (from len(), or a look-ahead for an
    IterableDataset), as with Accelerate's prepared loader."""
    data = Stream(Rows()) if iterable else Rows()
    torch.manual_seed(1)
    raw = _raw(_net(), _loader(data), epochs=2, accumulation=3)
    torch.manual_seed(1)
    model = _fit(_net(), _loader(data), epochs=2, gradient_accumulation_steps=3)
    assert _same(raw, model.net)
    # without the last group's step the weights differ: the test can tell
    torch.manual_seed(1)
    net = _net()
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(2):
        for i, (x, y) in enumerate(_loader(data), start=1):
            (F.cross_entropy(net(x), y) / 3).backward()
            if i % 3 == 0:
                opt.step()
                opt.zero_grad()
        opt.zero_grad()
    assert not _same(net, model.net)


def test_steps_per_epoch_continues_the_loader_across_epochs():
    torch.manual_seed(1)
    seen = []
    loader = _loader(Rows(n=40))  # 5 batches
    model = KerasModel(_net(), nn.CrossEntropyLoss())

    def step_hook(module, args):
        seen.append(args[0].shape[0])

    handle = model.net.register_forward_pre_hook(step_hook)
    model.fit(loader, epochs=3, steps_per_epoch=3, ckpt_path=None, quiet=True)
    handle.remove()
    assert seen == [8] * 9  # 3 epochs x 3 batches, the loader restarting inside epoch 2


def test_one_process_never_builds_accelerates_prepared_loader(monkeypatch):
    import accelerate.data_loader as adl

    def refuse(*args, **kwargs):
        raise AssertionError("prepare_data_loader was called in a single process")

    monkeypatch.setattr(adl, "prepare_data_loader", refuse)
    monkeypatch.setattr("accelerate.accelerator.prepare_data_loader", refuse)
    model = _fit(_net(), _loader(Rows()), epochs=1)
    model.evaluate(_loader(Rows()), quiet=True)
    assert model.predict(_loader(Rows())).shape == (50, 3)


def test_device_batches_move_to_the_device_non_blocking_when_pinned():
    acc = Accelerator(cpu=True)
    loader = DataLoader(Rows(n=10), batch_size=4)
    assert isinstance(device_loader(loader, acc), DeviceBatches)
    assert device_loader([1, 2], acc) == [1, 2]  # not a DataLoader: left to Accelerate

    class MetaAccelerator:
        device = torch.device("meta")
        num_processes = 1

    moved = DeviceBatches(loader, MetaAccelerator())
    assert moved.non_blocking is False
    batches = list(moved)
    assert [b[0].device.type for b in batches] == ["meta"] * 3
    assert [tuple(b[0].shape) for b in batches] == [(4, 6), (4, 6), (2, 6)]
    pinned = DeviceBatches(DataLoader(Rows(n=10), batch_size=4, pin_memory=True),
                           MetaAccelerator())
    assert pinned.non_blocking is True
    # on the CPU the loader's own batches are yielded, not copies
    cpu = DeviceBatches(DataLoader([torch.ones(2)], batch_size=None), acc)
    assert len(cpu) == 1 and torch.equal(next(iter(cpu)), torch.ones(2))
