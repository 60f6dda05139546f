"""steps_per_epoch survives an interrupted run: resume continues the loader's pass exactly."""

import pandas as pd
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from kerastorch import KerasModel


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(10, 3, generator=g)
    return x, (x.sum(1) > 0).long()


def _model():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 8), nn.Dropout(0.2), nn.Linear(8, 2))
    return KerasModel(net, nn.CrossEntropyLoss(),
                      optimizer=torch.optim.SGD(net.parameters(), lr=0.1))


def _train_data(fast):
    x, y = _data()
    return (x, y) if fast else DataLoader(TensorDataset(x, y), batch_size=3, shuffle=True)


@pytest.mark.parametrize("fast", [True, False])
def test_resume_mid_pass_equals_a_straight_run_bit_for_bit(tmp_path, fast):
    # 10 samples in batches of 3: 4 batches a pass, 3 an epoch, so epochs end mid-pass
    kwargs = dict(batch_size=3, shuffle=True, steps_per_epoch=3, patience=None, quiet=True,
                  fast_data=fast)
    straight = _model()
    torch.manual_seed(1)
    expected = straight.fit(_train_data(fast), epochs=5, ckpt_path=str(tmp_path / "a"),
                            **kwargs)

    first = _model()
    torch.manual_seed(1)
    first.fit(_train_data(fast), epochs=2, ckpt_path=str(tmp_path / "b"), **kwargs)
    torch.manual_seed(123)  # whatever the process did in between must not matter
    resumed = _model()
    history = resumed.fit(_train_data(fast), epochs=5, ckpt_path=str(tmp_path / "b"),
                          resume=True, **kwargs)
    pd.testing.assert_frame_equal(history, expected)
    for a, b in zip(straight.net.parameters(), resumed.net.parameters()):
        assert torch.equal(a, b)


def test_a_state_without_a_loader_position_warns_and_starts_a_new_pass(tmp_path):
    kwargs = dict(batch_size=3, patience=None, quiet=True)
    model = _model()
    model.fit(_train_data(True), epochs=1, ckpt_path=str(tmp_path / "c"), **kwargs)
    with pytest.warns(UserWarning, match="no loader position"):
        history = _model().fit(_train_data(True), epochs=2, ckpt_path=str(tmp_path / "c"),
                               resume=True, steps_per_epoch=2, **kwargs)
    assert history["epoch"].tolist() == [1, 2]
