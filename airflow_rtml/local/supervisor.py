"""The local stack's supervisor: a service that dies is stopped completely and started again, with backoff.

``rtml local up`` starts it last, once every service is healthy; ``rtml local down`` stops it first. It runs as
``python -m airflow_rtml.local.supervisor NAME …`` (the services to watch) with the stack's ``RTML_HOME`` and,
once a second:

* checks each service's recorded process (PID and start time, as :meth:`LocalStack.process_of` does);
* when one is gone, stops what it left behind — every process still in its session (a killed triggerer's log
  server keeps its port otherwise) — logs the cause (exit code or signal for a process it started itself, the last
  log line for all), and starts it again after 1, 2, 4 … 30 s (the delay grows while restarts keep failing within
  a minute, and is reset by a minute of uptime);
* records per service ``running`` / ``restarting`` with its restart count and last cause in
  ``run/supervisor.state``, which ``rtml local status`` reports (``degraded (restarting, 2 restarts)``).

It never stops a healthy service and never starts a second copy: a service is started again only when its
recorded process is gone and its ports are free (a port held by a process outside the stack is reported and
retried, never taken over).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from airflow_rtml.local.stack import LocalStack, Service, StackSupervisor, _describe, _terminate, listening_pid, session_of

#: Seconds before the n-th consecutive quick restart (a start that did not last :data:`STABLE_AFTER_S`).
BACKOFF_S = (1, 2, 4, 8, 16, 30)
STABLE_AFTER_S = 60.0
TICK_S = 1.0


@dataclass
class ServiceState:
    """What the supervisor knows of one service (written to ``supervisor.state``)."""

    state: str = "running"  # running | restarting
    restarts: int = 0
    last_cause: str = ""
    last_restart_at: float = 0.0
    pid: int | None = None
    since: float = field(default_factory=time.time)
    quick_failures: int = 0
    next_start_at: float | None = None


def describe_exit(returncode: int | None) -> str:
    """``killed by SIGKILL`` / ``exited with code 3`` / unknown for a process this supervisor did not start."""
    if returncode is None:
        return "exited; its exit status is unknown (it was not started by the supervisor)"
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exited with code {returncode}"


def _last_log_line(svc: Service) -> str:
    try:
        with svc.log_file.open("rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - 4096))
            lines = [line.strip() for line in f.read().decode(errors="replace").splitlines()
                     if line.strip() and not line.startswith("==== ")]  # not the stack's own start header
    except OSError:
        return ""
    return lines[-1][:200] if lines else ""


class Supervisor:
    """Watches the services of one stack (all but itself) and restarts the ones that die."""

    def __init__(self, stack: LocalStack, log=print, watch: tuple[str, ...] | None = None):
        self.stack = stack
        self.log = log
        self.services = [s for s in stack.services if not isinstance(s, StackSupervisor)
                         and (watch is None or s.name in watch)]
        self.record = next((s for s in stack.services if isinstance(s, StackSupervisor)), StackSupervisor(stack.cfg))
        self.states = {s.name: ServiceState() for s in self.services}
        self.children: dict[str, subprocess.Popen] = {}
        self.stopping = False

    # --- one pass ---
    def tick(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        for svc in self.services:
            st = self.states[svc.name]
            if st.next_start_at is not None:
                if now >= st.next_start_at:
                    self._start(svc, st, now)
                continue
            proc = self.stack.process_of(svc)
            if proc is not None:
                if st.pid != proc.pid:
                    st.pid, st.since = proc.pid, now
                if st.state == "restarting" and svc.health()[0]:
                    st.state = "running"
                    self.log(f"{svc.name}: healthy again (pid {proc.pid}, {st.restarts} restart(s))")
                if st.quick_failures and now - st.since >= STABLE_AFTER_S:
                    st.quick_failures = 0
                continue
            self._died(svc, st, now)
        self._write_state(now)

    def _died(self, svc: Service, st: ServiceState, now: float) -> None:
        child = self.children.pop(svc.name, None)
        returncode = child.poll() if child is not None else None
        if child is not None and returncode is None:  # recorded process gone but our child alive: not ours
            child = None
        cause = describe_exit(returncode) if st.pid is not None else "not running when the supervisor started"
        last = _last_log_line(svc)
        if last:
            cause += f"; last log line: {last}"
        leftovers = session_of(st.pid) if st.pid else []
        if leftovers:
            self.log(f"{svc.name}: stopping {len(leftovers)} process(es) its pid {st.pid} left in its session: "
                     + ", ".join(_describe(p) for p in leftovers))
            _terminate(leftovers, timeout=5)
        quick = now - st.since < STABLE_AFTER_S
        st.quick_failures = st.quick_failures + 1 if quick else 1
        delay = BACKOFF_S[min(st.quick_failures - 1, len(BACKOFF_S) - 1)]
        st.state, st.last_cause, st.next_start_at = "restarting", cause, now + delay
        self.log(f"{svc.name}: pid {st.pid} {cause}. Starting it again in {delay}s "
                 f"(restart {st.restarts + 1}; the log is {svc.log_file})")

    def _start(self, svc: Service, st: ServiceState, now: float) -> None:
        held = []
        for port, what in svc.ports:
            holder = listening_pid(port)
            if holder is None:
                continue
            ours = {p.pid for p in self.stack.stack_processes()}
            if holder is not True and holder in ours and self.stack.process_of(svc) is None:
                self.log(f"{svc.name}: port {port} ({what}) is held by a leftover of this stack, "
                         f"{_describe(psutil.Process(holder))}: stopping it")
                _terminate([psutil.Process(holder)], timeout=5)
                continue
            held.append(f"port {port} ({what}) is held by "
                        + ("a process we cannot see" if holder is True else _describe(psutil.Process(holder))))
        if held:
            st.quick_failures += 1
            delay = BACKOFF_S[min(st.quick_failures - 1, len(BACKOFF_S) - 1)]
            st.next_start_at = now + delay
            st.last_cause = "; ".join(held)
            self.log(f"{svc.name}: cannot start: {st.last_cause}. Trying again in {delay}s")
            return
        try:
            popen = self.stack._spawn(svc)
        except OSError as exc:
            st.quick_failures += 1
            st.next_start_at = now + BACKOFF_S[min(st.quick_failures - 1, len(BACKOFF_S) - 1)]
            st.last_cause = f"could not start: {exc}"
            self.log(f"{svc.name}: {st.last_cause}")
            return
        self.children[svc.name] = popen
        st.restarts += 1
        st.pid, st.since, st.last_restart_at, st.next_start_at = popen.pid, now, now, None
        self.log(f"{svc.name}: started again (pid {popen.pid}, restart {st.restarts})")

    def _write_state(self, now: float) -> None:
        path = self.record.state_file
        tmp = path.with_suffix(".tmp")
        state = {"pid": os.getpid(), "heartbeat": now,
                 "services": {name: asdict(st) for name, st in self.states.items()}}
        try:
            tmp.write_text(json.dumps(state))
            tmp.replace(path)
        except OSError as exc:
            self.log(f"cannot write {path}: {exc}")

    # --- loop ---
    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        for svc in self.services:
            proc = self.stack.process_of(svc)
            self.states[svc.name].pid = proc.pid if proc else None
        self.log(f"supervising {', '.join(s.name for s in self.services)} (pid {os.getpid()})")
        while not self.stopping:
            try:
                self.tick()
            except Exception as exc:  # noqa: BLE001 - the supervisor outlives one bad pass
                self.log(f"supervisor pass failed: {type(exc).__name__}: {exc}")
            time.sleep(TICK_S)
        for popen in self.children.values():
            popen.poll()
        self.log("supervisor stopped (the services keep running until `rtml local down`)")

    def _stop(self, signum, frame) -> None:  # noqa: ARG002
        self.stopping = True


def main() -> int:
    def log(msg: str) -> None:
        print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}", flush=True)

    watch = tuple(sys.argv[1:])
    stack = LocalStack()
    unknown = sorted(set(watch) - {s.name for s in stack.services})
    if unknown:  # a stack with services of its own (a test's): only the ones this module can build are watched
        log(f"not supervising {', '.join(unknown)}: not services of the local stack")
    Supervisor(stack, log=log, watch=watch).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
