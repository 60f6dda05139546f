"""benchmarks/ema_cost.py --smoke runs and reports its fields; no timing is asserted."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_ema_cost_smoke_reports_the_cost_fields():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "ema_cost.py"), "--smoke"],
                          check=False, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (line,) = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    record = json.loads(line)
    assert record["kind"] == "ema_cost" and record["smoke"] is True
    assert record["workload"] == "cnn" and record["threads"] == 1
    assert record["steps_per_epoch"] == 8  # 256 samples in batches of 32
    assert record["target"] == 0.03
    for key in ("plain_cpu_s_per_epoch", "ema_cpu_s_per_epoch", "epoch_overhead",
                "update_us", "update_fraction"):
        assert math.isfinite(record[key]), key
    assert record["plain_cpu_s_per_epoch"] > 0 and record["update_us"] > 0
    assert len(record["plain_epoch_cpu"]) == len(record["ema_epoch_cpu"]) == 1
    assert record["same_training"] is True  # EMA only reads the weights
