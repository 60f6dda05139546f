"""fit(accelerator=...): a user-built Accelerator is used as given; conflicting settings
are refused before any weight changes; kerastorch's own Accelerator honours the
variables an ``accelerate launch`` config sets."""

import pytest
import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs
from torch import nn

from kerastorch import KerasModel
from kerastorch.accelerate_compat import new_accelerator


def _data():
    gen = torch.Generator().manual_seed(0)
    return torch.randn(64, 3, generator=gen), torch.randint(0, 2, (64,), generator=gen)


def _model(seed=0):
    torch.manual_seed(seed)
    return KerasModel(nn.Linear(3, 2), nn.CrossEntropyLoss(),
                      optimizer=None)


def test_given_accelerator_is_used_for_fit_evaluate_and_predict():
    X, y = _data()
    model = _model()
    acc = new_accelerator(cpu=True, mixed_precision="bf16", kwargs_handlers=[
        DistributedDataParallelKwargs(find_unused_parameters=True)])
    model.fit((X, y), epochs=1, ckpt_path=None, quiet=True, accelerator=acc)
    assert model.accelerator is acc
    # bf16 autocast ran: the step's loss differs from a full-precision fit's
    reference = _model()
    reference.fit((X, y), epochs=1, ckpt_path=None, quiet=True, mixed_precision="no")
    assert not torch.equal(model.net.weight, reference.net.weight)
    assert model._last_accelerator() is acc
    model.evaluate((X, y), quiet=True)
    assert model.accelerator is acc
    # a fit without accelerator= builds kerastorch's own again
    model.fit((X, y), epochs=1, ckpt_path=None, quiet=True, mixed_precision="no")
    assert model.accelerator is not acc and model.accelerator.mixed_precision == "no"


def test_given_accelerator_equals_kerastorchs_own_with_the_same_settings():
    X, y = _data()
    ours, theirs = _model(), _model()
    torch.manual_seed(1)  # the same shuffles
    h1 = ours.fit((X, y), epochs=3, ckpt_path=None, quiet=True, gradient_accumulation_steps=2,
                  fast_data=False)
    acc = new_accelerator(cpu=True, gradient_accumulation_steps=2)
    torch.manual_seed(1)
    h2 = theirs.fit((X, y), epochs=3, ckpt_path=None, quiet=True, accelerator=acc,
                    fast_data=False)
    assert h1.equals(h2)
    assert torch.equal(ours.net.weight, theirs.net.weight)


@pytest.mark.parametrize("kwargs, words", [
    ({"mixed_precision": "no"}, ["mixed_precision='no'", "mixed_precision='bf16'"]),
    ({"gradient_accumulation_steps": 3}, ["gradient_accumulation_steps=3",
                                          "gradient_accumulation_steps=1"]),
])
def test_conflicting_settings_are_refused_before_training(kwargs, words):
    X, y = _data()
    model = _model()
    before = model.net.weight.detach().clone()
    acc = new_accelerator(cpu=True, mixed_precision="bf16")
    with pytest.raises(ValueError) as info:
        model.fit((X, y), epochs=1, ckpt_path=None, quiet=True, accelerator=acc, **kwargs)
    for word in words:
        assert word in str(info.value)
    assert torch.equal(model.net.weight, before)


def test_agreeing_settings_are_accepted():
    X, y = _data()
    acc = new_accelerator(cpu=True, mixed_precision="bf16", gradient_accumulation_steps=2)
    model = _model()
    model.fit((X, y), epochs=1, ckpt_path=None, quiet=True, accelerator=acc,
              mixed_precision="bf16", gradient_accumulation_steps=2, cpu=True)
    assert model.accelerator is acc


def test_not_an_accelerator_is_a_type_error():
    X, y = _data()
    with pytest.raises(TypeError, match="accelerator must be an accelerate.Accelerator; "
                                        "received dict"):
        _model().fit((X, y), epochs=1, ckpt_path=None, quiet=True, accelerator={})


def test_default_mixed_precision_comes_from_the_launch_environment(monkeypatch):
    X, y = _data()
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    monkeypatch.setenv("ACCELERATE_GRADIENT_ACCUMULATION_STEPS", "2")
    model = _model()
    model.fit((X, y), epochs=1, ckpt_path=None, quiet=True)
    assert model.accelerator.mixed_precision == "bf16"
    assert model.accelerator.gradient_accumulation_steps == 2
    # an explicit value wins over the environment, as in Accelerate
    model.fit((X, y), epochs=1, ckpt_path=None, quiet=True, mixed_precision="no")
    assert model.accelerator.mixed_precision == "no"


def test_mixed_precision_value_is_checked():
    X, y = _data()
    with pytest.raises(ValueError, match="mixed_precision must be None or one of"):
        _model().fit((X, y), epochs=1, ckpt_path=None, quiet=True, mixed_precision="fp8x")


def test_a_new_accelerator_after_a_fit_stopped_mid_accumulation_still_steps():
    """Accelerate keeps its gradient state process-wide: a fit that ended inside an
    accumulation leaves sync_gradients False, which a plain Accelerator built next
    inherits. The step must still update the weights (the accumulate call is kept then)."""
    X, y = _data()
    model = _model()
    model.fit((X, y), epochs=1, steps_per_epoch=2, batch_size=8, gradient_accumulation_steps=3,
              ckpt_path=None, quiet=True)
    acc = Accelerator(cpu=True)
    assert acc.sync_gradients is False and acc.gradient_accumulation_steps == 1
    before = model.net.weight.detach().clone()
    model.fit((X, y), epochs=1, batch_size=8, ckpt_path=None, quiet=True, accelerator=acc)
    assert not torch.equal(before, model.net.weight)
