"""Dict batches, multi-output losses, nets computing their own loss, structured predictions
and HuggingFace datasets: each checked against a hand-written loop, with numbers."""

import copy

import pytest
import torch
import torchmetrics
from torch import nn
from torch.utils.data import DataLoader, Dataset

from kerastorch import KerasModel
from kerastorch.callbacks import Callback

transformers = pytest.importorskip("transformers")


def _data(n=22, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long() + (x[:, 2] > 0.5).long()
    return x, y


class TupleData(Dataset):
    """A plain map-style Dataset of (x, y) tuples (not a TensorDataset: no fast path)."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


class DictData(TupleData):
    def __init__(self, x, y, key="label", weights=None):
        super().__init__(x, y)
        self.key, self.weights = key, weights

    def __getitem__(self, i):
        item = {"x": self.x[i], self.key: self.y[i]}
        if self.weights is not None:
            item["sample_weight"] = self.weights[i]
        return item


class Classifier(nn.Module):
    def __init__(self, d=4, classes=3):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(d, 8), nn.Tanh(), nn.Linear(8, classes))

    def forward(self, x):
        return self.body(x)


def _state(net):
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def _assert_same_state(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _fit(net, train, val=None, **kw):
    opt = torch.optim.SGD(net.parameters(), lr=kw.pop("lr", 0.1))
    model = KerasModel(net, kw.pop("loss_fn", nn.CrossEntropyLoss()), optimizer=opt,
                       **kw.pop("model_kw", {}))
    kw = {"epochs": 3, "ckpt_path": None, "patience": None, "quiet": True, **kw}
    return model, model.fit(train, val, **kw)


# -- 1. dict batches equal tuple batches bit for bit -----------------------------------


@pytest.mark.parametrize("key", ["label", "target", "answer"])
def test_dict_batches_train_bit_identically_to_tuple_batches(key):
    x, y = _data()
    xv, yv = _data(9, seed=1)
    results = []
    for make in (TupleData, lambda a, b: DictData(a, b, key)):
        torch.manual_seed(0)
        net = Classifier()
        train = DataLoader(make(x, y), batch_size=5, shuffle=True)
        val = DataLoader(make(xv, yv), batch_size=4)
        kw = {"model_kw": {"label_keys": [key]}} if key == "answer" else {}
        torch.manual_seed(1)  # the shuffle order
        _, df = _fit(net, train, val, **kw)
        results.append((df, _state(net)))
    (df_t, w_t), (df_d, w_d) = results
    assert list(df_d.columns) == ["epoch", "train_loss", "lr", "val_loss"]
    assert df_d.equals(df_t)
    _assert_same_state(w_d, w_t)


def test_dict_batch_with_two_label_keys_is_refused_before_any_update():
    class Both(TupleData):
        def __getitem__(self, i):
            return {"x": self.x[i], "label": self.y[i], "y": self.y[i]}

    x, y = _data()
    net = Classifier()
    before = _state(net)
    with pytest.raises(ValueError, match=r"several label keys \['label', 'y'\]"):
        _fit(net, DataLoader(Both(x, y), batch_size=4))
    _assert_same_state(_state(net), before)


# -- 2. two outputs: the total is the weighted sum, each part a weighted epoch mean -----


class TwoHeads(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Linear(4, 6)
        self.cls = nn.Linear(6, 3)
        self.reg = nn.Linear(6, 1)

    def forward(self, x):
        h = torch.tanh(self.body(x))
        return {"a": self.cls(h), "b": self.reg(h).squeeze(-1)}


class TwoHeadData(TupleData):
    def __init__(self, x, y, weights=None):
        super().__init__(x, y)
        self.weights = weights

    def __getitem__(self, i):
        item = {"x": self.x[i], "label": {"a": self.y[i], "b": self.x[i, 3] * 2.0}}
        if self.weights is not None:
            item["sample_weight"] = self.weights[i]
        return item


def _weighted(values, w):
    return (values * w).sum() / w.sum()


def _hand_two_heads(net, batches, weight_a, lr):
    """Replays the fit by hand: per batch the losses before the step, then an SGD step.
    Returns the sample-weighted epoch means of the total and both parts."""
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    ce, mse = nn.CrossEntropyLoss(reduction="none"), nn.MSELoss(reduction="none")
    sums = {"total": 0.0, "a": 0.0, "b": 0.0}
    count = 0.0
    for batch in batches:
        out = net(batch["x"])
        w = batch["sample_weight"]
        a = _weighted(ce(out["a"], batch["label"]["a"]), w)
        b = _weighted(mse(out["b"], batch["label"]["b"]), w)
        total = weight_a * a + b
        opt.zero_grad()
        total.backward()
        opt.step()
        for key, value in (("total", total), ("a", a), ("b", b)):
            sums[key] += float(value.detach()) * float(w.sum())
        count += float(w.sum())
    return {k: v / count for k, v in sums.items()}


@pytest.mark.parametrize("lr", [0.0, 0.2])
def test_two_heads_loss_columns_are_weighted_epoch_means(lr):
    x, y = _data(23)
    w = torch.linspace(0.1, 2.0, 23)
    xv, yv = _data(11, seed=3)
    torch.manual_seed(0)
    net = TwoHeads()
    replay = copy.deepcopy(net)
    train = DataLoader(TwoHeadData(x, y, w), batch_size=5)  # 23 = 4*5 + 3: an uneven batch
    val = DataLoader(TwoHeadData(xv, yv), batch_size=4)
    acc = torchmetrics.Accuracy(task="multiclass", num_classes=3)
    _, df = _fit(net, train, val, epochs=2, lr=lr,
                 loss_fn={"a": nn.CrossEntropyLoss(), "b": nn.MSELoss()},
                 model_kw={"loss_weights": {"a": 2.0}, "metrics_dict": {"a": {"acc": acc}}})
    assert list(df.columns) == ["epoch", "train_loss", "train_a_loss", "train_b_loss",
                                "train_a_acc", "lr", "val_loss", "val_a_loss", "val_b_loss",
                                "val_a_acc"]
    for stage in ("train", "val"):
        total = 2.0 * df[f"{stage}_a_loss"] + df[f"{stage}_b_loss"]
        assert df[f"{stage}_loss"].tolist() == pytest.approx(total.tolist(), rel=1e-6)
    for epoch in range(2):
        expected = _hand_two_heads(replay, list(train), 2.0, lr)
        row = df.iloc[epoch]
        assert row["train_loss"] == pytest.approx(expected["total"], rel=1e-6)
        assert row["train_a_loss"] == pytest.approx(expected["a"], rel=1e-6)
        assert row["train_b_loss"] == pytest.approx(expected["b"], rel=1e-6)
    for p, q in zip(net.parameters(), replay.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)
    # validation: unweighted per-sample means over the whole val set, at the final weights
    with torch.no_grad():
        out = net(xv)
        a = nn.functional.cross_entropy(out["a"], yv)
        b = nn.functional.mse_loss(out["b"], xv[:, 3] * 2.0)
        val_acc = (out["a"].argmax(1) == yv).float().mean()
    last = df.iloc[-1]
    assert last["val_a_loss"] == pytest.approx(float(a), rel=1e-6)
    assert last["val_b_loss"] == pytest.approx(float(b), rel=1e-6)
    assert last["val_loss"] == pytest.approx(float(2 * a + b), rel=1e-6)
    assert last["val_a_acc"] == pytest.approx(float(val_acc), abs=1e-7)


def test_dict_loss_with_wrong_output_keys_names_both_sides_before_any_update():
    x, y = _data()
    torch.manual_seed(0)
    net = TwoHeads()
    before = _state(net)
    with pytest.raises(ValueError) as info:
        _fit(net, DataLoader(TwoHeadData(x, y), batch_size=4),
             loss_fn={"a": nn.CrossEntropyLoss(), "c": nn.MSELoss()})
    message = str(info.value)
    assert "['a', 'b']" in message and "['a', 'c']" in message
    assert "missing ['c']" in message and "extra ['b']" in message
    _assert_same_state(_state(net), before)


def test_dict_loss_with_wrong_label_keys_names_both_sides_before_any_update():
    class BadLabels(TwoHeadData):
        def __getitem__(self, i):
            return {"x": self.x[i], "label": {"a": self.y[i], "z": self.x[i, 3]}}

    x, y = _data()
    torch.manual_seed(0)
    net = TwoHeads()
    before = _state(net)
    with pytest.raises(ValueError) as info:
        _fit(net, DataLoader(BadLabels(x, y), batch_size=4),
             loss_fn={"a": nn.CrossEntropyLoss(), "b": nn.MSELoss()})
    message = str(info.value)
    assert "the labels" in message and "['a', 'z']" in message and "['a', 'b']" in message
    _assert_same_state(_state(net), before)


# -- 3. predict returns the output structure, as a manual loop concatenates it -----------


class TupleOut(Classifier):
    def forward(self, x):
        logits = self.body(x)
        return logits, logits.softmax(-1)


class ListOut(Classifier):
    def forward(self, x):
        logits = self.body(x)
        return [logits, logits.argmax(-1)]


class DictOut(Classifier):
    def forward(self, x):
        logits = self.body(x)
        return {"logits": logits, "nested": (logits.sum(-1), {"max": logits.max(-1).values})}


@pytest.mark.parametrize("net_class", [TupleOut, ListOut, DictOut])
@pytest.mark.parametrize("batches", ["tuple", "dict"])
def test_predict_concatenates_the_output_structure_like_a_manual_loop(net_class, batches):
    x, y = _data(13)
    torch.manual_seed(0)
    net = net_class()
    data = TupleData(x, y) if batches == "tuple" else DictData(x, y)
    loader = DataLoader(data, batch_size=4)
    model = KerasModel(net, nn.CrossEntropyLoss())
    got = model.predict(loader)
    with torch.no_grad():
        parts = [net(xb) for xb in x.split(4)]
    if net_class is DictOut:
        assert isinstance(got, dict) and list(got) == ["logits", "nested"]
        assert torch.equal(got["logits"], torch.cat([p["logits"] for p in parts]))
        assert isinstance(got["nested"], tuple)
        assert torch.equal(got["nested"][0], torch.cat([p["nested"][0] for p in parts]))
        assert torch.equal(got["nested"][1]["max"],
                           torch.cat([p["nested"][1]["max"] for p in parts]))
    else:
        assert type(got) is type(parts[0]) and len(got) == 2
        for i in range(2):
            assert torch.equal(got[i], torch.cat([p[i] for p in parts]))
    assert (got["logits"] if isinstance(got, dict) else got[0]).shape == (13, 3)


def _tiny_bert():
    config = transformers.BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=32, num_labels=3,
                                     max_position_embeddings=16)
    torch.manual_seed(0)
    return transformers.BertForSequenceClassification(config)


class TokenData(Dataset):
    def __init__(self, n=13, length=6, seed=0, with_labels=True):
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(1, 50, (n, length), generator=g)
        self.mask = torch.ones(n, length, dtype=torch.long)
        self.mask[::3, -2:] = 0
        self.labels = torch.randint(0, 3, (n,), generator=g)
        self.with_labels = with_labels

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, i):
        item = {"input_ids": self.ids[i], "attention_mask": self.mask[i]}
        if self.with_labels:
            item["labels"] = self.labels[i]
        return item


def test_predict_on_a_huggingface_model_output_equals_a_manual_loop():
    bert = _tiny_bert()
    data = TokenData()
    model = KerasModel(bert, None)
    got = model.predict(DataLoader(data, batch_size=4))
    bert.eval()
    with torch.no_grad():
        expected = torch.cat([bert(input_ids=data.ids[i:i + 4],
                                   attention_mask=data.mask[i:i + 4]).logits
                              for i in range(0, 13, 4)])
    # the label key is left out, so the model computes no loss: only its logits come back
    assert isinstance(got, dict) and list(got) == ["logits"]
    assert got["logits"].shape == (13, 3)
    torch.testing.assert_close(got["logits"], expected, rtol=0, atol=0)
    _, labels = model.predict(DataLoader(data, batch_size=4), with_labels=True)
    assert torch.equal(labels, data.labels)


def test_huggingface_model_trains_on_its_own_loss():
    bert = _tiny_bert()
    bert.config.hidden_dropout_prob = bert.config.attention_probs_dropout_prob = 0.0
    for module in bert.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    data, val = TokenData(), TokenData(n=7, seed=1)
    acc = torchmetrics.Accuracy(task="multiclass", num_classes=3)
    model = KerasModel(bert, None, metrics_dict={"acc": acc},
                       optimizer=torch.optim.SGD(bert.parameters(), lr=0.0))
    df = model.fit(DataLoader(data, batch_size=4), DataLoader(val, batch_size=4), epochs=1,
                   ckpt_path=None, patience=None, quiet=True)
    with torch.no_grad():
        per_batch = [(bert(input_ids=data.ids[i:i + 4], attention_mask=data.mask[i:i + 4],
                           labels=data.labels[i:i + 4]).loss, len(data.ids[i:i + 4]))
                     for i in range(0, 13, 4)]
        val_out = bert(input_ids=val.ids, attention_mask=val.mask, labels=val.labels)
    expected = sum(float(loss) * n for loss, n in per_batch) / 13
    assert df["train_loss"].iloc[0] == pytest.approx(expected, rel=1e-6)
    # the metric sees the logits; the val loss is the mean of per-batch means, sample-weighted
    assert df["val_acc"].iloc[0] == pytest.approx(
        float((val_out.logits.argmax(1) == val.labels).float().mean()), abs=1e-7)
    assert df["val_loss"].iloc[0] == pytest.approx(float(val_out.loss), rel=1e-5)


# -- 10. loss_fn=None with a net that returns no loss ---------------------------------


class _BatchCounter(Callback):
    def __init__(self, seen):
        self.seen = seen

    def on_train_batch_end(self, step, logs=None):
        self.seen.append(step)


def test_own_loss_net_without_a_loss_raises_on_the_first_batch_weights_unchanged():
    x, y = _data()

    class TakesLabels(Classifier):  # labels stay in what the net is called with
        def forward(self, x, y=None):
            return self.body(x)

    class KeepsLabels(Classifier):
        def forward(self, x, label=None):
            return {"logits": self.body(x)}

    torch.manual_seed(0)
    net = TakesLabels()
    for model_net in (net, KeepsLabels()):
        before = _state(model_net)
        loader = DataLoader(TupleData(x, y) if model_net is net else DictData(x, y),
                            batch_size=4)
        seen = []
        model = KerasModel(model_net, None,
                           optimizer=torch.optim.SGD(model_net.parameters(), lr=0.1))
        with pytest.raises(ValueError) as info:
            model.fit(loader, epochs=1, ckpt_path=None, quiet=True,
                      callbacks=[_BatchCounter(seen)])
        assert "loss_fn=None" in str(info.value) and "own loss" in str(info.value)
        assert seen == []  # no batch completed
        _assert_same_state(_state(model_net), before)


# -- 11. HuggingFace datasets --------------------------------------------------------


def test_huggingface_datasets_are_accepted_and_their_text_dropped():
    datasets = pytest.importorskip("datasets")
    x, y = _data(10)
    xv, yv = _data(6, seed=2)
    rows = {"x": x.tolist(), "label": y.tolist(), "text": [f"row {i}" for i in range(10)]}
    train = datasets.Dataset.from_dict(rows)
    val = datasets.Dataset.from_dict({"x": xv.tolist(), "label": yv.tolist(),
                                      "text": ["v"] * 6}).with_format("torch")
    seen_keys = []

    class Net(Classifier):
        def forward(self, x, **rest):
            seen_keys.append(sorted(rest))
            return self.body(x)

    torch.manual_seed(0)
    net = Net()
    reference = copy.deepcopy(net)
    _, df = _fit(net, train, val, epochs=2, batch_size=4, shuffle=False)
    assert seen_keys and all(keys == [] for keys in seen_keys)  # "text" never reaches the net
    # the same data as tensors give the same training
    _, df_ref = _fit(reference, DataLoader(TupleData(x, y), batch_size=4),
                     DataLoader(TupleData(xv, yv), batch_size=4), epochs=2)
    assert df["train_loss"].tolist() == pytest.approx(df_ref["train_loss"].tolist(), rel=1e-6)
    assert df["val_loss"].tolist() == pytest.approx(df_ref["val_loss"].tolist(), rel=1e-6)
    for p, q in zip(net.parameters(), reference.parameters()):
        torch.testing.assert_close(p, q)
    # the original datasets are untouched, and predict takes them too
    assert "text" in train.column_names and "text" in val.column_names
    preds = KerasModel(net, nn.CrossEntropyLoss()).predict(val)
    with torch.no_grad():
        torch.testing.assert_close(preds, net.body(xv))
