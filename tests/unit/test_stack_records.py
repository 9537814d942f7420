"""The stack's process records (issue 11 / CI round 2): a live service is recognised by its boot-relative start
time, and a check that cannot be made (out of file descriptors, access denied) fails loudly instead of deleting
the record of a live service — which made CI's next `up` call its own services leftovers."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psutil
import pytest

from airflow_rtml.local.config import StackConfig
from airflow_rtml.local.stack import LocalStack, StackError, _start_ticks


@pytest.fixture
def stack(tmp_path):
    cfg = StackConfig(home=tmp_path, project_dir=tmp_path, dags_folder=tmp_path)
    cfg.run_dir.mkdir(parents=True)
    return LocalStack(cfg)


@pytest.fixture
def sleeper():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def _record(stack, svc, pid, **extra):
    rec = {"pid": pid, "create_time": psutil.Process(pid).create_time(), "start_ticks": _start_ticks(pid), **extra}
    stack._pidfile(svc).write_text(json.dumps(rec))


def test_a_live_service_is_found_by_its_start_ticks_even_if_the_wall_clock_moved(stack, sleeper):
    svc = stack.services[0]
    _record(stack, svc, sleeper.pid, create_time=0.0)  # as if the clock had been stepped since it started
    assert stack.process_of(svc).pid == sleeper.pid


def test_a_reused_pid_is_stale_and_its_record_removed(stack, sleeper):
    svc = stack.services[0]
    _record(stack, svc, sleeper.pid)
    rec = json.loads(stack._pidfile(svc).read_text())
    rec["start_ticks"] -= 1  # another process that once had this PID
    stack._pidfile(svc).write_text(json.dumps(rec))
    assert stack.process_of(svc) is None and not stack._pidfile(svc).exists()


def test_a_check_that_cannot_be_made_fails_loudly_and_keeps_the_record(stack, sleeper, monkeypatch):
    svc = stack.services[0]
    _record(stack, svc, sleeper.pid)

    def out_of_fds(pid):
        raise OSError(24, "Too many open files")

    monkeypatch.setattr(psutil, "Process", out_of_fds)
    with pytest.raises(StackError, match="Too many open files"):
        stack.process_of(svc)
    assert stack._pidfile(svc).exists()


def test_this_process_has_start_ticks():
    assert isinstance(_start_ticks(os.getpid()), int)
