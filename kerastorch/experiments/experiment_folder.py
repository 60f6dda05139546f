"""The folder of a loss experiment: its definition, one file per finished run, the results.

``experiment.json`` fingerprints the definition; ``runs/<loss>-<hash>-seed<seed>.json``
holds each finished (loss, seed) run, written atomically, so a killed experiment
called again runs only the missing runs; the result files are written at the end.
A folder that holds another definition is refused, never mixed.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import re
import warnings
from typing import Any, Dict, Optional

import torch

from ..files import atomic_open
from ..plots import save_png
from .seed_statistics import summarize, summary_metrics

__all__ = ["ExperimentFolder", "describe", "data_fingerprint", "tensor_digest",
           "UNRECORDED_FIT_KEYWORDS"]

# fit keywords that do not change what a run computes (callbacks observe; by fit's
# contract the fast data path gives the same batches)
UNRECORDED_FIT_KEYWORDS = ("quiet", "plot", "callbacks", "wandb", "fast_data")
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_SCALARS = (bool, int, float, str, type(None))


def describe(obj: Any) -> Any:
    """A stable description of a loss or metric: repr, public settings, a digest of tensors.

    Example:
        >>> describe(torch.nn.CrossEntropyLoss(label_smoothing=0.1))["settings"]["label_smoothing"]
        '0.1'
        >>> describe(len)
        'builtins.len'
    """
    if inspect.isroutine(obj):
        return f"{getattr(obj, '__module__', None)}.{getattr(obj, '__qualname__', repr(obj))}"
    settings, tensors = {}, {}
    for key, value in sorted(getattr(obj, "__dict__", {}).items()):
        if key.startswith("_"):
            continue
        if isinstance(value, torch.Tensor):
            tensors[key] = value
        elif isinstance(value, _SCALARS) or (isinstance(value, (tuple, list))
                                            and all(isinstance(v, _SCALARS) for v in value)):
            settings[key] = repr(value)
    if isinstance(obj, torch.nn.Module):
        tensors.update(obj.state_dict())
    return {"repr": _ADDRESS.sub("", repr(obj)), "settings": settings,
            "tensors": tensor_digest(tensors)}


def tensor_digest(tensors: Dict[str, torch.Tensor]) -> str:
    """sha256 of named tensors: names, dtypes, shapes and bytes."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensors[name].shape)};".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def data_fingerprint(loader: Any) -> dict:
    """The size of a loader's dataset and, for tensors in memory, a digest of them."""
    dataset = getattr(loader, "dataset", None)
    try:
        size = len(dataset)
    except TypeError:
        size = None
    tensors = getattr(dataset, "tensors", None)
    digest = (tensor_digest({str(i): t for i, t in enumerate(tensors)})
              if isinstance(tensors, tuple) and all(isinstance(t, torch.Tensor) for t in tensors)
              else None)
    return {"size": size, "sha256": digest}


class ExperimentFolder:
    """One experiment's folder (see the module docstring).

    Args:
        path: the folder; created when missing.
    """

    def __init__(self, path: str):
        self.path = os.fspath(path)

    def claim(self, definition: dict) -> None:
        """Write ``experiment.json``, or check that the one there holds ``definition``.

        Raises:
            ValueError: the folder holds another experiment; the message names each
                entry that differs.
        """
        definition = json.loads(json.dumps(definition))  # tuples -> lists, as read back
        path = os.path.join(self.path, "experiment.json")
        os.makedirs(os.path.join(self.path, "runs"), exist_ok=True)
        if not os.path.exists(path):
            with atomic_open(path, "w") as f:
                json.dump(definition, f, indent=1)
            return
        with open(path) as f:
            stored = json.load(f)
        differences = _differences(stored, definition)
        if differences:
            raise ValueError(
                f"log_dir {self.path!r} holds a different experiment; these differ (stored -> "
                f"now): {'; '.join(differences)}. Pass another log_dir, or delete that folder "
                "to start over: results of two definitions are never mixed")

    def run_path(self, loss: str, seed: int) -> str:
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", loss)[:40]
        tag = hashlib.sha1(loss.encode()).hexdigest()[:8]
        return os.path.join(self.path, "runs", f"{safe}-{tag}-seed{seed}.json")

    def load(self, loss: str, seed: int) -> Optional[dict]:
        """The record of a finished run, or None when it has not finished."""
        path = self.run_path(loss, seed)
        if not os.path.exists(path):
            return None
        with open(path) as f:
            record = json.load(f)
        if record.get("loss") != loss or record.get("seed") != seed:
            raise ValueError(f"{path} holds the run ({record.get('loss')!r}, "
                             f"{record.get('seed')!r}), expected ({loss!r}, {seed!r})")
        return record

    def save(self, record: dict) -> None:
        """Write one finished run's record (atomically: a kill leaves it whole or absent)."""
        with atomic_open(self.run_path(record["loss"], record["seed"]), "w") as f:
            json.dump(record, f)

    def write_results(self, comparison, confidence: float = 0.95) -> None:
        """``history.csv``, ``report.csv``, ``runs.csv``, ``summary.csv``, ``summary.md``,
        ``curves.png`` and ``final.png``."""
        for name in ("history", "report", "runs"):
            self._write_csv(f"{name}.csv", getattr(comparison, name))
        with warnings.catch_warnings(record=True) as caught:  # noted in summary.md instead
            warnings.simplefilter("always")
            table = summarize(comparison.runs, comparison.baseline, None, confidence)
        self._write_csv("summary.csv", table)
        note = next((str(w.message) for w in caught if "seed statistics" in str(w.message)),
                    None)
        with atomic_open(os.path.join(self.path, "summary.md"), "w") as f:
            f.write(summary_markdown(table, comparison.baseline, confidence, note))
        metrics = summary_metrics(comparison.runs)
        for name, fig in comparison.plot(metrics).items():
            save_png(fig, os.path.join(self.path, f"{name}.png"))

    def _write_csv(self, name: str, frame) -> None:
        with atomic_open(os.path.join(self.path, name), "w", newline="") as f:
            frame.to_csv(f, index=False)


def summary_markdown(table, baseline: str, confidence: float, note: Optional[str] = None) -> str:
    """The summary table as Markdown, then per metric one line per loss:
    ``mean [CI] vs baseline: diff [CI], p=...``.

    Example:
        >>> import pandas as pd
        >>> row = dict(metric="val_loss", n=3, std=0.1, ci_low=0.2, ci_high=0.6)
        >>> table = pd.DataFrame([{**row, "loss": "a", "mean": 0.4, "diff_mean": float("nan"),
        ...     "diff_ci_low": float("nan"), "diff_ci_high": float("nan"),
        ...     "p_value": float("nan")}, {**row, "loss": "b", "mean": 0.3, "diff_mean": -0.1,
        ...     "diff_ci_low": -0.2, "diff_ci_high": 0.0, "p_value": 0.05}])
        >>> print(summary_markdown(table, "a", 0.95).splitlines()[-1])
        - b: 0.3 [0.2, 0.6] vs baseline: -0.1 [-0.2, 0], p=0.05
    """
    level = f"{confidence:.0%}"
    lines = [f"# Loss experiment: baseline `{baseline}`, {level} t-intervals over seeds", ""]
    if note:
        lines += [f"> {note}", ""]
    columns = list(table.columns)
    lines += ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row[c]) for c in columns) + " |"
              for _, row in table.iterrows()]
    for metric, rows in table.groupby("metric", sort=False):
        lines += ["", f"## {metric}: mean [{level} CI]", ""]
        for _, row in rows.iterrows():
            text = f"- {row['loss']}: {_cell(row['mean'])} [{_cell(row['ci_low'])}, " \
                   f"{_cell(row['ci_high'])}]"
            if row["loss"] == baseline:
                text += " (baseline)"
            else:
                text += (f" vs baseline: {_cell(row['diff_mean'], signed=True)} "
                         f"[{_cell(row['diff_ci_low'], signed=True)}, "
                         f"{_cell(row['diff_ci_high'], signed=True)}], "
                         f"p={_cell(row['p_value'])}")
            lines.append(text)
    return "\n".join(lines) + "\n"


def _cell(value: Any, signed: bool = False) -> str:
    if isinstance(value, float):
        return f"{value:+.4g}" if signed and value != 0 else f"{value:.4g}"
    return str(value)


def _differences(stored: Any, now: Any, name: str = "") -> list:
    if isinstance(stored, dict) and isinstance(now, dict):
        out = []
        for key in list(stored) + [k for k in now if k not in stored]:
            label = f"{name}[{key!r}]" if name else key
            if key not in stored or key not in now:
                out.append(f"{label}: {stored.get(key, '(absent)')!r} -> "
                           f"{now.get(key, '(absent)')!r}")
            else:
                out += _differences(stored[key], now[key], label)
        return out
    return [] if stored == now else [f"{name}: {stored!r} -> {now!r}"]
