"""The embedded stack's services answer for real: Flink, Kafka, Airflow, and a PyFlink job on the cluster."""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

import httpx
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from airflow_rtml.local.stack import flink_cli

JOBS = Path(__file__).parent / "jobs"


def test_flink_overview_reports_a_taskmanager(stack):
    overview = httpx.get(f"{stack.cfg.flink_rest_url}/overview", timeout=5).json()
    assert overview["taskmanagers"] >= 1
    assert overview["slots-total"] >= 4
    assert overview["flink-version"] == "2.2.1"


def test_kafka_message_produced_to_a_new_topic_is_consumed_back(stack):
    bootstrap = stack.cfg.kafka_bootstrap
    topic = f"rtml-test-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(timeout=30)

    payload = f"hello {uuid.uuid4()}".encode()
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topic, key=b"k", value=payload)
    assert producer.flush(30) == 0

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"g-{topic}", "auto.offset.reset": "earliest"})
    consumer.subscribe([topic])
    try:
        deadline = time.monotonic() + 30
        got = None
        while got is None and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is not None and msg.error() is None:
                got = msg.value()
        assert got == payload
    finally:
        consumer.close()


def test_airflow_health_reports_all_components_healthy(stack):
    health = httpx.get(f"{stack.cfg.airflow_url}/api/v2/monitor/health", timeout=10).json()
    for component in ("metadatabase", "scheduler", "triggerer", "dag_processor"):
        assert health[component]["status"] == "healthy", health


def test_pyflink_sql_job_reaches_running_or_finished(stack):
    name = f"rtml-trivial-{uuid.uuid4().hex[:8]}"
    cmd, env = flink_cli(stack.cfg)
    out = subprocess.run(
        [*cmd, "run", "-d", "-py", str(JOBS / "trivial_sql_job.py"), name],
        capture_output=True, text=True, env=env, timeout=180,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "Job has been submitted with JobID" in out.stdout

    deadline = time.monotonic() + 60
    state = None
    while time.monotonic() < deadline:
        jobs = httpx.get(f"{stack.cfg.flink_rest_url}/jobs/overview", timeout=5).json()["jobs"]
        state = next((j["state"] for j in jobs if j["name"] == name), None)
        if state in ("RUNNING", "FINISHED"):
            break
        assert state not in ("FAILED", "CANCELED"), f"job {name} ended {state}"
        time.sleep(0.5)
    assert state in ("RUNNING", "FINISHED"), f"job {name} still {state} after 60s"


def test_kraft_storage_formats_with_a_cluster_id_that_starts_with_a_dash(stack, tmp_path):
    """One random cluster id in 64 starts with "-"; Kafka's own StorageTool must still take it (CI failed on one)."""
    from airflow_rtml.local.stack import KafkaBroker, storage_format_args

    broker = KafkaBroker(stack.cfg)
    data = tmp_path / "data"
    props = tmp_path / "server.properties"
    lines = broker.properties_file.read_text().splitlines()  # the stack's own broker config, other log.dirs
    props.write_text("\n".join([*(l for l in lines if not l.startswith("log.dirs=")), f"log.dirs={data}", ""]))
    proc = subprocess.run(
        [*broker._java(), "kafka.tools.StorageTool", *storage_format_args("-qDs8WkcRb21LjMlL-so3A", props)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "cluster.id=-qDs8WkcRb21LjMlL-so3A" in (data / "meta.properties").read_text()
