"""Every use of an Accelerate internal, each with the Accelerate behaviour it works around.

Upgrading Accelerate means checking this module and nothing else: the rest of
kerastorch uses only Accelerate's public API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

import torch

if TYPE_CHECKING:
    from accelerate import Accelerator

__all__ = ["new_accelerator", "accelerator_generation", "bare_optimizer", "loader_generator",
           "enter_loader", "leave_loader", "plain_backward", "needs_autocast",
           "needs_accumulate"]

# bumped whenever kerastorch creates an Accelerator: Accelerate's state is
# process-wide, so a model whose Accelerator is older must build a new one
_generation = 0


def new_accelerator(**kwargs: Any) -> Accelerator:
    """A new ``Accelerator(**kwargs)``, after resetting Accelerate's process-wide state.

    Works around: ``AcceleratorState`` and ``GradientState`` are singletons that keep
    the first ``mixed_precision`` (and accumulation settings) for the whole process
    and refuse a second one, so one process could not run a bf16 fit after a
    full-precision one. ``_reset_state(reset_partial_state=False)`` clears them but
    keeps ``PartialState`` (the process group), which must survive under torchrun.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState

    global _generation
    if AcceleratorState._shared_state:
        AcceleratorState._reset_state(reset_partial_state=False)
        GradientState._reset_state()
    accelerator = Accelerator(**kwargs)
    _generation += 1
    return accelerator


def reset_for_launch() -> None:
    """Clear all of Accelerate's process-wide state, ``PartialState`` included, before a fork.

    Works around: ``notebook_launcher`` refuses to start while ``AcceleratorState``
    holds anything (as it does after any fit in the notebook), and processes forked
    from it would inherit the notebook's single-process ``PartialState``, so they would
    never set up their process group. Every Accelerator made before is stale afterwards
    (its state dict is cleared in place); the generation bump makes models build anew.
    """
    from accelerate.state import AcceleratorState, GradientState

    global _generation
    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    _generation += 1


def forget_prepared(module: torch.nn.Module) -> None:
    """Let Accelerate prepare ``module`` again, as if it never had.

    Works around: ``prepare`` marks the module it returns ``_is_accelerate_prepared``
    and returns a marked module as it is. In one process that module is the user's
    net itself, so after any single-process fit a later multi-process prepare of the
    same net would skip the DDP wrapper: each process would train alone, silently.
    """
    if getattr(module, "_is_accelerate_prepared", False):
        del module._is_accelerate_prepared


def accelerator_generation() -> int:
    """How many Accelerators :func:`new_accelerator` has made; an older one is stale."""
    return _generation


def bare_optimizer(optimizer: Any) -> Optional[torch.optim.Optimizer]:
    """The optimizer inside Accelerate's wrapper when the wrapper would add nothing, else None.

    Works around: ``AcceleratedOptimizer.step``/``zero_grad`` only forward to the
    inner optimizer when gradients sync, unless a GradScaler, XLA or a LOMO
    optimizer is involved; but they pay two uncached importlib look-ups and an
    ``inspect.signature`` per step (about 0.4 ms here, a third of a tiny MLP's
    step). Only that plain case is bypassed; anything else (DeepSpeed's wrapper
    included) keeps the wrapper.
    """
    from accelerate.optimizer import AcceleratedOptimizer

    if type(optimizer) is not AcceleratedOptimizer or optimizer.scaler is not None:
        return None
    inner = optimizer.optimizer
    if getattr(optimizer, "accelerator_state", None) is not None and \
            str(getattr(optimizer.accelerator_state, "distributed_type", "")).endswith("XLA"):
        return None
    if type(inner).__module__.startswith("lomo_optim"):
        return None
    return inner


def loader_generator(loader: Any) -> Optional[torch.Generator]:
    """The generator a prepared loader shuffles with under several processes, or None.

    Works around: Accelerate's ``DataLoaderShard`` shuffles with its own
    ``synchronized_generator`` (an attribute, not API), which exact resume must
    save and restore alongside the global RNG states.
    """
    generator = getattr(loader, "synchronized_generator", None)
    inner = getattr(loader, "loader", None)  # kerastorch's StepsPerEpoch/FirstBatches wrappers
    if generator is None and inner is not None and inner is not loader:
        return loader_generator(inner)
    return generator


def enter_loader(accelerator: Any, loader: Any) -> None:
    """Make ``loader`` the one Accelerate's gradient accumulation watches for its last batch.

    ``loader`` needs the attributes ``end_of_dataloader`` (True while its last batch
    runs) and ``remainder`` (padding samples added; 0 in one process).

    Works around: ``Accelerator.accumulate`` syncs the gradients of a loader's last,
    incomplete accumulation only when ``GradientState`` knows the loader being
    iterated, and only Accelerate's own prepared loaders register themselves
    there (``DataLoaderStateMixin.begin``/``end`` call the private
    ``GradientState._add_dataloader``/``_remove_dataloader``). kerastorch's
    single-process loader (``data.DeviceBatches``) registers the same way.
    """
    accelerator.gradient_state._add_dataloader(loader)


def leave_loader(accelerator: Any, loader: Any) -> None:
    """Undo :func:`enter_loader` (at the end of the pass, or when it is abandoned)."""
    accelerator.gradient_state._remove_dataloader(loader)


def plain_backward(accelerator: Any) -> bool:
    """Whether ``accelerator.backward(loss)`` would only run ``loss.backward()``.

    Works around: ``Accelerator.backward`` divides the loss by
    ``gradient_accumulation_steps`` even when that is 1, which adds an op and an
    autograd node per step (about 16 us, a few percent of a tiny MLP's step) and
    changes nothing (x / 1 and its gradient are exact). True without accumulation,
    a GradScaler, DeepSpeed or Megatron, whose backward differs.
    """
    return (accelerator.gradient_accumulation_steps == 1 and accelerator.scaler is None
            and accelerator.distributed_type not in ("DEEPSPEED", "MEGATRON_LM"))


def needs_autocast(accelerator: Any) -> bool:
    """Whether ``accelerator.autocast()`` does anything.

    Works around: without mixed precision (``native_amp`` False) the context manager
    still builds and enters a null context per call (5-10 us per step).
    """
    return bool(getattr(accelerator, "native_amp", True))


def needs_accumulate(accelerator: Any) -> bool:
    """Whether ``accelerator.accumulate(net)`` does anything for a training step.

    Works around: in one plain process without accumulation it only counts steps and
    sets ``sync_gradients`` to True, which it already is (about 5 us per step); when it
    is not (Accelerate's process-wide state kept from an earlier, accumulating fit), the
    call is kept, and sets it.
    """
    return not (accelerator.gradient_accumulation_steps == 1
                and accelerator.num_processes == 1
                and accelerator.distributed_type == "NO"
                and accelerator.sync_gradients)  # a state another fit left mid-accumulation
