"""Clone time and cluster slots of an experiment (issue 14): a full copy of the demo chain vs a clone that shares.

Side by side on the running local stack (``rtml local up``), ``--reps`` times:

- **full copy**: ``rtml experiment clone demo full_<n> --set label_join.attribution_minutes=11 --start`` — the
  first node changed, so every node is new: five Flink jobs (what a team does today without sharing);
- **clone**: ``rtml experiment clone full_<n> wide_<n> --set features.feature_window_minutes=20 --start`` — the
  feature window changed: two new jobs (features, sample_features), three shared.

Measured: wall time from the command to every new job RUNNING (registering, Airflow parsing the generated DAG,
the run, each job submitted through the SQL Gateway), Flink slots taken, TaskManager RSS added. Both are stopped
after each repetition (``rtml experiment stop``).

    .venv/bin/python benchmarks/experiment_clone.py [--reps 3]   # -> benchmarks/results/experiment_clone.json
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import re
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import httpx
import psutil

from airflow_rtml.local.cli import main
from airflow_rtml.local.config import StackConfig

OUT = Path(__file__).parent / "results" / "experiment_clone.json"


def _overview(cfg: StackConfig) -> dict:
    return httpx.get(f"http://127.0.0.1:{cfg.ports.flink_rest}/overview", timeout=10).json()


def _taskmanager_rss_mb() -> float:
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "TaskManagerRunner" in cmd:
            return p.memory_info().rss / 2**20
    return float("nan")


def _run(argv: list[str]) -> tuple[float, str]:
    out = io.StringIO()
    t = time.monotonic()
    with contextlib.redirect_stdout(out):
        rc = main(argv)
    took = time.monotonic() - t
    if rc != 0:
        raise SystemExit(f"rtml {' '.join(argv)} failed ({rc}):\n{out.getvalue()}")
    return took, out.getvalue()


def _one(cfg: StackConfig, tag: str) -> dict:
    full, wide = f"full_{tag}", f"wide_{tag}"
    result = {}
    try:
        for name, argv in ((full, ["experiment", "clone", "demo", full, "--set", "label_join.attribution_minutes=11"]),
                           (wide, ["experiment", "clone", full, wide, "--set", "features.feature_window_minutes=20"])):
            slots, rss = _overview(cfg)["slots-available"], _taskmanager_rss_mb()
            took, out = _run([*argv, "--start"])
            time.sleep(5)  # let the new jobs' memory settle before reading RSS
            after = _overview(cfg)
            result[name.split("_")[0]] = {
                "seconds_to_running": round(took, 1),
                "reported": re.search(r"started in ([\d.]+) s: (\d+) new Flink job\(s\)", out).groups(),
                "new_jobs": int(re.search(r"(\d+) new Flink job\(s\) running", out).group(1)),
                "slots_taken": slots - after["slots-available"],
                "taskmanager_rss_added_mb": round(_taskmanager_rss_mb() - rss, 1),
            }
            print(name, result[name.split("_")[0]], flush=True)
    finally:
        for name in (wide, full):
            with contextlib.suppress(SystemExit):
                _run(["experiment", "stop", name])
    return result


def run(reps: int) -> dict:
    cfg = StackConfig.from_env()
    free = _overview(cfg)["slots-available"]
    if free < 7:
        raise SystemExit(f"needs 7 free Flink slots, {free} free: stop other jobs first")
    runs = []
    for i in range(reps):
        runs.append(_one(cfg, f"b{uuid.uuid4().hex[:5]}"))
        time.sleep(10)  # cancelled jobs release their slots
    med = lambda k, f: sorted(r[k][f] for r in runs)[len(runs) // 2]  # noqa: E731
    return {
        "benchmark": "experiment_clone",
        "when": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_1m_at_start": os.getloadavg()[0]},
        "method": __doc__.split("\n\n")[1].strip(),
        "runs": runs,
        "median": {k: {f: med(k, f) for f in ("seconds_to_running", "new_jobs", "slots_taken",
                                                 "taskmanager_rss_added_mb")} for k in ("full", "wide")},
    }


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    result = run(args.reps)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["median"], indent=2))
