"""Turn user data into batches: a DataLoader, or slices of in-memory tensors (the fast path)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Iterator, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import (BatchSampler, DataLoader, Dataset, IterableDataset, RandomSampler,
                              SequentialSampler, TensorDataset, default_collate)

from .accelerate_compat import enter_loader, leave_loader, loader_generator
from .batches import map_tensors
from .checks import check_bool
from .state import loader_rng_state, set_loader_rng_state

__all__ = ["arrays_dataset", "arrays_len", "as_dataloader", "as_tensor",
           "check_sample_weights", "device_loader", "DeviceBatches", "fast_loader",
           "FirstBatches", "hf_torch_dataset", "is_array_pair", "is_arrays", "is_hf_dataset",
           "is_weighted_arrays", "keras_xy", "replay_pass", "resume_epoch", "StepsPerEpoch",
           "StructureDataset", "TensorBatches", "validation_split_of"]


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


def is_arrays(obj: Any) -> bool:
    """An array-like, or a dict/tuple/list nesting array-likes (Keras's multi-input ``x``)."""
    if _is_array_like(obj):
        return True
    if isinstance(obj, Mapping):
        return bool(obj) and all(is_arrays(v) for v in obj.values())
    return False


def arrays_len(obj: Any) -> int:
    """The number of samples of an array, or of a dict of arrays (its first entry's)."""
    return len(obj) if _is_array_like(obj) else arrays_len(next(iter(obj.values())))


def _tensors_of(obj: Any, name: str) -> Any:
    if isinstance(obj, Mapping):
        return {k: _tensors_of(v, f"{name}[{k!r}]") for k, v in obj.items()}
    return as_tensor(obj, name)


def _lengths(obj: Any, name: str) -> list:
    if isinstance(obj, Mapping):
        return [n for k, v in obj.items() for n in _lengths(v, f"{name}[{k!r}]")]
    return [(name, len(obj))]


def arrays_dataset(x: Any, name: str) -> Dataset:
    """A Dataset of inputs only: ``TensorDataset(x)`` for an array, a
    :class:`StructureDataset` for a dict of arrays (each sample a 1-tuple)."""
    items = _tensors_of(x, name)
    if isinstance(items, torch.Tensor):
        return TensorDataset(items)
    return StructureDataset(items)


class StructureDataset(Dataset):
    """A Dataset over in-memory tensors nested in dicts: sample ``i`` has the same structure
    with each tensor indexed at ``i`` (``default_collate`` rebuilds the dicts per batch)."""

    def __init__(self, *items: Any):
        self.items = items
        self.length = arrays_len(items[0])

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> tuple:
        return tuple(map_tensors(lambda t: t[index], item) for item in self.items)


def keras_xy(train_data: Any, val_data: Any) -> tuple:
    """``(train_data, val_data)`` with Keras's ``fit(x, y)`` read as ``fit((x, y))``.

    An array is never valid validation data on its own, so when both arguments
    are arrays (or dicts of arrays) with the same number of samples they are
    ``x`` and ``y``, and there is no validation data.

    Raises:
        ValueError: both are arrays of different lengths.
        TypeError: ``train_data`` is an array without labels.
    """
    if is_arrays(train_data) and is_arrays(val_data):
        n_x, n_y = arrays_len(train_data), arrays_len(val_data)
        if n_x != n_y:
            raise ValueError(
                f"fit received two arrays of different lengths, {n_x} and {n_y} samples; did "
                "you mean fit((X, y)) with X and y of one length, or fit((X, y), val_data="
                "(X_val, y_val))?")
        return (train_data, val_data), None
    if is_arrays(train_data) and not isinstance(train_data, (tuple, list)):
        raise TypeError(
            f"train_data is {_describe(train_data)} of inputs without labels; did you mean "
            "fit(X, y) or fit((X, y))?")
    if is_arrays(val_data) and not isinstance(val_data, (tuple, list)):
        raise TypeError(
            f"val_data is {_describe(val_data)} of inputs without labels; did you mean "
            "val_data=(X_val, y_val)?")
    return train_data, val_data


def is_weighted_arrays(data: Any) -> bool:
    """``(X, y, sample_weight)``: Keras's weighted validation data."""
    return is_array_pair(data) and len(data) == 3


def is_array_pair(data: Any) -> bool:
    """``(X, y)`` or ``(X, y, sample_weight)`` of arrays (X and y may be dicts of arrays)."""
    return (isinstance(data, (tuple, list)) and len(data) in (2, 3)
            and all(map(is_arrays, data)))


def validation_split_of(arrays: tuple, validation_split: Any) -> tuple:
    """``(train, val)``: Keras's split, the last ``validation_split`` of the samples, taken
    before any shuffling (``split_at = floor(n * (1 - validation_split))``).

    Raises:
        ValueError: not a float in (0, 1), or a split leaving either part empty.
    """
    if isinstance(validation_split, bool) or not isinstance(validation_split, (int, float)) \
            or not 0 < validation_split < 1:
        raise ValueError(f"validation_split must be a float between 0 and 1 (exclusive); "
                         f"received {validation_split!r}")
    n = arrays_len(arrays[0])
    split_at = int(math.floor(n * (1.0 - validation_split)))
    if split_at in (0, n):
        raise ValueError(f"validation_split={validation_split} leaves no samples for "
                         f"{'training' if split_at == 0 else 'validation'} out of {n}; pass "
                         "more data or another validation_split")
    return (tuple(_slice(a, 0, split_at) for a in arrays),
            tuple(_slice(a, split_at, n) for a in arrays))


def _slice(item: Any, start: int, stop: int) -> Any:
    if isinstance(item, Mapping):
        return {k: _slice(v, start, stop) for k, v in item.items()}
    return item[start:stop]


def check_sample_weights(sample_weight: Any, n: int, name: str = "sample_weight") -> torch.Tensor:
    """Per-sample weights of an array pair as a float32 tensor of shape ``(n,)``.

    Raises:
        TypeError: not an array.
        ValueError: wrong shape, negative or not finite.
    """
    if not _is_array_like(sample_weight):
        raise TypeError(f"{name} must be a 1-D tensor or numpy array of weights, one per sample; "
                        f"received {type(sample_weight).__name__}")
    weights = as_tensor(sample_weight, name)
    if weights.ndim == 2 and weights.shape[1] == 1:
        weights = weights[:, 0]
    if weights.ndim != 1 or weights.shape[0] != n:
        raise ValueError(f"{name} must have shape ({n},), one weight per sample; received "
                         f"shape {tuple(weights.shape)}")
    weights = weights.to(torch.float32)
    if not bool(torch.isfinite(weights).all()) or bool((weights < 0).any()):
        raise ValueError(f"{name} must hold finite weights >= 0")
    return weights


def as_dataloader(data: Any, *, batch_size: int, shuffle: bool, name: str,
                  weighted: bool = False) -> Any:
    """Return ``data`` as something the loop can iterate in batches, with at least one batch.

    Accepts a ``DataLoader`` (returned as is), a ``Dataset`` (wrapped with
    ``batch_size``/``shuffle``) or an ``(X, y)`` pair of tensors or numpy arrays (X
    and y may be dicts of them, Keras's multi-input and multi-output data); with
    ``weighted=True`` an ``(X, y, sample_weight)`` triple, whose batches end with
    the weights.
    This is the one check that data is not empty (a loader without a length, over
    an IterableDataset, is checked by the epoch when it yields nothing).

    Raises:
        TypeError: any other kind of object.
        ValueError: X and y of different lengths, no samples or no batches, or a bad
            batch_size.
    """
    loader = _as_dataloader(data, batch_size=batch_size, shuffle=shuffle, name=name,
                            weighted=weighted)
    if loader_length(loader) == 0:
        raise ValueError(f"{name} has no batches (len(loader) == 0); it must yield at least one")
    return loader


def _as_dataloader(data: Any, *, batch_size: int, shuffle: bool, name: str,
                   weighted: bool = False) -> Any:
    if isinstance(data, DataLoader):
        return data
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1; received {batch_size!r}")
    check_bool("shuffle", shuffle)
    if is_array_pair(data) and (len(data) == 2 or weighted):
        items = [_tensors_of(item, f"{name}[{i}]") for i, item in enumerate(data)]
        if weighted:
            items[2] = check_sample_weights(items[2], arrays_len(items[0]), f"{name}[2]")
        parts = ("X", "y", "sample_weight")
        lengths = [entry for i, item in enumerate(items) for entry in _lengths(item, parts[i])]
        if len({n for _, n in lengths}) > 1:
            kind = "an (X, y) pair" if len(items) == 2 else "an (X, y, sample_weight) triple"
            raise ValueError(
                f"{name} is {kind} of different lengths: "
                + ", ".join(f"len({where})={n}" for where, n in lengths))
        if lengths[0][1] == 0:
            raise ValueError(f"{name} is an (X, y) pair with no samples; it needs at least one")
        if all(isinstance(item, torch.Tensor) for item in items):
            dataset = TensorDataset(*items)
        else:
            dataset = StructureDataset(*items)
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle)
    if is_hf_dataset(data):
        data = hf_torch_dataset(data)
        if _has_no_samples(data):
            raise ValueError(f"{name} is a HuggingFace dataset with no rows; it needs at least one")
        return DataLoader(data, batch_size=batch_size, shuffle=shuffle)
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


def is_hf_dataset(data: Any) -> bool:
    """Whether ``data`` is a HuggingFace ``datasets.Dataset`` (duck-typed: kerastorch does
    not import ``datasets``)."""
    return (type(data).__module__.split(".")[0] == "datasets"
            and hasattr(data, "features") and hasattr(data, "with_format")
            and hasattr(data, "remove_columns"))


def hf_torch_dataset(dataset: Any) -> Any:
    """A HuggingFace ``datasets.Dataset`` ready for a DataLoader: its text columns removed
    (strings cannot become tensors; a tokenized dataset keeps its raw text beside the
    token ids) and the rest formatted as torch tensors (``with_format("torch")``), so each
    sample is a dict of tensors and each batch a dict a net is called with as ``**inputs``.
    """
    text = [name for name, feature in dataset.features.items() if _is_text_feature(feature)]
    if text:
        dataset = dataset.remove_columns(text)
    if not dataset.column_names:
        raise ValueError(f"the HuggingFace dataset has only text columns {text}; tokenize them "
                         "first (dataset.map(tokenizer, ...)) so there is something to train on")
    return dataset.with_format("torch")


def _is_text_feature(feature: Any) -> bool:
    dtype = getattr(feature, "dtype", None)
    if dtype in ("string", "large_string"):
        return True
    inner = getattr(feature, "feature", None)  # Sequence / List of strings
    return inner is not None and _is_text_feature(inner)


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
    from accelerate.utils import DistributedType

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


class DeviceBatches:
    """A DataLoader in a single process: iterated as it is, each batch moved to the device.

    Accelerate's prepared loader (``DataLoaderShard``) is what several processes
    need, because it shards the data. In one process it only moves batches to the
    device, but it fetches one batch ahead to find the last one and snapshots its
    own state per batch, which costs a tiny model several percent of its step,
    and the look-ahead fetches batch k+1 (drawing from the global RNG when
    ``__getitem__`` augments) before step k's dropout draws. This class yields
    exactly what the user's loader yields, in the user's order of RNG draws:

    - on the CPU the batches are used as they are (no copy); on another device
      every tensor moves with ``accelerate.utils.send_to_device``, with
      ``non_blocking=True`` when the loader pins memory;
    - with ``signal_end`` (gradient accumulation) Accelerate is told which batch
      is the loader's last, so the last, incomplete accumulation still steps, as
      it does with a prepared loader: from ``len(loader)`` for a map-style
      dataset, else by fetching one batch ahead (an ``IterableDataset``).

    Args:
        loader: a ``torch.utils.data.DataLoader``.
        accelerator: the run's ``accelerate.Accelerator`` (one process).
        signal_end: tell gradient accumulation where the loader ends. Defaults to False.

    Example:
        >>> from accelerate import Accelerator
        >>> loader = DataLoader(TensorDataset(torch.arange(5.0)), batch_size=2)
        >>> [b[0].tolist() for b in DeviceBatches(loader, Accelerator(cpu=True))]
        [[0.0, 1.0], [2.0, 3.0], [4.0]]
    """

    def __init__(self, loader: DataLoader, accelerator: Any, *, signal_end: bool = False):
        self.loader = loader
        self.accelerator = accelerator
        self.device = torch.device(accelerator.device)
        self.signal_end = signal_end
        self.non_blocking = bool(getattr(loader, "pin_memory", False))
        self.end_of_dataloader = False  # read by Accelerate's gradient accumulation
        self.remainder = 0  # no padding samples in one process

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str) -> Any:
        # the loader's own attributes (dataset, batch_size, sampler) for callbacks and checks
        if name == "loader":
            raise AttributeError(name)
        return getattr(self.loader, name)

    def __iter__(self) -> Iterator:
        batches = iter(self.loader)
        if self.device.type != "cpu":
            batches = self._moved(batches)
        if not self.signal_end:
            return batches
        return self._with_end_signal(batches)

    def _moved(self, batches: Iterator) -> Iterator:
        from accelerate.utils import send_to_device

        device, non_blocking = self.device, self.non_blocking
        for batch in batches:
            yield send_to_device(batch, device, non_blocking=non_blocking)

    def _with_end_signal(self, batches: Iterator) -> Iterator:
        self.end_of_dataloader = False
        enter_loader(self.accelerator, self)
        try:
            length = None if isinstance(self.loader.dataset, IterableDataset) \
                else loader_length(self.loader)
            if length is not None:
                for index, batch in enumerate(batches, start=1):
                    self.end_of_dataloader = index == length
                    yield batch
                return
            try:
                batch = next(batches)
            except StopIteration:
                return
            for upcoming in batches:
                yield batch
                batch = upcoming
            self.end_of_dataloader = True
            yield batch
        finally:
            self.end_of_dataloader = False
            leave_loader(self.accelerator, self)


def device_loader(loader: Any, accelerator: Any, *, signal_end: bool = False) -> Any:
    """``loader`` as :class:`DeviceBatches` when it is a DataLoader in one process (where
    Accelerate's prepared loader would only move batches), else unchanged, for
    ``Accelerator.prepare`` (which shards a DataLoader across processes)."""
    from accelerate.utils import DistributedType

    if isinstance(loader, DataLoader) and accelerator.num_processes == 1 \
            and accelerator.distributed_type == DistributedType.NO:
        return DeviceBatches(loader, accelerator, signal_end=signal_end)
    return loader


class StepsPerEpoch:
    """Keras's ``steps_per_epoch``: every pass yields ``steps`` batches, continuing the
    loader where the last pass stopped; when the loader ends, a new pass over it (a new
    shuffle) continues the epoch. So no batch is skipped or repeated within a pass.

    Its :meth:`kerastorch_state` (saved with the resumable state) is how far the
    current pass of the loader got and the RNG states it started from; after
    :meth:`load_kerastorch_state` the next epoch replays that pass's start (the same
    shuffle), skips the batches already trained on and restores the RNG, so a
    resumed run sees the batches an uninterrupted one would. After
    :meth:`continue_epoch` that next epoch is the rest of the one a mid-epoch state
    was taken in.

    Example:
        >>> batches = StepsPerEpoch([1, 2, 3], steps=2)
        >>> list(batches), list(batches), list(batches)
        ([1, 2], [3, 1], [2, 3])
    """

    def __init__(self, loader: Any, steps: int):
        self.loader = loader
        self.steps = steps
        self._iterator: Optional[Iterator] = None
        self._position = 0  # batches taken from the current pass
        self._pass_start: Optional[dict] = None  # RNG states when the current pass began
        self._resume: Optional[dict] = None
        self._rest: Optional[tuple] = None  # (batches of the epoch done, RNG states then)

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator:
        steps, rng = self.steps, None
        if self._rest is not None:
            (done, rng), self._rest = self._rest, None
            steps -= done
        if self._resume is not None:
            self._replay(self._resume, rng)
            self._resume = None
        for _ in range(steps):
            if self._iterator is None:
                self._new_pass()
            try:
                batch = next(self._iterator)
            except StopIteration:
                self._new_pass()
                try:
                    batch = next(self._iterator)
                except StopIteration:
                    return  # an empty loader: the epoch reports that it got no batches
            self._position += 1
            yield batch

    def _new_pass(self) -> None:
        self._pass_start = loader_rng_state(self.loader)
        self._iterator, self._position = iter(self.loader), 0

    def _replay(self, state: dict, rng: Optional[dict] = None) -> None:
        """Back to ``state``'s place in its pass; the RNG states end as ``rng`` (None: as now)."""
        if rng is None:
            rng = loader_rng_state(self.loader)
        if state["pass_start"] is None:
            set_loader_rng_state(self.loader, rng)
            return
        self._iterator = replay_pass(self.loader, state["pass_start"], state["position"], rng)
        self._pass_start, self._position = state["pass_start"], state["position"]

    def kerastorch_state(self) -> dict:
        """Where the current pass of the loader is, for the resumable state."""
        return {"position": self._position, "pass_start": self._pass_start}

    def load_kerastorch_state(self, state: dict) -> None:
        """Continue, from the next epoch on, where :meth:`kerastorch_state` was taken."""
        self._iterator, self._resume = None, state

    def continue_epoch(self, batches: int, rng: dict) -> None:
        """Make the next epoch the rest of one whose first ``batches`` batches ran before
        the loaded state was taken, starting from the RNG states ``rng`` of that moment."""
        self._rest = (batches, rng)


def replay_pass(loader: Any, pass_start: dict, batches: int, rng: dict) -> Iterator:
    """An iterator over ``loader`` that has yielded its first ``batches`` batches, as it had
    in a pass that started from the RNG states ``pass_start``; the RNG states end as ``rng``.

    The pass is replayed: from ``pass_start`` the iterator draws the same shuffle and
    worker seeds, and the batches are loaded and dropped (no step runs), which costs
    their loading time. It is exact for a loader whose main-process random draws all
    happen before its first batch is used, as a DataLoader's shuffle and worker seeds
    do (a dataset that augments with random draws does so in its workers, replayed
    batch for batch; without workers such draws would be replayed out of their order
    among the training steps' draws).

    Raises:
        ValueError: the loader ends before ``batches`` batches.
    """
    set_loader_rng_state(loader, pass_start)
    iterator = iter(loader)
    for done in range(batches):
        try:
            next(iterator)
        except StopIteration:
            raise ValueError(f"resume: the saved state is {batches} batches into a pass over "
                             f"the training data, but the loader ends after {done}; resume "
                             "with the data the state was saved with") from None
    set_loader_rng_state(loader, rng)
    return iterator


def resume_epoch(loader: Any, batches: int, pass_start: Optional[dict], rng: dict) -> Any:
    """The rest of an epoch over ``loader`` whose first ``batches`` batches ran before a
    mid-epoch state was taken: ``pass_start`` and ``rng`` are the RNG states when the
    pass began and when the state was taken (see :func:`replay_pass`). A
    :class:`StepsPerEpoch` replays its own pass (``pass_start`` is None then)."""
    if isinstance(loader, StepsPerEpoch):
        loader.continue_epoch(batches, rng)
        return loader
    return replay_pass(loader, pass_start, batches, rng)


class FirstBatches:
    """Keras's ``validation_steps``: the first ``steps`` batches of every pass over ``loader``.

    Example:
        >>> list(FirstBatches([1, 2, 3], steps=2)), len(FirstBatches([1, 2, 3], steps=5))
        ([1, 2], 3)
    """

    def __init__(self, loader: Any, steps: int):
        self.loader = loader
        self.steps = steps

    def __len__(self) -> int:
        length = loader_length(self.loader)
        return self.steps if length is None else min(self.steps, length)

    def __iter__(self) -> Iterator:
        iterator = iter(self.loader)
        try:
            for _ in range(self.steps):
                try:
                    yield next(iterator)
                except StopIteration:
                    return
        finally:
            close = getattr(iterator, "close", None)
            if close is not None:  # lets a prepared loader run its end-of-pass bookkeeping
                close()
