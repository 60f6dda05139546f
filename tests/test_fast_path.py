"""The in-memory fast path (fit(..., fast_data=True)) and fit(..., compile=True).

The fast path must be invisible except in speed: the same batches in the same
order as the DataLoader, the same RNG state afterwards, bit-identical histories
and weights, and the ordinary DataLoader wherever it cannot promise that.
"""

import shutil
from types import SimpleNamespace

import pytest
import torch
import torchmetrics
from accelerate import Accelerator
from accelerate.utils import DistributedType
from conftest import RecordingCallback, make_classification
from torch import nn
from torch.utils.data import (DataLoader, Dataset, RandomSampler, SequentialSampler,
                              TensorDataset, default_collate)

from kerastorch import KerasModel
from kerastorch.data import TensorBatches, fast_loader

CPU = torch.device("cpu")


def plain_accelerator(processes=1, grad_accum=1):
    """The attributes fast_loader reads, for setups one CPU process cannot build."""
    kind = DistributedType.NO if processes == 1 else DistributedType.MULTI_CPU
    return SimpleNamespace(num_processes=processes, gradient_accumulation_steps=grad_accum,
                           distributed_type=kind, device=CPU)


def epochs_of_batches(loader, epochs=2):
    return [batch for _ in range(epochs) for batch in loader]


def assert_same_batches(expected, got):
    assert len(got) == len(expected)
    for e, g in zip(expected, got):
        assert type(g) is type(e) is list  # default_collate turns sample tuples into lists
        assert len(g) == len(e)
        for a, b in zip(e, g):
            assert a.dtype == b.dtype and a.shape == b.shape and b.is_contiguous()
            assert torch.equal(a, b)


LOADERS = {
    "sequential": dict(batch_size=10),
    "shuffled": dict(batch_size=10, shuffle=True),
    "shuffled_drop_last": dict(batch_size=10, shuffle=True, drop_last=True),
    "sequential_drop_last": dict(batch_size=10, drop_last=True),
    "even_batches": dict(batch_size=103, shuffle=True),
    "batch_larger_than_data": dict(batch_size=500, shuffle=True),
    "loader_generator": dict(batch_size=10, shuffle=True,
                             generator=torch.Generator().manual_seed(7)),
    "loader_generator_unshuffled": dict(batch_size=10,
                                        generator=torch.Generator().manual_seed(7)),
}


@pytest.mark.parametrize("name", sorted(LOADERS))
def test_batches_and_rng_state_equal_the_dataloaders(name):
    kwargs = LOADERS[name]
    x, x2, y = torch.randn(103, 3), torch.randn(103, 2).double(), torch.arange(103)
    loader = DataLoader(TensorDataset(x, x2, y), **kwargs)
    fast = fast_loader(loader, plain_accelerator())
    assert isinstance(fast, TensorBatches)
    assert len(fast) == len(loader)
    generator = kwargs.get("generator")
    start = generator.get_state() if generator is not None else None

    torch.manual_seed(123)
    expected = epochs_of_batches(loader)
    rng_after, gen_after = torch.get_rng_state(), generator and generator.get_state()
    torch.manual_seed(123)
    if generator is not None:
        generator.set_state(start)
    got = epochs_of_batches(fast)

    assert_same_batches(expected, got)
    # later random draws (dropout, augmentation) see the same RNG state
    assert torch.equal(torch.get_rng_state(), rng_after)
    if generator is not None:
        assert torch.equal(generator.get_state(), gen_after)
    if kwargs.get("shuffle"):
        first_epoch = torch.cat([b[2] for b in got[:len(fast)]])
        assert not torch.equal(first_epoch, torch.arange(len(first_epoch)))


def test_a_sampler_generator_and_a_loader_generator_are_each_replayed():
    x, y = make_classification(n=50)
    sampler_gen, loader_gen = torch.Generator().manual_seed(1), torch.Generator().manual_seed(2)
    dataset = TensorDataset(x, y)
    loader = DataLoader(dataset, batch_size=8, generator=loader_gen,
                        sampler=RandomSampler(dataset, generator=sampler_gen))
    fast = fast_loader(loader, plain_accelerator())
    states = sampler_gen.get_state(), loader_gen.get_state()
    expected = epochs_of_batches(loader, 3)
    after = sampler_gen.get_state(), loader_gen.get_state()
    sampler_gen.set_state(states[0])
    loader_gen.set_state(states[1])
    assert_same_batches(expected, epochs_of_batches(fast, 3))
    assert torch.equal(sampler_gen.get_state(), after[0])
    assert torch.equal(loader_gen.get_state(), after[1])


def test_a_batch_is_a_copy_so_in_place_edits_leave_the_data_alone():
    x, y = torch.zeros(6, 2), torch.arange(6)
    for shuffle in (False, True):
        for batch in TensorBatches((x, y), batch_size=4, shuffle=shuffle):
            batch[0].add_(1.0)
        assert torch.equal(x, torch.zeros(6, 2))


class PairDataset(Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


class MyTensorDataset(TensorDataset):
    pass


class MyRandomSampler(RandomSampler):
    pass


class MyLoader(DataLoader):
    pass


def _fallback_loaders():
    x, y = make_classification(n=40)
    ds = TensorDataset(x, y)
    return {
        "custom_collate": DataLoader(ds, batch_size=8, collate_fn=lambda b: default_collate(b)),
        "not_a_tensor_dataset": DataLoader(PairDataset(x, y), batch_size=8),
        "tensor_dataset_subclass": DataLoader(MyTensorDataset(x, y), batch_size=8),
        "sampler_subclass": DataLoader(ds, batch_size=8, sampler=MyRandomSampler(ds)),
        "with_replacement": DataLoader(ds, batch_size=8,
                                       sampler=RandomSampler(ds, replacement=True)),
        "fewer_samples": DataLoader(ds, batch_size=8, sampler=RandomSampler(ds, num_samples=20)),
        "index_list_sampler": DataLoader(ds, batch_size=8, sampler=[3, 1, 2]),
        "no_batching": DataLoader(ds, batch_size=None),
        "loader_subclass": MyLoader(ds, batch_size=8),
        "persistent_workers": DataLoader(ds, batch_size=8, num_workers=1,
                                         persistent_workers=True),
    }


@pytest.mark.parametrize("name", sorted(_fallback_loaders()))
def test_anything_custom_keeps_the_dataloader(name):
    loader = _fallback_loaders()[name]
    assert fast_loader(loader, plain_accelerator()) is loader


def test_several_processes_grad_accumulation_or_opting_out_keep_the_dataloader():
    x, y = make_classification(n=40)
    loader = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True)
    assert isinstance(fast_loader(loader, plain_accelerator()), TensorBatches)
    assert isinstance(fast_loader(loader, Accelerator(cpu=True)), TensorBatches)
    assert fast_loader(loader, plain_accelerator(processes=2)) is loader
    assert fast_loader(loader, plain_accelerator(grad_accum=2)) is loader
    assert fast_loader(loader, plain_accelerator(), enabled=False) is loader
    assert fast_loader(None, plain_accelerator()) is None


def count_fetches(monkeypatch, cls=TensorDataset):
    """Count ``cls.__getitem__`` calls: the DataLoader path fetches every sample."""
    counter = {"n": 0}
    real = cls.__getitem__

    def getitem(self, index):
        counter["n"] += 1
        return real(self, index)

    monkeypatch.setattr(cls, "__getitem__", getitem)
    return counter


def dropout_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))


def fit_run(train, val, fast_data, epochs=3, **fit_kwargs):
    net = dropout_net()
    model = KerasModel(net, nn.CrossEntropyLoss(),
                       metrics_dict={"acc": torchmetrics.Accuracy(task="multiclass",
                                                                  num_classes=3)},
                       optimizer=torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9))
    # after building the net, so each run starts the data draws from one state
    torch.manual_seed(99)
    history = model.fit(train, val, epochs=epochs, ckpt_path=None, patience=None, quiet=True,
                        fast_data=fast_data, **fit_kwargs)
    return model, history, [p.detach().clone() for p in net.parameters()], torch.get_rng_state()


def test_fit_is_bit_identical_with_and_without_the_fast_path(monkeypatch):
    x, y = make_classification(n=203, seed=1)   # 203 = 12 batches of 16 + 11
    xv, yv = make_classification(n=45, seed=2)
    fetches = count_fetches(monkeypatch)
    slow_model, slow_hist, slow_weights, slow_rng = fit_run((x, y), (xv, yv), False,
                                                            batch_size=16)
    assert fetches["n"] == 3 * (203 + 45)   # the DataLoader path fetched every sample
    fetches["n"] = 0
    fast_model, fast_hist, fast_weights, fast_rng = fit_run((x, y), (xv, yv), True,
                                                            batch_size=16)
    assert fetches["n"] == 0                # the fast path never did
    assert fast_model.train_steps == slow_model.train_steps == 13
    assert fast_hist.equals(slow_hist)      # exact floats, every column
    assert all(torch.equal(a, b) for a, b in zip(fast_weights, slow_weights))
    assert torch.equal(fast_rng, slow_rng)  # dropout drew the same numbers too
    assert fast_hist["train_loss"].iloc[-1] < fast_hist["train_loss"].iloc[0]


def test_fit_with_a_user_loader_and_its_generator_is_bit_identical():
    x, y = make_classification(n=100, seed=3)

    def loaders():
        gen = torch.Generator().manual_seed(5)
        return (DataLoader(TensorDataset(x, y), batch_size=32, shuffle=True, drop_last=True,
                           generator=gen),
                DataLoader(TensorDataset(x, y), batch_size=40), gen)

    train, val, gen = loaders()
    _, slow_hist, slow_weights, slow_rng = fit_run(train, val, False)
    slow_gen = gen.get_state()
    train, val, gen = loaders()
    model, fast_hist, fast_weights, fast_rng = fit_run(train, val, True)
    assert model.train_steps == 3  # drop_last: 100 // 32
    assert fast_hist.equals(slow_hist)
    assert all(torch.equal(a, b) for a, b in zip(fast_weights, slow_weights))
    assert torch.equal(fast_rng, slow_rng) and torch.equal(gen.get_state(), slow_gen)


def test_the_steps_and_hooks_see_every_fast_batch(recorder):
    x, y = make_classification(n=50)
    net = dropout_net()
    model = KerasModel(net, nn.CrossEntropyLoss())
    model.fit((x, y), (x, y), epochs=1, batch_size=16, ckpt_path=None, quiet=True,
              callbacks=[recorder])
    steps = [arg for hook, arg in recorder.calls if hook == "on_train_batch_end"]
    assert steps == [0, 1, 2, 3] and model.train_steps == 4
    assert [arg for hook, arg in recorder.calls if hook == "on_val_batch_end"] == [0, 1, 2, 3]


@pytest.mark.parametrize("name", ["custom_collate", "not_a_dataset", "sampler_subclass",
                                  "grad_accumulation"])
def test_fallback_cases_train_through_the_dataloader(monkeypatch, name):
    x, y = make_classification(n=48, seed=4)
    ds = TensorDataset(x, y)
    train = {"custom_collate": DataLoader(ds, batch_size=16,
                                          collate_fn=lambda batch: default_collate(batch)),
             "not_a_dataset": DataLoader(PairDataset(x, y), batch_size=16),
             "sampler_subclass": DataLoader(ds, batch_size=16, sampler=MyRandomSampler(ds)),
             "grad_accumulation": DataLoader(ds, batch_size=16, shuffle=True)}[name]
    fetches = count_fetches(monkeypatch, type(train.dataset))
    fit_kwargs = {"gradient_accumulation_steps": 2} if name == "grad_accumulation" else {}
    model, history, _, _ = fit_run(train, None, True, epochs=2, **fit_kwargs)
    assert fetches["n"] == 2 * 48   # every sample fetched in each of the 2 epochs
    assert model.train_steps == 3 and len(history) == 2


def test_evaluate_and_predict_take_the_fast_path_with_the_same_numbers(monkeypatch):
    x, y = make_classification(n=70, seed=6)
    net = dropout_net()
    model = KerasModel(net, nn.CrossEntropyLoss())
    slow = model.evaluate(DataLoader(PairDataset(x, y), batch_size=16), quiet=True)
    fetches = count_fetches(monkeypatch)
    fast = model.evaluate((x, y), quiet=True, batch_size=16)
    preds = model.predict(x, batch_size=16)
    assert fetches["n"] == 0
    assert fast == slow
    net.eval()
    with torch.no_grad():  # the same batches: a matmul's last bits depend on the batch size
        expected = torch.cat([net(x[i:i + 16]) for i in range(0, len(x), 16)])
    torch.testing.assert_close(preds, expected, rtol=0, atol=0)


@pytest.mark.parametrize("flag, value", [("fast_data", "yes"), ("fast_data", 1),
                                         ("compile", "max-autotune"), ("compile", None)])
def test_flags_must_be_bools(flag, value):
    x, y = make_classification(n=16)
    model = KerasModel(dropout_net(), nn.CrossEntropyLoss())
    with pytest.raises(TypeError, match=f"{flag} must be True or False; received "
                                        f".*{value!r}"):
        model.fit((x, y), epochs=1, ckpt_path=None, quiet=True, **{flag: value})


def test_a_misspelt_flag_suggests_the_right_name():
    x, y = make_classification(n=16)
    model = KerasModel(dropout_net(), nn.CrossEntropyLoss())
    with pytest.raises(TypeError, match="unexpected keyword argument 'fast_date'; did you "
                                        "mean 'fast_data'"):
        model.fit((x, y), epochs=1, ckpt_path=None, quiet=True, fast_date=True)


# importing torch's compiler stack touches the deprecated torch.jit.script_method
COMPILE_IMPORT_WARNING = "ignore:`torch.jit.script_method` is deprecated:DeprecationWarning"


@pytest.mark.filterwarnings(COMPILE_IMPORT_WARNING)
def test_compile_wiring_keeps_the_users_net_and_shares_its_weights(monkeypatch):
    """torch.compile with the eager backend: checks the wiring in well under a second."""
    compiled = []
    real_compile = torch.compile

    def spy(module, **kwargs):
        compiled.append(module)
        return real_compile(module, backend="eager")

    monkeypatch.setattr(torch, "compile", spy)
    x, y = make_classification(n=64, seed=7)
    plain = fit_run((x, y), (x, y), True, batch_size=16)
    model, history, weights, _ = fit_run((x, y), (x, y), True, batch_size=16, compile=True)
    assert len(compiled) == 1 and compiled[0] is model.net
    assert type(model.net) is nn.Sequential                   # the user's module, not a wrapper
    assert all(torch.equal(p, q) for p, q in zip(model.net.parameters(), weights))
    assert history.equals(plain[1])                           # eager backend: same arithmetic
    assert all(torch.equal(a, b) for a, b in zip(weights, plain[2]))
    assert set(model.net.state_dict()) == {"0.weight", "0.bias", "3.weight", "3.bias"}


@pytest.mark.filterwarnings(COMPILE_IMPORT_WARNING)
@pytest.mark.skipif(shutil.which("gcc") is None and shutil.which("cc") is None
                    and shutil.which("clang") is None,
                    reason="torch.compile's default (inductor) backend needs a C compiler on CPU")
def test_compile_with_inductor_trains_like_eager():
    torch.manual_seed(0)
    x, y = torch.randn(96, 4), torch.randint(0, 3, (96,))

    def run(compile):
        torch.manual_seed(0)
        net = nn.Linear(4, 3)
        model = KerasModel(net, nn.CrossEntropyLoss(),
                           optimizer=torch.optim.SGD(net.parameters(), lr=0.5))
        history = model.fit((x, y), epochs=2, batch_size=32, ckpt_path=None, quiet=True,
                            compile=compile)
        return model, history

    eager_model, eager = run(False)
    model, compiled = run(True)
    assert type(model.net) is nn.Linear
    # inductor fuses kernels, so the last bits may differ; the training may not
    assert compiled["train_loss"].tolist() == pytest.approx(eager["train_loss"].tolist(),
                                                            rel=1e-5)
    torch.testing.assert_close(model.net.weight, eager_model.net.weight, rtol=1e-5, atol=1e-6)
    assert compiled["train_loss"].iloc[1] < compiled["train_loss"].iloc[0]
