"""benchmarks/overhead.py --smoke runs, reports both workloads, and shows identical work.

No timing is asserted: CI machines are too noisy for that. What is asserted is
that the script still runs, that its JSON lines keep their shape, and that
kerastorch's numbers equal the raw loop's to the last bit (same work).
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXACT_COLUMNS = ("kerastorch", "raw_sliced", "kt_dataloader")


@pytest.fixture(scope="module")
def smoke_records():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "overhead.py"), "--smoke"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    records = [json.loads(line) for line in lines]
    # the table follows the JSON lines
    assert "x raw" in proc.stdout.split(lines[-1], 1)[1]
    return records


def test_smoke_reports_both_workloads_with_ratios(smoke_records):
    (config,) = [r for r in smoke_records if r["kind"] == "config"]
    assert config["smoke"] is True and config["threads"] == 1
    rows = [r for r in smoke_records if r["kind"] == "overhead"]
    assert {r["workload"] for r in rows} == {"mlp", "cnn"}
    for workload in ("mlp", "cnn"):
        columns = {r["variant"]: r for r in rows if r["workload"] == workload}
        assert {"raw", *EXACT_COLUMNS} <= set(columns)
        assert columns["raw"]["ratio_to_raw"] == 1.0
        for row in columns.values():
            assert math.isfinite(row["ratio_to_raw"]) and row["ratio_to_raw"] > 0
            assert math.isfinite(row["cpu_ratio_to_raw"]) and row["cpu_ratio_to_raw"] > 0
            assert row["s_per_epoch"] == pytest.approx(
                columns["raw"]["s_per_epoch"] * row["ratio_to_raw"])
            assert len(row["epoch_times"]) == 1  # --smoke: one epoch, one repeat
        # --smoke: 1024 MLP samples in batches of 128, 256 CNN samples in batches of 32
        assert columns["kerastorch"]["steps_per_epoch"] == 8


def test_kerastorch_does_exactly_the_raw_loops_work(smoke_records):
    rows = [r for r in smoke_records if r["kind"] == "overhead"]
    for workload in ("mlp", "cnn"):
        columns = {r["variant"]: r for r in rows if r["workload"] == workload}
        raw = columns["raw"]
        assert math.isfinite(raw["final_loss"]) and 0 < raw["final_acc"] <= 1
        for name in EXACT_COLUMNS:
            assert columns[name]["final_loss"] == raw["final_loss"], (workload, name)
            assert columns[name]["final_acc"] == raw["final_acc"], (workload, name)
            assert columns[name]["same_as_raw"] and columns[name]["same_weights_as_raw"]


def test_optional_trainers_are_measured_or_skipped_with_a_reason(smoke_records):
    for name, module in (("torchkeras", "torchkeras"), ("lightning", "lightning")):
        skipped = [r for r in smoke_records if r["kind"] == "skipped" and r["variant"] == name]
        measured = [r for r in smoke_records if r["kind"] == "overhead" and r["variant"] == name]
        assert len(skipped) + len(measured) in (1, 2)  # one record, or one row per workload
        if skipped:
            assert "not installed" in skipped[0]["reason"] and module in skipped[0]["reason"]


def test_scaling_and_memory_records(smoke_records):
    scaling = [r for r in smoke_records if r["kind"] == "scaling"]
    assert sorted((r["variant"], r["factor"]) for r in scaling) == sorted(
        (v, f) for v in ("raw", "kerastorch") for f in (1, 2, 4))
    for row in scaling:
        assert row["samples"] == 512 * row["factor"]
        assert row["linearity"] > 0 and (row["factor"] != 1 or row["linearity"] == 1.0)
    memory = [r for r in smoke_records if r["kind"] == "memory"]
    assert sorted((r["variant"], r["epoch"]) for r in memory) == sorted(
        (v, e) for v in ("raw", "kerastorch") for e in (1, 2, 3))
    assert all(r["rss_mb"] > 0 and r["python_kb"] > 0 for r in memory)


def test_step_overhead_script_times_every_piece():
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "step_overhead.py"),
                           "--calls", "20", "--trials", "2", "--steps", "20"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    pieces = {r["call"]: r for r in records if r["kind"] == "piece"}
    assert set(pieces) == {"optimizer.step", "optimizer.zero_grad", "backward (with forward)",
                           "autocast context", "accumulate context",
                           "is_lomo_available (inside step)"}
    for row in pieces.values():
        assert row["extra_us"] == pytest.approx(row["accelerate_us"] - row["torch_us"])
        assert row["accelerate_us"] > 0 and row["torch_us"] >= 0
    (step,) = [r for r in records if r["kind"] == "step"]
    assert step["kerastorch_us"] > 0 and step["raw_us"] > 0
    assert step["extra_cached_us"] == pytest.approx(step["kerastorch_cached_us"] - step["raw_us"])


def test_compare_losses_workers_smoke_gives_equal_results_in_both_modes():
    """benchmarks/compare_losses_workers.py --smoke: the JSON shape, and workers=2 equal to
    workers=1 (one thread each) to the last bit; the timing itself is not asserted."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "compare_losses_workers.py"), "--smoke"],
        env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True,
        timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (line,) = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    record = json.loads(line)
    assert record["kind"] == "compare_losses_workers"
    assert (record["losses"], record["seeds"], record["workers"]) == (2, 4, 2)
    assert record["equal_results"] is True
    assert record["median_workers_1"] > 0 and record["median_workers_2"] > 0
    assert math.isclose(record["ratio"], record["median_workers_2"] / record["median_workers_1"],
                        rel_tol=0.01)
