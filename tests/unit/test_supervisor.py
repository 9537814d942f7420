"""The local stack's supervisor (issue 11): a service that dies is restarted with backoff, what it left in its
session is stopped first (a killed triggerer's log server kept port 8794), a port held by a process outside the
stack is never taken over, ``status`` tells the truth, and ``down`` stops the supervisor before anything else.

The services here are real processes (a Python parent with a child in its session, as Airflow's triggerer and its
log server are); the real triggerer is killed in ``tests/system/test_stream_to_batch.py``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from airflow_rtml.local.cli import status_word
from airflow_rtml.local.config import StackConfig
from airflow_rtml.local.stack import LocalStack, Service, StackSupervisor, listening_pid
from airflow_rtml.local.supervisor import BACKOFF_S, Supervisor, describe_exit

CHILD = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); " \
        "print('up', flush=True); time.sleep(120)"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Worker(Service):
    """A parent process with a child in its session; healthy while it runs."""

    name = "worker"

    def __init__(self, cfg, port: int | None = None, script: str = CHILD):
        super().__init__(cfg)
        self.script = script
        self.ports = ((port, "worker port"),) if port else ()

    def command(self) -> list[str]:
        return [sys.executable, "-c", self.script]

    def health(self) -> tuple[bool, str]:
        return True, "ok"


class _TestSupervisor(StackSupervisor):
    """The real supervisor loop, in its own process, over this module's worker (``python -m
    airflow_rtml.local.supervisor`` builds only the local stack's own services)."""

    def command(self) -> list[str]:
        here = str(Path(__file__).parent)
        return [sys.executable, "-c", f"import sys; sys.path.insert(0, {here!r}); import test_supervisor as t; "
                                      f"t.run_supervisor({str(self.cfg.home)!r})"]


def _test_stack(home: Path) -> LocalStack:
    cfg = StackConfig(home=home, project_dir=home, dags_folder=home)
    s = LocalStack(cfg)
    s.services = [_Worker(cfg), _TestSupervisor(cfg)]
    return s


def run_supervisor(home: str) -> None:
    Supervisor(_test_stack(Path(home)), log=lambda m: print(m, flush=True)).run()


@pytest.fixture
def stack(tmp_path):
    s = _test_stack(tmp_path)
    for d in (s.cfg.run_dir, s.cfg.log_dir):
        d.mkdir(parents=True)
    yield s
    s.down()


def _children_of(pid: int) -> list[psutil.Process]:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        kids = psutil.Process(pid).children()
        if kids:
            return kids
        time.sleep(0.05)
    raise AssertionError(f"pid {pid} started no child")


def _until_zombie(proc: psutil.Process) -> None:
    deadline = time.monotonic() + 10
    while proc.status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, f"pid {proc.pid} did not exit"
        time.sleep(0.05)


def test_a_killed_service_is_restarted_and_its_orphaned_child_stopped_first(stack):
    worker = stack.services[0]
    first = stack._spawn(worker)
    orphan = _children_of(first.pid)[0]
    logs: list[str] = []
    sup = Supervisor(stack, log=logs.append)
    sup.tick()
    assert sup.states["worker"].state == "running"

    os.kill(first.pid, signal.SIGKILL)  # as `kill -9` of the triggerer: its log server lives on
    first.wait()
    t = time.time()
    sup.tick(t)
    st = sup.states["worker"]
    assert st.state == "restarting" and st.next_start_at == pytest.approx(t + BACKOFF_S[0])
    assert not orphan.is_running() or orphan.status() == psutil.STATUS_ZOMBIE, "the orphaned child was left"
    assert any("left in its session" in line for line in logs), logs
    assert stack.process_of(worker) is None

    sup.tick(t + 0.5)  # before the backoff: nothing is started
    assert stack.process_of(worker) is None
    sup.tick(t + BACKOFF_S[0])
    again = stack.process_of(worker)
    assert again is not None and again.pid != first.pid
    assert st.restarts == 1
    sup.tick()
    assert st.state == "running"
    assert any("healthy again" in line for line in logs), logs

    # The restarted process is the supervisor's child: its next death has a known cause.
    again.send_signal(signal.SIGTERM)
    _until_zombie(again)  # not psutil's wait(): that would reap the supervisor's child and hide its exit status
    sup.tick()
    assert st.last_cause.startswith("killed by SIGTERM"), st.last_cause


def test_restarts_that_keep_failing_back_off_longer_and_longer(stack):
    worker = _Worker(stack.cfg, script="import sys; print('boom: bad config', flush=True); sys.exit(3)")
    stack.services = [worker, StackSupervisor(stack.cfg)]
    first = stack._spawn(worker)
    first.wait(10)
    sup = Supervisor(stack, log=lambda m: None)
    st = sup.states["worker"]
    st.pid = first.pid
    delays = []
    now = time.time()
    for _ in range(len(BACKOFF_S) + 1):
        sup.tick(now)
        assert st.state == "restarting"
        delays.append(round(st.next_start_at - now))
        now = st.next_start_at
        sup.tick(now)  # starts it again; it exits at once
        sup.children["worker"].wait(10)
    assert delays == [*BACKOFF_S, BACKOFF_S[-1]]
    assert "exited with code 3" in st.last_cause and "boom: bad config" in st.last_cause, st.last_cause


def test_a_port_held_outside_the_stack_is_reported_and_never_taken_over(stack):
    port = _free_port()
    worker = _Worker(stack.cfg, port=port)
    stack.services = [worker, StackSupervisor(stack.cfg)]
    holder = subprocess.Popen([sys.executable, "-c", f"import socket,time; s=socket.socket(); "
                               f"s.bind(('127.0.0.1',{port})); s.listen(); print('x', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE)
    try:
        holder.stdout.readline()
        sup = Supervisor(stack, log=lambda m: None)
        sup.tick(time.time())  # not running when the supervisor started
        st = sup.states["worker"]
        assert st.last_cause == "not running when the supervisor started"
        sup.tick(st.next_start_at)
        assert stack.process_of(worker) is None and holder.poll() is None
        assert f"port {port} (worker port) is held by pid {holder.pid}" in st.last_cause, st.last_cause
        assert listening_pid(port) == holder.pid
    finally:
        holder.kill()
        holder.wait()


def test_status_says_degraded_while_restarting_and_down_stops_the_supervisor_first(stack):
    worker, supervisor = stack.services
    started = stack.up(install=False)
    assert [s.name for s in started] == ["worker", "supervisor"]
    assert [status_word(r) for r in stack.status()] == ["healthy", "healthy"]

    victim = stack.process_of(worker)
    victim.kill()
    victim.wait(10)
    deadline = time.monotonic() + 15
    rows = stack.status()
    while "restarting after:" not in rows[0].detail and time.monotonic() < deadline:
        time.sleep(0.2)
        rows = stack.status()
    assert status_word(rows[0]) == "degraded (restarting, 0 restarts)", rows[0]
    assert "restarting after:" in rows[0].detail

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not (rows[0].healthy and rows[0].restarts == 1):
        time.sleep(0.2)
        rows = stack.status()
    assert status_word(rows[0]) == "healthy (1 restart)", rows[0]

    # `up` with the supervisor running never starts a second copy of a service it is restarting.
    assert stack.up(install=False) == []

    sup_pid = stack.process_of(supervisor).pid
    t0 = time.monotonic()
    stack.down()
    assert time.monotonic() - t0 < 25
    assert not psutil.pid_exists(sup_pid) or psutil.Process(sup_pid).status() == psutil.STATUS_ZOMBIE
    assert stack.stack_processes() == [] and not supervisor.state_file.exists()
    log = supervisor.log_file.read_text()
    assert "worker: pid" in log and "Starting it again in 1s" in log, log


def test_exit_descriptions():
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(0) == "exited with code 0"
    assert "unknown" in describe_exit(None)
