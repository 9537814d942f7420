"""How long each supervised service of the local stack takes to come back after ``kill -9`` (issue 11).

For each service in turn (the stack up and healthy): SIGKILL its recorded process, by PID and only it (its
children live on, as after a real crash); then time until the supervisor has started a new process, and until the
service is healthy again by its own check (for Airflow's components: a heartbeat of the *new* process). It also
checks what the dead process left in its session was stopped, and that every other service stayed healthy.

    .venv/bin/python benchmarks/restart_times.py [--services airflow-triggerer kafka ...]   # ~3 min, stack up

Writes ``results/restart_times.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
from pathlib import Path

import psutil

from airflow_rtml.local.stack import LocalStack, StackSupervisor, session_of

HERE = Path(__file__).resolve().parent


def until(what: str, check, timeout: float, every: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"{what}: not within {timeout:.0f}s")


def all_healthy(stack: LocalStack) -> bool:
    return all(r.healthy for r in stack.status())


def measure(stack: LocalStack, name: str) -> dict:
    svc = stack.service(name)
    until("the whole stack healthy before the kill", lambda: all_healthy(stack), 300, 1)
    victim = stack.process_of(svc)
    left = [p.pid for p in session_of(victim.pid) if p.pid != victim.pid]
    t0 = time.monotonic()
    os.kill(victim.pid, signal.SIGKILL)
    new = until("a new process", lambda: (p := stack.process_of(svc)) and p.pid != victim.pid and p, 120, 0.05)
    started = time.monotonic() - t0
    until("healthy again", lambda: svc.health()[0], 300, 0.1)
    healthy = time.monotonic() - t0
    orphans = [pid for pid in left if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]
    until("every service healthy again", lambda: all_healthy(stack), 300, 1)
    everything = time.monotonic() - t0
    row = {"service": name, "killed_pid": victim.pid, "new_pid": new.pid, "children_left_by_the_dead": len(left),
           "still_running_after": len(orphans), "new_process_s": round(started, 2),
           "healthy_again_s": round(healthy, 2), "whole_stack_healthy_s": round(everything, 2)}
    print(json.dumps(row), flush=True)
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", nargs="*", help="which services (default: all but the supervisor)")
    parser.add_argument("--out", default=str(HERE / "results" / "restart_times.json"))
    args = parser.parse_args()
    stack = LocalStack()
    names = args.services or [s.name for s in stack.services if not isinstance(s, StackSupervisor)]
    rows = [measure(stack, name) for name in names]
    result = {"benchmark": "restart_times", "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "machine": {"cpus": os.cpu_count(), "loadavg_1m": round(os.getloadavg()[0], 2)}, "rows": rows}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0 if all(r["still_running_after"] == 0 for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
