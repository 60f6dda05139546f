"""kerastorch.summary: the table's numbers, torchkeras's keywords, KerasModel, and the errors."""

import pandas as pd
import pytest
import torch
from torch import nn

from kerastorch import KerasModel, summary


def _conv_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 10),
                         nn.BatchNorm1d(10))


def _table(*args, **kwargs):
    return summary(*args, print_table=False, **kwargs)


class TwoInputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(3, 5), nn.Linear(2, 5)

    def forward(self, x, y, mask=None):
        out = self.a(x) + self.b(y)
        return out if mask is None else out * mask


class OnePair(nn.Module):
    """forward takes a single (x, y) pair: what torchkeras's model(input_data) feeds it."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(3, 5), nn.Linear(2, 5)

    def forward(self, pair):
        x, y = pair
        return self.a(x) + self.b(y)


class OneDict(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Linear(3, 5)

    def forward(self, batch):
        return self.a(batch["x"])


def test_param_counts_equal_the_hand_computed_per_layer_counts(capsys):
    net, x = _conv_net(), torch.randn(2, 1, 8, 8)
    df = summary(net, x)
    conv, linear, bn = 1 * 4 * 3 * 3 + 4, 144 * 10 + 10, 10 + 10  # weights + biases
    assert list(df.columns) == ["layer", "type", "output_shape", "params"]
    assert df["layer"].tolist() == ["0", "1", "2", "3", "4"]
    assert df["type"].tolist() == ["Conv2d", "ReLU", "Flatten", "Linear", "BatchNorm1d"]
    assert df["params"].tolist() == [40, 0, 0, 1450, 20] == [conv, 0, 0, linear, bn]
    assert df["output_shape"].tolist() == [(2, 4, 6, 6), (2, 4, 6, 6), (2, 144), (2, 10), (2, 10)]
    assert df["params"].sum() == sum(p.numel() for p in net.parameters()) == 1510
    assert "Total params: 1,510  Trainable params: 1,510  Non-trainable params: 0" in capsys.readouterr().out


def test_frozen_params_are_counted_in_the_table_but_not_as_trainable(capsys):
    net = _conv_net()
    for p in net[0].parameters():
        p.requires_grad_(False)
    df = summary(net, torch.randn(2, 1, 8, 8))
    assert df["params"].tolist() == [40, 0, 0, 1450, 20]
    assert "Total params: 1,510  Trainable params: 1,470  Non-trainable params: 40" in capsys.readouterr().out


def test_a_keras_model_gives_the_same_table_as_its_net(capsys):
    net, x = _conv_net(), torch.randn(2, 1, 8, 8)
    model = KerasModel(net, nn.CrossEntropyLoss())
    from_model = summary(model, input_data=x)
    printed_model = capsys.readouterr().out
    from_net = summary(net, x)
    assert printed_model == capsys.readouterr().out
    pd.testing.assert_frame_equal(from_model, from_net)
    pd.testing.assert_frame_equal(_table(model, x), from_net)
    pd.testing.assert_frame_equal(_table(model, input_shape=(1, 8, 8))["params"].to_frame(),
                                  from_net["params"].to_frame())


def test_a_module_with_a_net_attribute_is_described_through_its_own_forward():
    class Wrapper(nn.Module):
        def __init__(self):
            super().__init__()
            self.net, self.head = nn.Linear(3, 4), nn.Linear(4, 2)

        def forward(self, x):
            return self.head(self.net(x))

    df = _table(Wrapper(), torch.zeros(5, 3))
    assert df["layer"].tolist() == ["net", "head"]
    assert df["params"].tolist() == [16, 10]


def test_a_leaf_module_is_its_own_single_row():
    df = _table(nn.Linear(2, 3), torch.zeros(4, 2))
    assert df[["type", "output_shape", "params"]].values.tolist() == [["Linear", (4, 3), 9]]


def test_input_data_tensor_equals_positional():
    net, x = _conv_net(), torch.randn(2, 1, 8, 8)
    pd.testing.assert_frame_equal(_table(net, input_data=x), _table(net, x))


@pytest.mark.parametrize("container", [tuple, list])
def test_input_data_tuple_or_list_is_spread_into_positional_inputs(container):
    net, x, y = TwoInputs(), torch.zeros(4, 3), torch.zeros(4, 2)
    expected = _table(net, x, y)
    assert expected["params"].tolist() == [20, 15]
    assert expected["output_shape"].tolist() == [(4, 5), (4, 5)]
    pd.testing.assert_frame_equal(_table(net, input_data=container([x, y])), expected)
    pd.testing.assert_frame_equal(_table(net, input_data_args=container([x, y])), expected)


def test_input_data_pair_goes_whole_to_a_forward_that_takes_one_argument():
    # torchkeras calls model(input_data): a net written for that keeps working
    net, x, y = OnePair(), torch.zeros(4, 3), torch.zeros(4, 2)
    df = _table(net, input_data=(x, y))
    assert df["params"].tolist() == [20, 15]
    assert df["output_shape"].tolist() == [(4, 5), (4, 5)]


def test_input_data_dict_is_passed_as_keyword_inputs():
    net, x, y = TwoInputs(), torch.zeros(4, 3), torch.zeros(4, 2)
    calls = []
    net.register_forward_hook(lambda m, args, kwargs, out: calls.append(sorted(kwargs)),
                              with_kwargs=True)
    df = _table(net, input_data={"x": x, "y": y, "mask": torch.ones(4, 5)})
    assert calls == [["mask", "x", "y"]]
    pd.testing.assert_frame_equal(df, _table(net, x, y))


def test_input_data_dict_goes_whole_to_a_forward_that_takes_one_batch_argument():
    df = _table(OneDict(), input_data={"x": torch.zeros(6, 3), "unused": torch.zeros(1)})
    assert df[["output_shape", "params"]].values.tolist() == [[(6, 5), 20]]


def test_input_shape_is_a_zeros_batch_of_one_without_the_batch_dim():
    seen = []
    net = nn.Sequential(nn.Flatten(), nn.Linear(6, 5))
    net.register_forward_pre_hook(lambda m, args: seen.append(args[0].clone()))
    df = _table(net, input_shape=(2, 3))
    assert df["output_shape"].tolist() == [(1, 6), (1, 5)]
    assert df["params"].tolist() == [0, 35]
    assert seen[0].shape == (1, 2, 3) and seen[0].dtype == torch.float32
    assert torch.equal(seen[0], torch.zeros(1, 2, 3))
    pd.testing.assert_frame_equal(_table(net, input_shape=torch.Size([2, 3])), df)


def test_input_shape_list_gives_one_input_per_shape():
    df = _table(TwoInputs(), input_shape=[(3,), (2,)])
    assert df["output_shape"].tolist() == [(1, 5), (1, 5)]
    assert df["params"].tolist() == [20, 15]


def test_input_shape_follows_the_net_dtype_and_input_dtype_overrides_it():
    df = _table(nn.Linear(3, 2).double(), input_shape=(3,))
    assert df["output_shape"].tolist() == [(1, 2)]
    emb = nn.Embedding(10, 4)
    for dtype in (torch.long, torch.LongTensor):  # torchkeras passes tensor types
        df = _table(emb, input_shape=(7,), input_dtype=dtype)
        assert df[["output_shape", "params"]].values.tolist() == [[(1, 7, 4), 40]]


def test_inputs_are_moved_to_the_net_device():
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU()).to("meta")
    df = _table(net, torch.zeros(2, 3))  # a CPU tensor for a net elsewhere
    assert df[["output_shape", "params"]].values.tolist() == [[(2, 4), 16], [(2, 4), 0]]
    assert _table(net, input_shape=(3,))["output_shape"].tolist() == [(1, 4), (1, 4)]


def test_runs_in_eval_mode_and_restores_training_mode():
    net = _conv_net()
    net.train()
    before = net[4].running_mean.clone()
    _table(net, torch.randn(2, 1, 8, 8))
    assert net.training and all(m.training for m in net.modules())
    assert torch.equal(net[4].running_mean, before)  # batchnorm statistics untouched
    net.eval()
    _table(net, torch.randn(2, 1, 8, 8))
    assert not net.training


def test_multihead_attention_is_one_layer_with_all_its_params():
    class Attn(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn, self.out = nn.MultiheadAttention(8, 2, batch_first=True), nn.Linear(8, 1)

        def forward(self, x):
            return self.out(self.attn(x, x, x)[0])

    net = Attn()
    df = _table(net, torch.zeros(2, 5, 8))
    mha = 3 * 8 * 8 + 3 * 8 + 8 * 8 + 8  # in-projection + out-projection, weights + biases
    assert df["layer"].tolist() == ["attn", "out"]
    assert df["params"].tolist() == [mha, 9]
    assert df["params"].sum() == sum(p.numel() for p in net.parameters())
    assert df["output_shape"].tolist()[0] == [(2, 5, 8), (2, 5, 5)]


# -- errors --------------------------------------------------------------------------------


def test_positional_inputs_and_input_data_together_are_a_type_error():
    net, x = nn.Linear(2, 3), torch.zeros(1, 2)
    with pytest.raises(TypeError, match=r"positional inputs and input_data="):
        summary(net, x, input_data=x)
    with pytest.raises(TypeError, match=r"input_data= and input_shape="):
        summary(net, input_data=x, input_shape=(2,))
    with pytest.raises(TypeError, match=r"positional inputs and input_data_args="):
        summary(net, x, input_data_args=(x,))


def test_no_example_input_is_a_type_error():
    with pytest.raises(TypeError, match=r"needs an example input.*received none"):
        summary(nn.Linear(2, 3))


@pytest.mark.parametrize("call, pattern", [
    (lambda: summary(3, torch.zeros(1, 2)),
     r"model must be a torch\.nn\.Module or a kerastorch\.KerasModel; received int"),
    (lambda: summary(nn.Linear(2, 3), input_data="x"),
     r"input_data=.*expected a torch\.Tensor, a tuple/list.*dict.*received str"),
    (lambda: summary(nn.Linear(2, 3), input_data={0: torch.zeros(1, 2)}),
     r"input_data=dict.*keys must be str.*received key 0"),
    (lambda: summary(nn.Linear(2, 3), input_data_args=torch.zeros(1, 2)),
     r"input_data_args=.*expected a tuple/list.*received Tensor"),
    (lambda: summary(nn.Linear(2, 3), input_shape=[2]),
     r"input_shape=.*expected a tuple of ints.*received int 2"),
    (lambda: summary(nn.Linear(2, 3), input_shape="2"),
     r"input_shape=.*expected a tuple of ints.*received str"),
    (lambda: summary(nn.Linear(2, 3), input_shape=(2.0,)),
     r"input_shape=.*expected a tuple of ints.*received tuple \(2\.0,\)"),
    (lambda: summary(nn.Linear(2, 3), input_shape=[]),
     r"input_shape=.*at least one shape.*received an empty list"),
    (lambda: summary(nn.Linear(2, 3), input_shape=(2,), input_dtype="float"),
     r"input_dtype=.*expected a torch\.dtype.*received str"),
    (lambda: summary(nn.Linear(2, 3), torch.zeros(1, 2), input_dtype=torch.float32),
     r"input_dtype=.*applies to input_shape= only.*positional inputs"),
    (lambda: summary(nn.Linear(2, 3), torch.zeros(1, 2), print_table="no"),
     r"print_table=.*expected a bool; received str"),
])
def test_wrong_kinds_are_type_errors_naming_argument_expected_and_received(call, pattern):
    with pytest.raises(TypeError, match=pattern):
        call()


def test_negative_input_shape_is_a_value_error():
    with pytest.raises(ValueError, match=r"input_shape=.*>= 0.*\(-1, 2\)"):
        summary(nn.Linear(2, 3), input_shape=(-1, 2))


@pytest.mark.parametrize("arch", ["resnet18", "mobilenet_v3_small", "vit_b_16"])
def test_parameter_counts_match_torchinfo_on_torchvision_models(arch):
    """torchkeras's summary was reported wrong against torchinfo; ours must agree with it,
    also with frozen layers and with parameters owned by a container (ViT's class token)."""
    torchvision = pytest.importorskip("torchvision")
    torchinfo = pytest.importorskip("torchinfo")
    net = getattr(torchvision.models, arch)(weights=None)
    for name, param in net.named_parameters():
        if name.startswith(("conv1", "features.0", "conv_proj")):
            param.requires_grad_(False)  # a frozen stem: non-trainable parameters
    x = torch.zeros(1, 3, 224, 224)
    df = summary(net, x, print_table=False)
    stats = torchinfo.summary(net, input_data=x, verbose=0)
    assert df.attrs["total_params"] == stats.total_params
    assert df.attrs["trainable_params"] == stats.trainable_params
    assert df.attrs["non_trainable_params"] == stats.total_params - stats.trainable_params > 0
    # every leaf layer's row carries the parameters torchinfo gives that layer
    leaf = {info.get_layer_name(False, False): info.num_params
            for info in stats.summary_list if info.is_leaf_layer}
    by_type = {}
    for info in stats.summary_list:
        if info.is_leaf_layer:
            by_type.setdefault(info.class_name, []).append(info.num_params)
    ours = {}
    for row in df.itertuples():
        ours.setdefault(row.type, []).append(row.params)
    for kind, counts in by_type.items():
        if kind in ours:
            assert sorted(ours[kind]) == sorted(counts), kind
    assert leaf  # torchinfo saw leaf layers at all
