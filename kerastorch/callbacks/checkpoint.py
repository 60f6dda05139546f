"""Save the net's weights when a monitored value improves (or keep the k best), atomically."""

from __future__ import annotations

import contextlib
import os
import string
from typing import Optional, Union

from ..files import atomic_save, is_sharded, net_weights
from .monitor import MonitorCallback

__all__ = ["ModelCheckpoint"]


class ModelCheckpoint(MonitorCallback):
    """Write the net's ``state_dict`` to ``filepath`` when ``monitor`` improves.

    Files are written by the main process only, through a temporary file and a
    rename, so an interrupted write never corrupts the previous best file. A NaN
    score (or an epoch whose loss is NaN) never counts, and epochs that ran no
    validation (``fit(..., validation_freq=...)``) are skipped when the monitor is
    a ``val_`` column.

    With ``save_top_k=1`` (the default) the file is written as it always was: one
    file overwritten on each improvement when ``filepath`` has no format fields,
    one file per improvement (earlier ones kept) when it has. Any other
    ``save_top_k`` keeps the k best epochs as separate files named
    ``<stem>-epoch=03-val_loss=0.1234<ext>`` (``<ext>`` is ``filepath``'s
    extension, ``.pt`` when it has none; the score with four decimals), or by
    ``filepath`` itself when it has format fields (``-v1``, ``-v2``... is added
    when two kept epochs format to one name). A file leaves the top k only after
    the one replacing it is fully written and renamed into place, so a crash in
    between leaves at most one extra file and never fewer than k. Ranking is by
    score alone (``min_delta`` applies to :attr:`best` and
    ``restore_best_weights`` only); on a tie the earlier epoch ranks higher.

    ``every_n_steps`` files are separate from the ranking: one per N optimizer
    steps, named ``<stem>-step=000120<ext>`` (``step=000120<ext>`` beside
    ``filepath`` when it has format fields), never ranked, never deleted, not in
    :attr:`best_k_models`. Steps count across epochs; a step whose loss was
    skipped (``skip_nonfinite``) did not step the optimizer and does not count.

    The ranking and the step count are part of :meth:`state_dict`, so a resumed
    ``fit`` keeps and deletes the same files as an uninterrupted one.

    Args:
        filepath: where to save; may contain ``{epoch}`` and any log key as format
            fields, e.g. ``"ckpt-{epoch:02d}-{val_loss:.3f}.pt"``. None keeps the best
            weights in memory only. Defaults to ``"checkpoint"``.
        monitor: column to watch. Defaults to ``"val_loss"``.
        mode: ``"min"`` or ``"max"``. Defaults to ``"min"``.
        save_best_only: save only on improvement; otherwise every epoch (only with
            ``save_top_k=1``; use ``save_top_k=-1`` to keep every epoch ranked).
            Defaults to True.
        restore_best_weights: load the best weights back into the net when ``fit``
            ends (from a CPU copy held in memory, so every process restores the same
            weights without reading the file). Defaults to False.
        min_delta: smallest change that counts as an improvement of :attr:`best`.
            Defaults to 0.
        save_last: also write the latest weights after every epoch, for resuming:
            True writes ``last.pt`` next to ``filepath`` (``last<ext>`` when the
            pattern has an extension), a str is the path (it may use the same format
            fields). Costs one device-to-CPU copy of the weights per epoch. Written
            whatever ``save_top_k`` is. Defaults to False.
        save_top_k: how many of the best epochs to keep as files: 1 is the single
            best file above, k > 1 the k best, -1 every validated epoch, 0 none.
            Defaults to 1.
        every_n_steps: also save the weights every N optimizer steps (counted when
            gradients sync, so N accumulated batches make one step); None saves none.
            Costs one device-to-CPU copy per save and nothing on other steps.
            Defaults to None.

    Attributes:
        best_k_models: ``{path: score}`` of the ranked files kept now (Lightning's name).
        best_model_path: the kept file with the best score; None when none is kept (or,
            with ``save_best_only=False`` and one file name, once a later epoch
            overwrote it).
        best_score: that file's score; None when none is kept.

    Raises:
        TypeError: ``save_top_k`` or ``every_n_steps`` is not an int, ``save_last``
            not a bool or str.
        ValueError: ``save_top_k < -1``, ``every_n_steps < 1``, a file setting that
            needs ``filepath`` while it is None, or ``save_best_only=False`` with a
            ``save_top_k`` other than 1.

    Example:
        >>> cb = ModelCheckpoint(None, monitor="val_acc", mode="max")
        >>> cb.on_fit_begin(); cb.is_improvement(0.9)
        True
        >>> ModelCheckpoint("ck/best.pt", save_top_k=3).ranked_path(3, {"val_loss": 0.25})
        'ck/best-epoch=03-val_loss=0.2500.pt'
    """

    def __init__(self, filepath: Optional[str] = "checkpoint", monitor: str = "val_loss",
                 mode: str = "min", *, save_best_only: bool = True,
                 restore_best_weights: bool = False, min_delta: float = 0.0,
                 save_last: Union[bool, str] = False, save_top_k: int = 1,
                 every_n_steps: Optional[int] = None):
        super().__init__(monitor, mode, min_delta=min_delta)
        self.filepath = filepath
        self.save_best_only = save_best_only
        self.restore_best_weights = restore_best_weights
        self.last_path = _last_path(filepath, save_last)
        self.save_top_k = _check_top_k(save_top_k, filepath, save_best_only)
        self.every_n_steps = _check_every_n_steps(every_n_steps, filepath)

    @property
    def state_key(self) -> str:
        return f"ModelCheckpoint[{self.filepath}|{self.monitor}]"

    def reset(self) -> None:
        super().reset()
        self.last_saved = None
        self.best_k_models: dict = {}
        self.optimizer_steps = 0

    @property
    def best_model_path(self) -> Optional[str]:
        if not self.best_k_models:
            return None
        pick = min if self.mode == "min" else max
        return pick(self.best_k_models, key=self.best_k_models.__getitem__)  # ties: earliest

    @property
    def best_score(self) -> Optional[float]:
        path = self.best_model_path
        return None if path is None else self.best_k_models[path]

    def state_dict(self) -> dict:
        return {**super().state_dict(), "last_saved": self.last_saved,
                "best_k_models": dict(self.best_k_models),
                "optimizer_steps": self.optimizer_steps}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.last_saved = state["last_saved"]
        self.best_k_models = dict(state.get("best_k_models", {}))
        self.optimizer_steps = state.get("optimizer_steps", 0)

    def uses_hook(self, hook: str) -> bool:
        # without every_n_steps the per-batch hook has nothing to do: keep it off the loop
        return hook != "on_train_batch_end" or self.every_n_steps is not None

    def on_train_batch_end(self, step, logs=None):
        if self.every_n_steps is None:
            return
        accelerator = getattr(self.model, "accelerator", None)
        # empty logs: skip_nonfinite skipped the step, the optimizer did not step
        if not logs or not getattr(accelerator, "sync_gradients", True):
            return
        self.optimizer_steps += 1  # a Python int: no host sync
        if self.optimizer_steps % self.every_n_steps == 0:
            weights = _Weights(self).for_file()
            if weights is not None:
                atomic_save(weights, self.step_path(self.optimizer_steps))

    def on_epoch_end(self, epoch, logs=None):
        weights = _Weights(self)
        if self.last_path is not None:
            data = weights.for_file()
            if data is not None:
                atomic_save(data, self.last_path.format(**{**logs, "epoch": epoch}))
        if self.epoch_not_validated():
            return
        improved = self.update_best(epoch, logs)
        if improved and self.restore_best_weights:
            self.best_weights = weights()  # the CPU copy last.pt got, when it was written
        if self.save_top_k == 1:
            self._save_single(epoch, logs, improved, weights)
        else:
            self._save_ranked(epoch, logs, weights)

    def on_fit_end(self, logs=None):
        if self.restore_best_weights:
            self.restore_weights()

    def ranked_path(self, epoch: int, logs: dict) -> str:
        """The file name of ``epoch`` in the top k (before ``-vN`` is added on a clash)."""
        if _has_fields(self.filepath):
            return self.filepath.format(**{**logs, "epoch": epoch})
        root, ext = _split(self.filepath)
        return f"{root}-epoch={epoch:02d}-{self.monitor}={float(logs[self.monitor]):.4f}{ext}"

    def step_path(self, step: int) -> str:
        """The file name of the ``every_n_steps`` save after ``step`` optimizer steps."""
        root, ext = _split(self.filepath)
        if _has_fields(self.filepath):
            return os.path.join(os.path.dirname(self.filepath), f"step={step:06d}{ext}")
        return f"{root}-step={step:06d}{ext}"

    def _save_single(self, epoch: int, logs: dict, improved: bool, weights) -> None:
        """``save_top_k=1``: the single-file behaviour kerastorch always had."""
        if not improved and self.save_best_only:
            return
        if self.filepath is None:
            return
        path = self.filepath.format(**{**logs, "epoch": epoch})
        data = weights.for_file()
        if data is not None:
            atomic_save(data, path)
        self.last_saved = path
        if improved:
            self.best_k_models = {path: self.best}
        elif path in self.best_k_models:  # save_best_only=False wrote a later epoch over it
            self.best_k_models = {}

    def _save_ranked(self, epoch: int, logs: dict, weights) -> None:
        """Write ``epoch`` if it enters the top k, then drop the one it pushed out.

        The order is the atomicity argument: the new file is complete (renamed into
        place) before the old one is removed, so a crash in between leaves k + 1
        files, never fewer than k. Every process keeps the same bookkeeping (the
        logs are identical on all ranks); only the writer touches files.
        """
        score = self.eligible_score(logs)
        if score is None or self.save_top_k == 0:
            return
        full = 0 < self.save_top_k <= len(self.best_k_models)
        if full and not self._beats(score, self.best_k_models[self._worst_path()]):
            return
        path = _unique(self.ranked_path(epoch, logs), self.best_k_models)
        data = weights.for_file()
        if data is not None:
            atomic_save(data, path)
        self.best_k_models[path] = score
        self.last_saved = path
        if 0 < self.save_top_k < len(self.best_k_models):
            dropped = self._worst_path()
            del self.best_k_models[dropped]
            if self.is_writer():
                with contextlib.suppress(FileNotFoundError):  # removed by hand meanwhile
                    os.remove(dropped)

    def _worst_path(self) -> str:
        # on a tie the later-saved file is the worse one: a later equal score never
        # beats an earlier one
        pick = max if self.mode == "min" else min
        return pick(reversed(list(self.best_k_models)), key=self.best_k_models.__getitem__)

    def _beats(self, score: float, reference: float) -> bool:
        return score < reference if self.mode == "min" else score > reference


class _Weights:
    """One device-to-CPU copy of the net's weights per epoch, made when first needed
    (under FSDP or DeepSpeed gathered from the shards: ``KerasModel.full_state_dict``)."""

    def __init__(self, callback: ModelCheckpoint):
        self.callback, self.copy = callback, None

    def __call__(self) -> dict:
        if self.copy is None:
            self.copy = net_weights(self.callback.model)
        return self.copy

    def for_file(self) -> Optional[dict]:
        """The weights on the process that writes files, None on the others; a sharded
        net's gathering is a collective, so then every process takes part."""
        writer = self.callback.is_writer()
        if writer or is_sharded(self.callback.model):
            weights = self()
            return weights if writer else None
        return None


def _has_fields(pattern: Optional[str]) -> bool:
    return pattern is not None and any(
        field is not None for _, field, _, _ in string.Formatter().parse(pattern))


def _split(filepath: str) -> tuple:
    root, ext = os.path.splitext(filepath)
    if "{" in ext or "}" in ext:  # "ck-{val_loss:.3f}": that dot is a format spec's
        root, ext = filepath, ""
    return root, ext or ".pt"


def _unique(path: str, taken: dict) -> str:
    if path not in taken:
        return path
    root, ext = os.path.splitext(path)
    version = 1
    while f"{root}-v{version}{ext}" in taken:
        version += 1
    return f"{root}-v{version}{ext}"


def _check_top_k(save_top_k, filepath: Optional[str], save_best_only: bool) -> int:
    if not isinstance(save_top_k, int) or isinstance(save_top_k, bool):
        raise TypeError(f"save_top_k must be an int (k best files, -1 all, 0 none); received "
                        f"{type(save_top_k).__name__} {save_top_k!r}")
    if save_top_k < -1:
        raise ValueError(f"save_top_k must be -1 (keep all), 0 (none) or k >= 1; received "
                         f"{save_top_k}")
    if save_top_k not in (0, 1) and filepath is None:
        raise ValueError(f"save_top_k={save_top_k} keeps files named after filepath, which is "
                         "None; pass a filepath such as 'ckpt/best.pt'")
    if save_top_k != 1 and not save_best_only:
        raise ValueError(f"save_best_only=False saves every epoch to one pattern and works with "
                         f"save_top_k=1 only; received save_top_k={save_top_k}; pass "
                         "save_top_k=-1 to keep every epoch")
    return save_top_k


def _check_every_n_steps(every_n_steps, filepath: Optional[str]) -> Optional[int]:
    if every_n_steps is None:
        return None
    if not isinstance(every_n_steps, int) or isinstance(every_n_steps, bool):
        raise TypeError(f"every_n_steps must be None or an int >= 1; received "
                        f"{type(every_n_steps).__name__} {every_n_steps!r}")
    if every_n_steps < 1:
        raise ValueError(f"every_n_steps must be None or an int >= 1; received {every_n_steps}")
    if filepath is None:
        raise ValueError("every_n_steps names its files after filepath, which is None; pass a "
                         "filepath such as 'ckpt/best.pt'")
    return every_n_steps


def _last_path(filepath: Optional[str], save_last: Union[bool, str]) -> Optional[str]:
    if isinstance(save_last, str):
        return save_last
    if not isinstance(save_last, bool):
        raise TypeError(f"save_last must be a bool or a str path; received "
                        f"{type(save_last).__name__}")
    if not save_last:
        return None
    if filepath is None:
        raise ValueError("save_last=True names last.pt after filepath, which is None; pass "
                         "save_last='path/to/last.pt' or a filepath")
    ext = os.path.splitext(filepath)[1] or ".pt"
    path = os.path.join(os.path.dirname(filepath), "last" + ext)
    if os.path.normpath(path) == os.path.normpath(filepath):
        raise ValueError(f"save_last=True would write {path!r}, which is filepath itself; "
                         "pass save_last='another/path.pt'")
    return path
