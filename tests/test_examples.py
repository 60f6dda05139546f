"""Every example runs on tiny settings in a subprocess, and its outputs are checked."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def run_example(name, *args, cwd=None, timeout=300):
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / name), *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-2 if "--log-dir" in args else -1])
    return proc, result


def test_iris_classification(tmp_path):
    import matplotlib.image as mpimg

    proc, result = run_example("iris_classification.py", "--epochs", "40", "--quiet",
                               "--log-dir", str(tmp_path))
    assert result["val_acc"] >= 0.9 and result["micro_auc"] >= 0.95
    (run_dir,) = list(tmp_path.iterdir())
    history = pd.read_csv(run_dir / "history.csv")
    assert len(history) == result["epochs_run"] <= 40
    assert list(history.columns) == ["epoch", "train_loss", "train_acc", "lr", "val_loss",
                                     "val_acc"]
    for picture in ("curves.png", "roc.png"):
        image = mpimg.imread(run_dir / picture)
        assert image.ndim == 3 and image.shape[0] > 100
    assert (run_dir / "best.pt").exists()
    assert "epoch" in proc.stdout and proc.stderr.count("Epoch ") == 0  # --quiet: no bars
