"""`rtml local up | down` on the real services: from nothing, idempotence, clean stop, port conflicts, rollback.

These tests take the stack down; the `stack` fixture of later tests brings it back up.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from airflow_rtml.local.stack import KafkaBroker, LocalStack, Service, ServiceStartError, listening_pid

RTML = str(Path(sys.executable).with_name("rtml"))


def _rtml(cfg, *args: str, timeout: float = 400) -> subprocess.CompletedProcess:
    return subprocess.run(
        [RTML, "local", *args], capture_output=True, text=True, timeout=timeout,
        env={**__import__("os").environ, "RTML_HOME": str(cfg.home), "RTML_PROJECT_DIR": str(cfg.project_dir)},
    )


def _all_ports(stack: LocalStack) -> list[int]:
    return [port for svc in stack.services for port, _ in svc.ports]


def _assert_nothing_of_ours_runs(stack: LocalStack) -> None:
    assert stack.stack_processes() == []
    assert list(stack.cfg.run_dir.glob("*.json")) == []
    held = {port: listening_pid(port) for port in _all_ports(stack)}
    assert all(v is None for v in held.values()), f"ports still held: {held}"


def test_up_from_nothing_then_down_frees_everything(stack_config):
    stack = LocalStack(stack_config)
    assert _rtml(stack_config, "down").returncode == 0
    # From nothing: keep only the installed software (venv, jars); wipe all runtime state and data.
    for d in (stack_config.run_dir, stack_config.flink_conf_dir.parent, stack_config.kafka_dir / "data",
              stack_config.airflow_home):
        shutil.rmtree(d, ignore_errors=True)

    t0 = time.monotonic()
    up = _rtml(stack_config, "up")
    cold = time.monotonic() - t0
    assert up.returncode == 0, up.stdout + up.stderr
    print(f"cold up (runtime state wiped): {cold:.1f}s")
    status = _rtml(stack_config, "status")
    assert status.returncode == 0, status.stdout
    for name in ("flink-jobmanager", "flink-taskmanager", "flink-sql-gateway", "kafka", "hive-metastore",
                 "airflow-api-server", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer", "supervisor"):
        assert any(line.startswith(name) and "healthy" in line for line in status.stdout.splitlines()), status.stdout
    assert len(stack.stack_processes()) >= 4

    down = _rtml(stack_config, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    _assert_nothing_of_ours_runs(stack)


def test_port_held_by_another_process_is_named_and_nothing_starts(stack_config):
    stack = LocalStack(stack_config)
    stack.down()
    port = stack_config.ports.kafka
    holder = subprocess.Popen(
        [sys.executable, "-c",
         # SO_REUSEADDR as every real server sets it: the stack that was just stopped may leave connections
         # of this port in TIME_WAIT, which would make a plain bind fail.
         f"import socket,time; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
         f"s.bind(('127.0.0.1',{port})); s.listen(); print('listening', flush=True); time.sleep(300)"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "listening", f"the port holder did not start: {holder.stderr.read()}"
        up = _rtml(stack_config, "up", "--no-install")
        assert up.returncode == 2, up.stdout + up.stderr
        assert f"port {port} (Kafka broker) is already in use by pid {holder.pid}" in up.stderr, up.stderr
        assert "To fix this" in up.stderr
        assert "nothing was started" in up.stderr
        assert stack.stack_processes() == []
        assert list(stack_config.run_dir.glob("*.json")) == []
    finally:
        holder.kill()
        holder.wait()


class _CrashingService(Service):
    """A service whose process dies at once, as a broken config would make a real one do."""

    name = "crashing-test-service"

    def command(self) -> list[str]:
        return ["bash", "-c", "echo 'boom: bad configuration'; exit 3"]

    def health(self) -> tuple[bool, str]:
        return False, "never healthy"


def test_a_service_failing_to_start_stops_what_this_up_started(stack_config):
    stack = LocalStack(stack_config)
    stack.down()
    stack.services = [KafkaBroker(stack_config), _CrashingService(stack_config)]
    with pytest.raises(ServiceStartError, match="boom: bad configuration"):
        stack.up(install=False)
    # The real Kafka broker started by this `up` was stopped again: nothing half-started is left.
    _assert_nothing_of_ours_runs(LocalStack(stack_config))


def test_up_twice_is_a_noop_the_second_time(stack):
    before = {svc.name: stack.process_of(svc).pid for svc in stack.services}
    again = _rtml(stack.cfg, "up")
    assert again.returncode == 0, again.stdout + again.stderr
    for name, pid in before.items():
        assert f"{name}: already up (pid {pid}), reusing it" in again.stdout
    assert "everything was already up" in again.stdout
    assert {svc.name: stack.process_of(svc).pid for svc in stack.services} == before
    assert all(psutil.pid_exists(pid) for pid in before.values())
