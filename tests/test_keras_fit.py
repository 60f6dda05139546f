"""Keras's fit keywords: sample_weight, class_weight, validation_split, initial_epoch,
steps_per_epoch, validation_steps, validation_freq, fit(X, y) and evaluate(X, y)."""

import math

import numpy as np
import pytest
import torch
from conftest import ScriptedScore
from torch import nn
from torch.utils.data import DataLoader, Dataset

from kerastorch import KerasModel
from kerastorch.callbacks import Callback


def _data(n=24, d=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = (x[:, 0] + x[:, 1] > 0).long() + (x[:, 2] > 0.5).long()
    return x, y


def _net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))


def _state(net):
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def _assert_same_state(a, b):
    for key in a:
        assert torch.equal(a[key], b[key]), key


def _model(net, lr=0.1, loss_fn=None, **kw):
    return KerasModel(net, loss_fn or nn.CrossEntropyLoss(),
                      optimizer=torch.optim.SGD(net.parameters(), lr=lr), **kw)


FIT = {"ckpt_path": None, "patience": None, "quiet": True}


class RowLogger(nn.Module):
    """A net whose first input column is the row index; it logs the rows of each call,
    split by mode, so a test sees exactly which samples each pass used."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(1, 3)
        self.train_rows, self.eval_rows = [], []

    def forward(self, x):
        rows = x[:, 0].long().tolist()
        (self.train_rows if self.training else self.eval_rows).append(rows)
        return self.fc(x[:, 1:])


def _indexed(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.stack([torch.arange(n, dtype=torch.float32), torch.randn(n, generator=g)], 1)
    return x, torch.arange(n) % 3


# -- 4. sample_weight ---------------------------------------------------------------


@pytest.mark.parametrize("shuffle", [False, True])
def test_all_ones_sample_weight_is_bit_identical_to_no_weights(shuffle):
    x, y = _data(26)
    results = []
    for weights in (None, torch.ones(26), np.ones(26)):
        net = _net()
        torch.manual_seed(5)
        kw = {} if weights is None else {"sample_weight": weights}
        df = _model(net).fit((x, y), epochs=3, batch_size=8, shuffle=shuffle, **FIT, **kw)
        results.append((df, _state(net)))
    for df, state in results[1:]:
        assert df.equals(results[0][0])
        _assert_same_state(state, results[0][1])


def test_all_ones_weights_in_dict_batches_match_no_weights_closely():
    class Rows(Dataset):
        def __init__(self, x, y, w=None):
            self.x, self.y, self.w = x, y, w

        def __len__(self):
            return len(self.x)

        def __getitem__(self, i):
            item = {"x": self.x[i], "y": self.y[i]}
            if self.w is not None:
                item["sample_weight"] = self.w[i]
            return item

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = _net()

        def forward(self, x):
            return self.body(x)

    x, y = _data(26)
    results = []
    for w in (None, torch.ones(26)):
        net = Net()
        df = _model(net).fit(DataLoader(Rows(x, y, w), batch_size=8), epochs=3, **FIT)
        results.append((df, _state(net)))
    (df_a, sa), (df_b, sb) = results
    assert df_b["train_loss"].tolist() == pytest.approx(df_a["train_loss"].tolist(), rel=1e-6)
    for key in sa:
        torch.testing.assert_close(sb[key], sa[key], rtol=1e-6, atol=1e-7)


class TokenTagger(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x).transpose(1, 2)  # (N, classes, tokens), as CrossEntropyLoss wants


@pytest.mark.parametrize("class_weights", [None, [1.0, 5.0, 0.5]])
def test_sample_weights_count_ignored_tokens_and_class_weights_as_the_loss_does(class_weights):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(8, 5, 4, generator=g)
    tags = torch.randint(0, 3, (8, 5), generator=g)
    tags[:, 3:] = -100  # padding, as HuggingFace token classification labels it
    tags[0, 1:] = -100
    w = torch.linspace(0.5, 2.0, 8)
    cw = None if class_weights is None else torch.tensor(class_weights)

    def rows(weights):
        return [{"x": x[i], "y": tags[i], **({} if weights is None else
                                             {"sample_weight": weights[i]})} for i in range(8)]

    net = TokenTagger()
    model = KerasModel(net, nn.CrossEntropyLoss(weight=cw))
    plain = model.evaluate(DataLoader(rows(None), batch_size=8), quiet=True)["val_loss"]
    ones = model.evaluate(DataLoader(rows(torch.ones(8)), batch_size=8), quiet=True)["val_loss"]
    weighted = model.evaluate(DataLoader(rows(w), batch_size=3), quiet=True)["val_loss"]
    with torch.no_grad():
        losses = nn.functional.cross_entropy(net(x), tags, weight=cw, reduction="none")
        counts = (tags != -100).float() * (1.0 if cw is None else cw[tags.clamp(min=0)])
        expected_plain = losses.sum() / counts.sum()
        per_batch = [((w[i:i + 3, None] * losses[i:i + 3]).sum()
                      / (w[i:i + 3, None] * counts[i:i + 3]).sum(), w[i:i + 3].sum())
                     for i in range(0, 8, 3)]
    assert plain == pytest.approx(float(expected_plain), rel=1e-6)
    assert ones == pytest.approx(plain, rel=1e-6)  # all-ones weights: the loss's own mean
    expected = sum(float(loss * n) for loss, n in per_batch) / float(w.sum())
    assert weighted == pytest.approx(expected, rel=1e-6)


def test_zero_weights_for_half_the_samples_equal_training_on_the_other_half():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(32, 4, generator=g)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 0.0]) + 0.1 * torch.randn(32, generator=g)
    w = torch.tensor([1.0, 0.0] * 16)  # interleaved: each batch of 8 holds 4 weighted rows

    def regressor():
        torch.manual_seed(0)
        return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 1), nn.Flatten(0))

    weighted, half = regressor(), regressor()
    df_w = _model(weighted, lr=0.05, loss_fn=nn.MSELoss()).fit(
        (x, y), epochs=3, batch_size=8, shuffle=False, sample_weight=w, **FIT)
    df_h = _model(half, lr=0.05, loss_fn=nn.MSELoss()).fit(
        (x[::2], y[::2]), epochs=3, batch_size=4, shuffle=False, **FIT)
    assert df_w["train_loss"].tolist() == pytest.approx(df_h["train_loss"].tolist(), rel=1e-6)
    for p, q in zip(weighted.parameters(), half.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-6)
    assert not torch.equal(weighted[0].weight, regressor()[0].weight)  # it did train


def test_val_data_triple_and_evaluate_weigh_the_validation_loss():
    x, y = _data(20)
    xv, yv = _data(11, seed=4)
    wv = torch.linspace(0, 3, 11)
    net = _net()
    model = _model(net, lr=0.0)
    df = model.fit((x, y), val_data=(xv, yv, wv), epochs=1, batch_size=4, **FIT)
    with torch.no_grad():
        per_sample = nn.functional.cross_entropy(net(xv), yv, reduction="none")
        train_loss = nn.functional.cross_entropy(net(x), y)
    expected = float((per_sample * wv).sum() / wv.sum())
    assert df["val_loss"].iloc[0] == pytest.approx(expected, rel=1e-6)
    assert df["train_loss"].iloc[0] == pytest.approx(float(train_loss), rel=1e-6)
    assert model.evaluate((xv, yv, wv), quiet=True, batch_size=3)["val_loss"] == \
        pytest.approx(expected, rel=1e-6)
    assert model.evaluate(xv, yv)["val_loss"] == pytest.approx(float(per_sample.mean()),
                                                                rel=1e-6)


# -- 5. class_weight ----------------------------------------------------------------


@pytest.mark.parametrize("one_hot", [False, True])
def test_class_weight_equals_the_matching_sample_weight(one_hot):
    x, y = _data(30)
    table = {0: 0.5, 1: 2.0, 2: 3.0}
    weights = torch.tensor([table[int(c)] for c in y])
    labels = nn.functional.one_hot(y, 3).float() if one_hot else y
    results = []
    for kw in ({"class_weight": table}, {"sample_weight": weights}):
        net = _net()
        torch.manual_seed(7)
        df = _model(net).fit((x, labels), epochs=3, batch_size=8, **FIT, **kw)
        results.append((df, _state(net)))
    (df_c, sc), (df_s, ss) = results
    assert df_c.equals(df_s)
    _assert_same_state(sc, ss)
    unweighted = _net()
    torch.manual_seed(7)
    df_u = _model(unweighted).fit((x, labels), epochs=3, batch_size=8, **FIT)
    assert not df_u.equals(df_c)  # the weights did change the training


# -- 6. validation_split --------------------------------------------------------------


@pytest.mark.parametrize("shuffle", [False, True])
def test_validation_split_holds_out_keras_rows(shuffle):
    x, y = _indexed(10)
    net = RowLogger()
    model = _model(net)
    df = model.fit(x, y, epochs=2, batch_size=3, shuffle=shuffle, validation_split=0.25, **FIT)
    # Keras: split_at = floor(10 * 0.75) = 7, taken before shuffling
    train_rows = [r for batch in net.train_rows for r in batch]
    eval_rows = [r for batch in net.eval_rows for r in batch]
    assert sorted(train_rows) == sorted(list(range(7)) * 2)
    assert eval_rows == [7, 8, 9, 7, 8, 9]
    assert model.evaluate(x[7:], y[7:])["val_loss"] == pytest.approx(df["val_loss"].iloc[-1],
                                                                      rel=1e-6)


def test_validation_split_rounds_down_like_keras():
    x, y = _indexed(7)
    net = RowLogger()
    _model(net).fit((x, y), epochs=1, batch_size=10, shuffle=False, validation_split=0.3,
                    **FIT)
    # floor(7 * 0.7) = 4: rows 4, 5, 6 validate
    assert net.train_rows == [[0, 1, 2, 3]] and net.eval_rows == [[4, 5, 6]]


def test_validation_split_with_val_data_warns_and_uses_val_data():
    x, y = _indexed(10)
    xv, yv = _indexed(4)
    xv[:, 0] += 100
    net = RowLogger()
    with pytest.warns(UserWarning, match="validation_split is ignored"):
        _model(net).fit((x, y), (xv, yv), epochs=1, batch_size=20, shuffle=False,
                        validation_split=0.5, **FIT)
    assert net.train_rows == [list(range(10))] and net.eval_rows == [[100, 101, 102, 103]]


# -- 7. steps_per_epoch -----------------------------------------------------------------


@pytest.mark.parametrize("fast_data", [True, False])
def test_steps_per_epoch_continues_the_loader_in_order(fast_data):
    x, y = _indexed(10)
    net = RowLogger()
    df = _model(net).fit((x, y), epochs=4, batch_size=3, shuffle=False, steps_per_epoch=3,
                         fast_data=fast_data, **FIT)
    assert df["epoch"].tolist() == [1, 2, 3, 4]
    # 4 batches a pass (3, 3, 3, 1): epoch 2 starts with the first pass's last batch
    assert net.train_rows[:4] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    assert [len(b) for b in net.train_rows] == [3, 3, 3, 1] * 3
    flat = [r for batch in net.train_rows for r in batch]
    assert flat == list(range(10)) * 3


@pytest.mark.parametrize("fast_data", [True, False])
def test_steps_per_epoch_shuffled_sees_each_sample_once_per_pass(fast_data):
    x, y = _indexed(10)
    net = RowLogger()
    torch.manual_seed(3)
    _model(net).fit((x, y), epochs=5, batch_size=4, shuffle=True, steps_per_epoch=2,
                    fast_data=fast_data, **FIT)
    # 3 batches a pass (4, 4, 2); 10 steps = 3 passes and one batch of a fourth
    assert [len(b) for b in net.train_rows] == [4, 4, 2] * 3 + [4]
    flat = [r for batch in net.train_rows for r in batch]
    passes = [flat[i:i + 10] for i in range(0, 30, 10)]
    for rows in passes:
        assert sorted(rows) == list(range(10))
    assert len({tuple(p) for p in passes}) == 3  # a new shuffle each pass


def test_steps_per_epoch_loss_covers_the_batches_of_each_epoch():
    x, y = _data(10)
    net = _net()
    df = _model(net, lr=0.0).fit((x, y), epochs=2, batch_size=3, shuffle=False,
                                 steps_per_epoch=3, **FIT)
    with torch.no_grad():
        per_sample = nn.functional.cross_entropy(net(x), y, reduction="none")
    # epoch 1: rows 0..8; epoch 2: row 9 then rows 0..5
    assert df["train_loss"].iloc[0] == pytest.approx(float(per_sample[:9].mean()), rel=1e-6)
    second = torch.cat([per_sample[9:], per_sample[:6]])
    assert df["train_loss"].iloc[1] == pytest.approx(float(second.mean()), rel=1e-6)


# -- 8. validation_steps, validation_freq, initial_epoch ----------------------------------


def test_validation_steps_restart_from_the_first_val_batch_each_pass():
    x, y = _indexed(6)
    xv, yv = _indexed(10)
    xv[:, 0] += 100
    net = RowLogger()
    df = _model(net, lr=0.0).fit((x, y), (xv, yv), epochs=3, batch_size=3, shuffle=False,
                                 validation_steps=2, **FIT)
    assert net.eval_rows == [[100, 101, 102], [103, 104, 105]] * 3
    with torch.no_grad():
        expected = nn.functional.cross_entropy(net(xv[:6]), yv[:6])
    assert df["val_loss"].tolist() == pytest.approx([float(expected)] * 3, rel=1e-6)


class WeightsPerEpoch(Callback):
    def __init__(self):
        self.states = {}

    def on_epoch_end(self, epoch, logs=None):
        self.states[epoch] = _state(self.model.net)


@pytest.mark.parametrize("script, stop, best", [
    ([2.0, 1.0, 3.0], 4, 2),  # epoch 4 is worse: patience 1 stops there, not at epoch 3
    ([1.0, 2.0, 0.5], 6, 4),  # epoch 4 improves: epoch 6 is worse and stops
])
def test_validation_freq_nan_epochs_do_not_count(tmp_path, script, stop, best):
    x, y = _data(12)
    net = _net()
    record = WeightsPerEpoch()
    model = _model(net, metrics_dict={"score": ScriptedScore(script)})
    ckpt = str(tmp_path / "best.pt")
    df = model.fit((x, y), (x[:6], y[:6]), epochs=8, batch_size=4, validation_freq=2,
                   ckpt_path=ckpt, monitor="val_score", mode="max", patience=1, quiet=True,
                   callbacks=[record])
    assert df["epoch"].tolist() == list(range(1, stop + 1))
    for column in ("val_loss", "val_score"):
        odd = df.loc[df["epoch"] % 2 == 1, column]
        even = df.loc[df["epoch"] % 2 == 0, column]
        assert odd.isna().all() and even.notna().all()
    assert df.loc[df["epoch"] % 2 == 0, "val_score"].tolist() == script[:stop // 2]
    # the best epoch's weights are in the checkpoint and restored into the net
    _assert_same_state(torch.load(ckpt, weights_only=True), record.states[best])
    _assert_same_state(_state(net), record.states[best])


def test_validation_freq_list_validates_the_listed_epochs():
    x, y = _data(12)
    df = _model(_net()).fit((x, y), (x, y), epochs=4, batch_size=4, validation_freq=[1, 4],
                            **FIT)
    assert df["val_loss"].isna().tolist() == [False, True, True, False]


def test_initial_epoch_numbers_the_rows_from_the_next_epoch():
    x, y = _data(12)
    a, b = _net(), _net()
    df = _model(a).fit((x, y), (x, y), epochs=4, initial_epoch=2, batch_size=4, shuffle=False,
                       **FIT)
    assert df["epoch"].tolist() == [3, 4]
    df_plain = _model(b).fit((x, y), (x, y), epochs=2, batch_size=4, shuffle=False, **FIT)
    # two epochs trained either way: the same numbers, only the epoch labels differ
    assert df.drop(columns="epoch").equals(df_plain.drop(columns="epoch"))


# -- 9. bad values name the keyword, before any weight changes -----------------------------


BAD = [
    ({"sample_weight": torch.ones(5)}, ValueError, "sample_weight"),
    ({"sample_weight": -torch.ones(24)}, ValueError, "sample_weight"),
    ({"sample_weight": torch.tensor([float("nan")] * 24)}, ValueError, "sample_weight"),
    ({"sample_weight": "heavy"}, TypeError, "sample_weight"),
    ({"class_weight": [1.0, 2.0]}, TypeError, "class_weight"),
    ({"class_weight": {}}, ValueError, "class_weight"),
    ({"class_weight": {0: -1.0}}, ValueError, "class_weight"),
    ({"class_weight": {0.5: 1.0}}, TypeError, "class_weight"),
    ({"class_weight": {0: 2.0}, "sample_weight": torch.ones(24)}, ValueError, "class_weight"),
    ({"validation_split": 1.5}, ValueError, "validation_split"),
    ({"validation_split": -0.1}, ValueError, "validation_split"),
    ({"validation_split": "0.2"}, ValueError, "validation_split"),
    ({"validation_split": 0.99}, ValueError, "validation_split"),  # floor(0.24): no train
    ({"initial_epoch": -1}, ValueError, "initial_epoch"),
    ({"initial_epoch": 3}, ValueError, "initial_epoch"),
    ({"initial_epoch": 1.0}, ValueError, "initial_epoch"),
    ({"steps_per_epoch": 0}, ValueError, "steps_per_epoch"),
    ({"steps_per_epoch": 2.5}, ValueError, "steps_per_epoch"),
    ({"validation_steps": 0}, ValueError, "validation_steps"),
    ({"validation_freq": 0}, ValueError, "validation_freq"),
    ({"validation_freq": "2"}, TypeError, "validation_freq"),
    ({"validation_freq": [0, 2]}, TypeError, "validation_freq"),
]


@pytest.mark.parametrize("kwargs, error, keyword", BAD,
                         ids=[f"{k}-{i}" for i, (_, _, k) in enumerate(BAD)])
def test_bad_keyword_values_raise_naming_the_keyword_before_training(kwargs, error, keyword):
    x, y = _data(24)
    net = _net()
    before = _state(net)
    with pytest.raises(error, match=keyword):
        _model(net).fit((x, y), epochs=3, batch_size=8, **FIT, **kwargs)
    _assert_same_state(_state(net), before)


@pytest.mark.parametrize("kwargs, keyword", [
    ({"sample_weight": torch.ones(24)}, "sample_weight"),
    ({"validation_split": 0.25}, "validation_split"),
])
def test_array_only_keywords_refuse_a_dataloader(kwargs, keyword):
    x, y = _data(24)
    net = _net()
    before = _state(net)
    with pytest.raises(ValueError, match=keyword):
        _model(net).fit(DataLoader(list(zip(x, y)), batch_size=8), epochs=1, **FIT, **kwargs)
    _assert_same_state(_state(net), before)


def test_sample_weight_and_class_weight_refuse_a_net_with_its_own_loss():
    x, y = _data(24)
    net = _net()
    model = KerasModel(net, None)
    for kwargs in ({"sample_weight": torch.ones(24)}, {"class_weight": {0: 2.0}}):
        with pytest.raises(ValueError, match="loss_fn"):
            model.fit((x, y), epochs=1, **FIT, **kwargs)


@pytest.mark.parametrize("loss_weights, error", [
    ({"a": -1.0}, ValueError), ({"z": 1.0}, ValueError), ({"a": "x"}, ValueError),
    ([1.0], TypeError),
])
def test_bad_loss_weights_name_the_keyword(loss_weights, error):
    with pytest.raises(error, match="loss_weights"):
        KerasModel(_net(), {"a": nn.MSELoss()}, loss_weights=loss_weights)
    with pytest.raises(TypeError, match="loss_weights"):
        KerasModel(_net(), nn.MSELoss(), loss_weights={"a": 1.0})


@pytest.mark.parametrize("label_keys", ["label", [], [1]])
def test_bad_label_keys_name_the_keyword(label_keys):
    with pytest.raises(TypeError, match="label_keys"):
        KerasModel(_net(), nn.CrossEntropyLoss(), label_keys=label_keys)


def test_keras_fit_x_y_of_different_lengths_is_refused():
    x, y = _data(24)
    net = _net()
    before = _state(net)
    with pytest.raises(ValueError, match="different lengths"):
        _model(net).fit(x, y[:20], epochs=1, **FIT)
    _assert_same_state(_state(net), before)


def test_keras_fit_x_y_equals_fit_of_the_pair():
    x, y = _data(24)
    a, b = _net(), _net()
    torch.manual_seed(1)
    df_a = _model(a).fit(x.numpy(), y.numpy(), epochs=2, batch_size=8, **FIT)
    torch.manual_seed(1)
    df_b = _model(b).fit((x, y), epochs=2, batch_size=8, **FIT)
    assert df_a.equals(df_b)
    _assert_same_state(_state(a), _state(b))
    assert not math.isnan(df_a["train_loss"].iloc[-1])
