"""Turn user data into batches: a DataLoader, or slices of in-memory tensors (the fast path)."""

from __future__ import annotations

from typing import Any, Iterator, Optional, Sequence

import numpy as np
import torch
from accelerate.utils import DistributedType
from torch.utils.data import (BatchSampler, DataLoader, Dataset, IterableDataset, RandomSampler,
                              SequentialSampler, TensorDataset, default_collate)

from .checks import check_bool

__all__ = ["as_dataloader", "as_tensor", "fast_loader", "TensorBatches"]


def as_tensor(array: Any, name: str) -> torch.Tensor:
    """A tensor from a tensor, numpy array or array-like; float64 becomes float32.

    float64 is narrowed because nets are float32 by default and numpy's default
    float is float64 (a Keras user's ``np.random.rand`` would otherwise fail inside
    the first Linear layer).
    """
    if isinstance(array, torch.Tensor):
        tensor = array
    else:
        try:
            tensor = torch.as_tensor(np.asarray(array))
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(
                f"{name} must be a tensor or numpy array; received {type(array).__name__}"
            ) from exc
    if tensor.dtype == torch.float64:
        tensor = tensor.to(torch.float32)
    return tensor


def _is_array_like(obj: Any) -> bool:
    return isinstance(obj, (torch.Tensor, np.ndarray)) or hasattr(obj, "__array__")


def as_dataloader(data: Any, *, batch_size: int, shuffle: bool, name: str) -> Any:
    """Return ``data`` as something the loop can iterate in batches, with at least one batch.

    Accepts a ``DataLoader`` (returned as is), a ``Dataset`` (wrapped with
    ``batch_size``/``shuffle``) or an ``(X, y)`` pair of tensors or numpy arrays.
    This is the one check that data is not empty (a loader without a length, over
    an IterableDataset, is checked by the epoch when it yields nothing).

    Raises:
        TypeError: any other kind of object.
        ValueError: X and y of different lengths, no samples or no batches, or a bad
            batch_size.
    """
    loader = _as_dataloader(data, batch_size=batch_size, shuffle=shuffle, name=name)
    if loader_length(loader) == 0:
        raise ValueError(f"{name} has no batches (len(loader) == 0); it must yield at least one")
    return loader


def _as_dataloader(data: Any, *, batch_size: int, shuffle: bool, name: str) -> Any:
    if isinstance(data, DataLoader):
        return data
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1; received {batch_size!r}")
    check_bool("shuffle", shuffle)
    if isinstance(data, (tuple, list)) and len(data) == 2 and all(map(_is_array_like, data)):
        x, y = as_tensor(data[0], f"{name}[0]"), as_tensor(data[1], f"{name}[1]")
        if len(x) != len(y):
            raise ValueError(
                f"{name} is an (X, y) pair of different lengths: len(X)={len(x)}, len(y)={len(y)}"
            )
        if len(x) == 0:
            raise ValueError(f"{name} is an (X, y) pair with no samples; it needs at least one")
        return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=shuffle)
    if isinstance(data, IterableDataset):
        return DataLoader(data, batch_size=batch_size)
    if isinstance(data, Dataset):
        if _has_no_samples(data):
            raise ValueError(f"{name} is a Dataset with no samples; it needs at least one")
        return DataLoader(data, batch_size=batch_size, shuffle=shuffle)
    raise TypeError(
        f"{name} must be a torch DataLoader, a Dataset, or an (X, y) pair of tensors/numpy "
        f"arrays; received {_describe(data)}"
    )


def _has_no_samples(dataset: Any) -> bool:
    try:
        return len(dataset) == 0
    except TypeError:
        return False


def _describe(data: Any) -> str:
    if isinstance(data, (tuple, list)):
        inner = ", ".join(type(d).__name__ for d in data[:4])
        return f"a {type(data).__name__} of {len(data)} item(s) ({inner})"
    return f"a {type(data).__name__}"


def loader_length(loader: Any):
    """``len(loader)``, or None for loaders without a length (an IterableDataset)."""
    try:
        return len(loader)
    except TypeError:
        return None


class TensorBatches:
    """The batches a DataLoader over a ``TensorDataset`` yields, sliced from the tensors.

    A DataLoader fetches each sample as a tuple of rows (one Python call per
    sample) and stacks the rows again per batch; on a small model that costs as
    much as the training step itself. This iterable indexes each tensor once per
    batch instead and yields the same batches, in the same order, as the list
    ``[x, ..., y]`` that ``default_collate`` builds; each batch is a fresh
    tensor, never a view of the data, as with the DataLoader.

    Every epoch replays the DataLoader's random draws exactly, so the batch
    order and the RNG state that later code sees (dropout, augmentation) are the
    DataLoader's: the iterator's base seed (an int64 drawn from the loader's
    generator, or the global RNG, even without workers), then when shuffling the
    RandomSampler's seed (from the global RNG unless the sampler has a
    generator) and its ``torch.randperm``, and once the epoch is exhausted the
    sampler's trailing ``randperm`` call, which advances a shared generator.

    Args:
        tensors: the tensors, all with the same first dimension.
        batch_size: samples per batch.
        drop_last: drop the last incomplete batch. Defaults to False.
        shuffle: a new random order each epoch, as ``RandomSampler``. Defaults to False.
        sampler_generator: the RandomSampler's ``generator``; None seeds a fresh one
            from the global RNG each epoch. Defaults to None.
        loader_generator: the DataLoader's ``generator``, used for the base seed;
            None uses the global RNG. Defaults to None.
        device: where to move the tensors, once; None leaves them where they are.
            Defaults to None.

    Example:
        >>> X, y = torch.arange(10.0).reshape(5, 2), torch.arange(5)
        >>> batches = TensorBatches((X, y), batch_size=2)
        >>> len(batches), [b[1].tolist() for b in batches]
        (3, [[0, 1], [2, 3], [4]])
    """

    def __init__(self, tensors: Sequence[torch.Tensor], batch_size: int, *,
                 drop_last: bool = False, shuffle: bool = False,
                 sampler_generator: Optional[torch.Generator] = None,
                 loader_generator: Optional[torch.Generator] = None,
                 device: Optional[torch.device] = None):
        if not tensors or any(len(t) != len(tensors[0]) for t in tensors):
            raise ValueError(f"tensors must be one or more tensors of one length; received "
                             f"lengths {[len(t) for t in tensors]}")
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1; received {batch_size!r}")
        # one copy to the device for the whole run instead of one per batch (none on the CPU)
        self.tensors = [t if device is None else t.to(device) for t in tensors]
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.shuffle = shuffle
        self.sampler_generator = sampler_generator
        self.loader_generator = loader_generator

    def __len__(self) -> int:
        n = len(self.tensors[0])
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[list]:
        # the DataLoader draws its iterator's base seed when iter() is called
        torch.empty((), dtype=torch.int64).random_(generator=self.loader_generator)
        return self._batches()

    def _batches(self) -> Iterator[list]:
        n, size = len(self.tensors[0]), self.batch_size
        stop = len(self) * size
        if not self.shuffle:
            for start in range(0, stop, size):
                # clone: a batch must not alias the data (a net may edit its input in place)
                yield [t[start:start + size].clone() for t in self.tensors]
            return
        generator = self.sampler_generator
        if generator is None:
            # RandomSampler.__iter__: a fresh generator seeded from the global RNG
            seed = int(torch.empty((), dtype=torch.int64).random_().item())
            generator = torch.Generator()
            generator.manual_seed(seed)
        order = torch.randperm(n, generator=generator).to(self.tensors[0].device)
        for start in range(0, stop, size):
            index = order[start:start + size]
            yield [t.index_select(0, index) for t in self.tensors]
        if self.sampler_generator is not None:
            # the exhausted RandomSampler calls randperm once more (for num_samples % n),
            # which advances a generator that outlives the epoch
            torch.randperm(n, generator=generator)


def fast_loader(loader: Any, accelerator: Any, *, enabled: bool = True) -> Any:
    """``loader`` as :class:`TensorBatches` when that yields the same batches, else unchanged.

    The fast path is taken for a plain ``DataLoader`` over a ``TensorDataset``
    with the default collate, a ``BatchSampler`` over a ``SequentialSampler`` or
    a ``RandomSampler`` without replacement (``drop_last`` is honoured; workers
    are skipped, as a TensorDataset needs none), in a single process with
    ``gradient_accumulation_steps == 1``. Anything else keeps the DataLoader for
    Accelerate to prepare: its sharding across processes and its end-of-loader
    tracking (which syncs accumulated gradients) need a real DataLoader. The
    tensors are moved to the device once; on a GPU only when they take at most
    half of its free memory.

    Args:
        loader: what :func:`as_dataloader` returned, or None.
        accelerator: the ``accelerate.Accelerator`` of the run.
        enabled: False always keeps ``loader``. Defaults to True.

    Returns:
        A :class:`TensorBatches`, or ``loader`` itself.

    Raises:
        TypeError: ``enabled`` is not a bool.

    Example:
        >>> from accelerate import Accelerator
        >>> data = TensorDataset(torch.randn(10, 2), torch.arange(10))
        >>> loader = DataLoader(data, batch_size=4, shuffle=True)
        >>> type(fast_loader(loader, Accelerator(cpu=True))).__name__
        'TensorBatches'
        >>> fast_loader(loader, Accelerator(cpu=True), enabled=False) is loader
        True
    """
    if not isinstance(enabled, bool):
        raise TypeError(f"fast_data must be True or False; received {type(enabled).__name__} "
                        f"{enabled!r}")
    if not enabled or loader is None or not _single_plain_process(accelerator):
        return loader
    spec = _tensor_loader_spec(loader)
    if spec is None or not _fits_on(accelerator.device, spec["tensors"]):
        return loader
    return TensorBatches(**spec, device=accelerator.device)


def _single_plain_process(accelerator: Any) -> bool:
    return (accelerator.num_processes == 1 and accelerator.gradient_accumulation_steps == 1
            and accelerator.distributed_type == DistributedType.NO)


def _tensor_loader_spec(loader: Any) -> Optional[dict]:
    """TensorBatches arguments reproducing ``loader``, or None when it has anything custom."""
    # exact types: a subclass may override __iter__, __getitem__ or the sampling
    if type(loader) is not DataLoader or type(loader.dataset) is not TensorDataset:
        return None
    batch_sampler = loader.batch_sampler  # None when batch_size=None (no collation)
    if loader.collate_fn is not default_collate or type(batch_sampler) is not BatchSampler:
        return None
    # persistent workers draw the base seed only once, so the RNG would diverge
    if loader.num_workers > 0 and loader.persistent_workers:
        return None
    sampler, tensors = batch_sampler.sampler, loader.dataset.tensors
    n = len(tensors[0])
    if type(sampler) is SequentialSampler:
        shuffle, generator = False, None
    elif (type(sampler) is RandomSampler and not sampler.replacement
          and sampler.num_samples == n):
        shuffle, generator = True, sampler.generator
    else:
        return None
    if len(sampler.data_source) != n:
        return None
    return {"tensors": tensors, "batch_size": batch_sampler.batch_size,
            "drop_last": batch_sampler.drop_last, "shuffle": shuffle,
            "sampler_generator": generator, "loader_generator": loader.generator}


def _fits_on(device: torch.device, tensors: Sequence[torch.Tensor]) -> bool:
    """Whether copying the tensors to ``device`` once is safe (always on the CPU)."""
    device = torch.device(device)
    need = sum(t.nelement() * t.element_size() for t in tensors if t.device != device)
    if device.type == "cpu" or need == 0:
        return True
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return need <= free // 2  # the rest is for the net's weights and activations
    return False  # no free-memory query elsewhere: keep per-batch transfers
