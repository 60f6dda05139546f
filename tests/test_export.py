"""export(): ONNX and TorchScript files compute what the net computes, at any batch size;
safetensors weights come back bit for bit; bad arguments write nothing."""

import importlib.util
import os
import warnings

import pytest
import torch

from kerastorch import KerasModel
from kerastorch.export import export
from kerastorch.files import load_state_dict_file

DYNAMO = "torch.onnx.export(dynamo=True)"
LEGACY = "torch.onnx.export(dynamo=False)"


class MLP(torch.nn.Module):
    """Batch norm and dropout, so a file exported in training mode would differ."""

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8),
                                        torch.nn.ReLU(), torch.nn.Dropout(0.5))
        self.head = torch.nn.Linear(8, 3)

    def forward(self, x):
        return self.head(self.body(x))


class TwoInputs(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = torch.nn.Linear(3, 2), torch.nn.Linear(5, 2)

    def forward(self, x, y):
        return torch.tanh(self.a(x)) + self.b(y)


class Tied(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(6, 4)
        self.head = torch.nn.Linear(4, 6, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, tokens):
        return self.head(self.embed(tokens))


def _trained_mlp():
    torch.manual_seed(0)
    net = MLP()
    with torch.no_grad():  # batch-norm statistics that are not the identity
        net.body[1].running_mean.uniform_(-1, 1)
        net.body[1].running_var.uniform_(0.5, 2)
    return net


def _run_onnx(path, feeds: dict) -> list:
    """onnxruntime, or onnx's reference evaluator where onnxruntime is missing."""
    feeds = {k: v.numpy() for k, v in feeds.items()}
    if importlib.util.find_spec("onnxruntime"):
        import onnxruntime
        return onnxruntime.InferenceSession(str(path)).run(None, feeds)
    reference = pytest.importorskip("onnx.reference")
    return reference.ReferenceEvaluator(str(path)).run(None, feeds)


def _expected_onnx_exporter():
    return DYNAMO if importlib.util.find_spec("onnxscript") else LEGACY


def test_onnx_matches_the_net_at_another_batch_size_and_restores_training_mode(tmp_path):
    pytest.importorskip("onnx")
    net = _trained_mlp().train()
    net.body[1].eval()  # a frozen batch norm: stays in eval afterwards
    path = tmp_path / "net.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.onnx's own deprecation notices
        used = export(net, path, torch.randn(3, 4))
    assert used == _expected_onnx_exporter()
    assert net.training and net.head.training and not net.body[1].training
    x = torch.randn(7, 4)
    (onnx_out,) = _run_onnx(path, {"input": x})
    with torch.no_grad():
        expected = net.eval()(x).numpy()
    assert onnx_out.shape == (7, 3)
    assert abs(onnx_out - expected).max() < 1e-5
    assert os.listdir(tmp_path) == ["net.onnx"]


def test_onnx_of_a_keras_model_whose_net_takes_keyword_inputs(tmp_path):
    pytest.importorskip("onnx")
    torch.manual_seed(1)
    model = KerasModel(TwoInputs(), loss_fn=torch.nn.MSELoss())
    path = tmp_path / "two.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        used = export(model, path, {"x": torch.randn(2, 3), "y": torch.randn(2, 5)})
    assert used == _expected_onnx_exporter()
    feeds = {"x": torch.randn(5, 3), "y": torch.randn(5, 5)}
    (onnx_out,) = _run_onnx(path, feeds)
    with torch.no_grad():
        expected = model.net(**feeds).numpy()
    assert abs(onnx_out - expected).max() < 1e-5


def test_onnx_falls_back_to_the_torchscript_exporter_with_a_warning(tmp_path, monkeypatch):
    pytest.importorskip("onnx")
    original = torch.onnx.export

    def no_dynamo(*args, dynamo=True, **kwargs):
        if dynamo:
            raise RuntimeError("cannot capture this net")
        return original(*args, dynamo=dynamo, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", no_dynamo)
    torch.manual_seed(2)
    net = TwoInputs()
    path = tmp_path / "tuple.onnx"
    with pytest.warns(UserWarning, match="dynamo ONNX exporter failed .RuntimeError: cannot capture"):
        used = export(net, path, (torch.randn(2, 3), torch.randn(2, 5)))
    assert used == LEGACY
    x, y = torch.randn(9, 3), torch.randn(9, 5)
    (onnx_out,) = _run_onnx(path, {"input_0": x, "input_1": y})
    with torch.no_grad():
        assert abs(onnx_out - net(x, y).numpy()).max() < 1e-5


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
@pytest.mark.parametrize("net, example, call", [
    (_trained_mlp, torch.randn(3, 4), lambda m: m(torch.ones(6, 4))),
    (TwoInputs, {"x": torch.randn(2, 3), "y": torch.randn(2, 5)},
     lambda m: m(x=torch.ones(4, 3), y=torch.ones(4, 5))),
], ids=["tensor", "dict"])
def test_torchscript_reloads_to_the_same_outputs(tmp_path, net, example, call):
    net = net().train()
    path = tmp_path / "net.pt"
    assert export(net, path, example, format="torchscript") == "torch.jit.trace"
    assert net.training
    reloaded = torch.jit.load(str(path))
    with torch.no_grad():
        assert torch.equal(call(reloaded), call(net.eval()))


def test_safetensors_round_trip_through_load_ckpt_is_bit_identical(tmp_path):
    safetensors_torch = pytest.importorskip("safetensors.torch")
    source = KerasModel(_trained_mlp(), loss_fn=torch.nn.MSELoss())
    path = tmp_path / "weights.safetensors"
    assert export(source, path, format="safetensors") == "safetensors"
    assert set(safetensors_torch.load_file(str(path))) == set(source.net.state_dict())
    target = KerasModel(MLP(), loss_fn=torch.nn.MSELoss())
    target.load_ckpt(str(path))
    for name, value in source.net.state_dict().items():
        loaded = target.net.state_dict()[name]
        assert loaded.dtype == value.dtype and torch.equal(loaded, value), name


def test_tied_weights_are_stored_once_and_load_under_both_names(tmp_path):
    safetensors = pytest.importorskip("safetensors")
    torch.manual_seed(3)
    source = Tied()
    path = tmp_path / "tied.safetensors"
    export(source, path, format="safetensors")
    with safetensors.safe_open(str(path), framework="pt") as f:
        assert sorted(f.keys()) == ["embed.weight"]
    state = load_state_dict_file(str(path))
    assert sorted(state) == ["embed.weight", "head.weight"]
    target = KerasModel(Tied(), loss_fn=torch.nn.CrossEntropyLoss())
    target.load_ckpt(str(path))
    assert torch.equal(target.net.embed.weight, source.embed.weight)
    assert target.net.head.weight is target.net.embed.weight


def test_safetensors_refuses_a_state_dict_entry_that_is_not_a_tensor(tmp_path):
    pytest.importorskip("safetensors")

    class WithExtraState(torch.nn.Linear):
        def get_extra_state(self):
            return {"vocab": ["a", "b"]}

        def set_extra_state(self, state):
            pass

    with pytest.raises(ValueError, match="entry '_extra_state' is a dict"):
        export(WithExtraState(2, 2), tmp_path / "w.safetensors", format="safetensors")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(format="pt"), ValueError, "format must be one of"),
    (dict(format=None), TypeError, "format must be a str"),
    (dict(example_input=None), TypeError, "example_input is required for format='onnx'"),
    (dict(example_input=[[1.0, 2.0]]), TypeError, r"example_input\[0\] must be a tensor"),
    (dict(example_input=3.0), TypeError, "example_input must be a tensor, a tuple"),
    (dict(example_input={1: torch.ones(2, 4)}), TypeError, "dict keys must be str"),
    (dict(example_input=()), ValueError, "example_input is empty"),
    (dict(example_input=torch.tensor(1.0)), ValueError, r"example_input\[0\] is a 0-d tensor"),
    (dict(example_input=(torch.ones(2, 4), torch.ones(3, 4))), ValueError,
     "share their first .batch. dimension"),
    (dict(path=3), TypeError, "path must be a str or os.PathLike"),
    (dict(model="net"), TypeError, "model must be a torch.nn.Module or a KerasModel"),
    (dict(format="torchscript", example_input=None), TypeError, "required for format='torchscript'"),
    (dict(format="safetensors", example_input="x"), TypeError, "example_input must be"),
])
def test_bad_arguments_raise_before_anything_is_written(tmp_path, kwargs, error, match):
    call = dict(model=torch.nn.Linear(4, 2), path=tmp_path / "out" / "net.onnx",
                example_input=torch.ones(2, 4), format="onnx")
    call.update(kwargs)
    with pytest.raises(error, match=match):
        export(call.pop("model"), call.pop("path"), call.pop("example_input"), **call)
    assert os.listdir(tmp_path) == []
