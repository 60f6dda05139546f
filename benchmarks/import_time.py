"""What ``import kerastorch`` costs on top of ``import torch`` (target: at most 0.5 s more).

Each run starts a fresh interpreter: ``python -c "import torch"`` and ``python -c "import
kerastorch"`` alternate (torch, kerastorch, kerastorch, torch, ...) so load from other
processes hits both alike, and the medians of their wall times (and of their CPU times,
user + system, which load disturbs less) are compared with the target; the fastest run of
each is reported too (on a loaded machine, the closest to an idle one's). Then ``python -X
importtime -c "import torch; import kerastorch"`` (torch first, so its own tree is set
aside) gives the cumulative time of the slowest imports under kerastorch: its own modules
and the third-party modules they import directly.

Output: one JSON line, then a short table.

    python benchmarks/import_time.py             # 9 runs of each, top 15 imports
    python benchmarks/import_time.py --smoke     # 1 run of each: checks the script
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 0.5
LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)")


def timed(code: str) -> tuple:
    """``(wall seconds, CPU seconds)`` of ``python -c code`` in a fresh interpreter."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def import_tree(code: str) -> list:
    """``[(name, parent, self_us, cumulative_us)]`` from ``python -X importtime -c code``.

    importtime prints each module after its children, indented by depth, so read
    backwards every module comes right after its parent's line.
    """
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code], cwd=ROOT,
                          capture_output=True, text=True, check=True)
    rows, path = [], {}
    for line in reversed(done.stderr.splitlines()):
        match = LINE.match(line)
        if match is None:
            continue
        self_us, cumulative_us, depth, name = (int(match[1]), int(match[2]),
                                                len(match[3]) // 2, match[4])
        path[depth] = name
        rows.append((name, path.get(depth - 1) if depth else None, self_us, cumulative_us))
    return rows


def under_kerastorch(rows: list, top: int) -> list:
    """The ``top`` slowest kerastorch modules and third-party modules kerastorch imports."""
    mine = [{"module": name, "imported_by": parent, "cumulative_ms": round(cum / 1e3, 1)}
            for name, parent, _, cum in rows
            if name.startswith("kerastorch") or (parent or "").startswith("kerastorch")]
    return sorted(mine, key=lambda r: -r["cumulative_ms"])[:top]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9, help="fresh interpreters of each kind")
    parser.add_argument("--top", type=int, default=15, help="import-tree entries to list")
    parser.add_argument("--smoke", action="store_true", help="one run of each")
    args = parser.parse_args()
    runs = 1 if args.smoke else args.runs

    timed("import torch")  # warm the file cache once; not counted
    times = {"torch": [], "kerastorch": []}
    for i in range(runs):
        order = ("torch", "kerastorch") if i % 2 == 0 else ("kerastorch", "torch")
        for name in order:
            times[name].append(timed(f"import {name}"))
    wall = {k: statistics.median(w for w, _ in v) for k, v in times.items()}
    cpu = {k: statistics.median(c for _, c in v) for k, v in times.items()}
    fastest = {k: min(w for w, _ in v) for k, v in times.items()}
    rows = import_tree("import torch; import kerastorch")
    (kerastorch_us,) = [cum for name, _, _, cum in rows if name == "kerastorch"]
    new = sorted({name for name, *_ in rows if name.split(".")[0] != "torch"}
                 - {name for name, *_ in import_tree("import torch")})
    added = sorted({name.split(".")[0] for name in new} - {"kerastorch"})
    record = {
        "kind": "import_time", "runs": runs, "python": platform.python_version(),
        "machine": platform.machine(), "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d"),
        "torch_wall_s": round(wall["torch"], 3), "kerastorch_wall_s": round(wall["kerastorch"], 3),
        "difference_wall_s": round(wall["kerastorch"] - wall["torch"], 3),
        "torch_cpu_s": round(cpu["torch"], 3), "kerastorch_cpu_s": round(cpu["kerastorch"], 3),
        "difference_cpu_s": round(cpu["kerastorch"] - cpu["torch"], 3),
        "torch_fastest_wall_s": round(fastest["torch"], 3),
        "kerastorch_fastest_wall_s": round(fastest["kerastorch"], 3),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "target_s": TARGET_S, "meets_target": wall["kerastorch"] - wall["torch"] <= TARGET_S,
        "importtime_kerastorch_after_torch_ms": round(kerastorch_us / 1e3, 1),
        "top_level_modules_added": added,
        "top": under_kerastorch(rows, args.top),
    }
    print(json.dumps(record))
    print(f"\n{'':24}{'wall (median)':>15}{'CPU (median)':>15}{'wall (fastest)':>16}")
    for label, key in (("import torch", "torch"), ("import kerastorch", "kerastorch")):
        print(f"{label:24}{wall[key]:>14.3f}s{cpu[key]:>14.3f}s{fastest[key]:>15.3f}s")
    print(f"{'difference':24}{record['difference_wall_s']:>14.3f}s"
          f"{record['difference_cpu_s']:>14.3f}s"
          f"{fastest['kerastorch'] - fastest['torch']:>15.3f}s   target (median wall) <= "
          f"{TARGET_S} s: {'met' if record['meets_target'] else 'NOT met'}")
    print(f"load average (1 min): {record['load_average_1min']} on {record['cpus']} CPUs")
    print(f"\n-X importtime, kerastorch after torch: {record['importtime_kerastorch_after_torch_ms']}"
          f" ms; top-level modules it adds beyond torch's: {', '.join(added) or 'none'}")
    print(f"{'cumulative ms':>14}  module (imported by)")
    for row in record["top"]:
        print(f"{row['cumulative_ms']:>14.1f}  {row['module']} ({row['imported_by']})")


if __name__ == "__main__":
    main()
