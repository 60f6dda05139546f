"""``seed_everything``: one call that makes a run repeatable."""

from __future__ import annotations

import os
import random

import numpy as np
import torch

__all__ = ["seed_everything"]

CUBLAS_WORKSPACE = ":4096:8"


def seed_everything(seed: int, deterministic: bool = False) -> int:
    """Seed Python's ``random``, numpy and torch (the CPU and every GPU) with ``seed``.

    DataLoader workers follow: each worker's ``random``, numpy and torch are seeded
    by torch from the loader's base seed (PyTorch does this itself), and the base seed
    is drawn from torch's RNG, which this call seeds. ``PYTHONHASHSEED`` is set for
    processes started afterwards (it cannot change this one's string hashing).

    Args:
        seed: an int in ``[0, 2**32)`` (numpy's range).
        deterministic: also make torch choose deterministic kernels
            (``torch.use_deterministic_algorithms(True)``, cuDNN's deterministic mode,
            no cuDNN benchmarking) and, where a GPU is present, set
            ``CUBLAS_WORKSPACE_CONFIG`` as cuBLAS requires for deterministic results.
            An operation without a deterministic kernel then raises. Defaults to False.

    Returns:
        The seed.

    Raises:
        TypeError, ValueError: ``seed`` is not an int in range, or ``deterministic`` not a bool.

    Example:
        >>> seed_everything(7); a = torch.rand(1)
        7
        >>> seed_everything(7); bool(torch.equal(a, torch.rand(1)))
        7
        True
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an int; received {type(seed).__name__} {seed!r}")
    if not 0 <= int(seed) < 2 ** 32:
        raise ValueError(f"seed must be in [0, 2**32) (numpy's range); received {seed}")
    if not isinstance(deterministic, bool):
        raise TypeError(f"deterministic must be True or False; received "
                        f"{type(deterministic).__name__} {deterministic!r}")
    seed = int(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds every CUDA device too
    if deterministic:
        if torch.cuda.is_available():
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    return seed
