"""benchmarks/gpu_check.py: the CPU smoke run, its report, and its exit code.

There is no GPU here: the smoke run shows the script still runs, that every CUDA-only
check (the issue-12 checks 11-13 among them) is in the report as a SKIP with its
reason, and the exit code follows the FAIL count (0 here: nothing failed).
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
CUDA_ONLY = {5: "fast_path_device", 7: "resume_exact", 8: "pinned_loader", 10: "gpu_memory",
             11: "no_host_sync", 12: "fsdp2_checkpoint", 13: "resnet18_amp"}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--smoke", "--out", str(out)],
                          check=False, env=env, capture_output=True, text=True, timeout=240)
    report = json.loads((out / "gpu_check.json").read_text())
    return proc, report, (out / "gpu_check.md").read_text()


def test_smoke_run_passes_or_skips_every_check_and_exits_0(smoke):
    proc, report, _ = smoke
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert report["complete"] and not report["hung"] and report["fail_count"] == 0
    checks = {c["id"]: c for c in report["checks"]}
    assert sorted(checks) == list(range(1, 14))
    assert {i: c["result"] for i, c in checks.items() if c["result"] != "PASS"} == {
        i: "SKIP" for i in CUDA_ONLY}
    # check 3 states its tolerance against fp32 and measures both AMP runs against it
    numbers = checks[3]["numbers"]
    assert numbers["amp_loss_tolerance"] > 0
    assert {"bf16_minus_fp32_val_loss", "fp16_minus_fp32_val_loss"} <= set(numbers)
    assert "gpu_check: 0 FAILs" in proc.stdout


def test_cuda_only_checks_are_reported_as_skipped_with_the_reason(smoke):
    _, report, table = smoke
    checks = {c["id"]: c for c in report["checks"]}
    for check_id, name in CUDA_ONLY.items():
        assert checks[check_id]["check"] == name
        assert checks[check_id]["reason"] == "skipped: no CUDA"
        assert f"| {check_id}. {name} | SKIP | skipped: no CUDA |" in table
    assert "**FAIL count: 0** (PASS 6, SKIP 7, of 13 checks)" in table


def _load_script(monkeypatch):
    spec = importlib.util.spec_from_file_location("gpu_check_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # its dataclasses look it up there
    spec.loader.exec_module(module)
    return module


def test_exit_code_is_1_when_a_check_fails_and_0_when_all_pass_or_skip(tmp_path, monkeypatch):
    gpu_check = _load_script(monkeypatch)

    def passes(ctx, rec):
        rec.expect("holds", True)

    def fails(ctx, rec):
        rec.expect("holds", False, "as scripted")

    def raises(ctx, rec):
        raise RuntimeError("scripted error")

    def skipped(ctx, rec):
        rec.result, rec.reason = "SKIP", "skipped: scripted"

    def checks(*fns):
        return [gpu_check.Check(i, fn.__name__, fn, False, 0, 10) for i, fn in enumerate(fns, 1)]

    for fns, code, fail_count in (((passes, skipped), 0, 0), ((passes, fails), 1, 1),
                                  ((raises, passes), 1, 1)):
        out = tmp_path / str(len(list(tmp_path.iterdir())))
        monkeypatch.setattr(gpu_check, "CHECKS", checks(*fns))
        assert gpu_check.main(["--smoke", "--cpu", "--out", str(out)]) == code
        report = json.loads((out / "gpu_check.json").read_text())
        assert report["fail_count"] == fail_count
        assert [c["check"] for c in report["checks"]] == [fn.__name__ for fn in fns]
