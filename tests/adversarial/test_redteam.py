"""Red-team cases beyond the suite's first list: hostile inputs that the landed code does not handle yet.

Same harness as the rest of ``tests/adversarial/`` (a victim and a bystander in one event loop, the fake
JobManager on loopback, the real broker for Kafka). Each case demonstrated a bug in the first landing of issue 10's
fixes; the comment above it says which, and the fix made it pass.
"""

from __future__ import annotations

import json
import time
import uuid

import pytest
from conftest import check as _outcome
from conftest import race, record, wait_on
from fake_cluster import T, FakeCluster

BOOTSTRAP = "127.0.0.1:9092"


# ---------------------------------------------------------------------------------------------------- Flink
# Found by the red team (fixed since): commit-aware over the reporter takes the attempt from REST but the watermark from the reporter without  checking that the reporter's values are of that attempt: a TaskManager still exporting the failed  attempt's watermark makes the restored attempt 'cross', and its first checkpoint commits it
def test_commit_aware_reporter_serves_the_failed_attempts_watermark(cluster):
    # The old attempt (0) crosses, then fails before any checkpoint; the job restores attempt 1 from a checkpoint
    # an hour back. The restored attempt's tasks are not in the scrape yet (a new TaskManager, discovery cached),
    # while the old TaskManager's reporter still exports attempt 0's series at T + 5 (a zombie TaskManager cut
    # off from the JobManager, or its reporter not yet unregistered). REST shows attempt 1 throughout.
    # The first checkpoint of attempt 1 commits restored state that has not re-closed the window: never a fire.
    victim, bystander = cluster.job("victim"), cluster.job("bystander")
    stale = {"on": False}

    def reporter(j, q):
        lines = []
        for job in cluster.jobs.values():
            rows = (list(enumerate(zip(job.watermarks, job.attempts))) if not (job is victim and stale["on"])
                    else [(i, (T + 5, 0)) for i in range(job.parallelism)])
            for i, (w, a) in rows:
                lines.append(f'flink_taskmanager_job_task_currentInputWatermark{{job_id="{job.jid}",'
                             f'task_id="{job.sink}",subtask_index="{i}",task_attempt_num="{a}"}} {w}')
        return 200, {"Content-Type": "text/plain"}, ("\n".join(lines) + "\n").encode()

    cluster.override("reporter", reporter)

    def old_attempt_crosses():
        victim.watermarks = [T + 5, T + 5]

    def failover():
        victim.attempts = [1, 1]
        victim.watermarks = [T - 3_600_000, T - 3_600_000]  # the restored attempt, not in the scrape
        stale["on"] = True

    def restored_attempt_checkpoints():
        victim.checkpoints.append((9, cluster.now_ms()))

    def bystander_crosses():
        bystander.watermarks = [T, T + 5]

    def bystander_checkpoint():
        bystander.checkpoints.append((1, cluster.now_ms()))

    triggers = {"victim": wait_on("victim", conn="flink_adv_reporter", commit_aware=True),
                "bystander": wait_on("bystander", conn="flink_adv_reporter", commit_aware=True)}
    results = race(triggers, [(0.2, old_attempt_crosses), (0.4, bystander_crosses), (0.5, failover),
                              (0.9, bystander_checkpoint), (1.3, restored_attempt_checkpoints)], 3.5)
    _outcome("commit-reporter-stale-attempt", results)


# Found by the red team (fixed since): commit-aware decides 'triggered after the crossing' by JobManager wall-clock times only: when the  JobManager's clock steps back (an NTP correction) a checkpoint triggered before the crossing has a  trigger_timestamp after it and commits it; checkpoint ids (latest_triggered_id) are not used
def test_commit_aware_jobmanager_clock_steps_back_between_a_checkpoint_and_the_crossing(cluster):
    victim, bystander = cluster.job("victim"), cluster.job("bystander")

    def checkpoint_then_clock_corrected_then_cross():
        victim.checkpoints.append((4, cluster.now_ms()))  # triggered (and completed) before the crossing
        cluster.clock_offset_ms = -600_000  # the JobManager's clock is set back ten minutes
        victim.watermarks = [T, T]

    def bystander_crosses():
        bystander.watermarks = [T, T + 5]

    def bystander_checkpoint():
        bystander.checkpoints.append((1, cluster.now_ms()))

    triggers = {"victim": wait_on("victim", commit_aware=True), "bystander": wait_on("bystander", commit_aware=True)}
    results = race(triggers, [(0.3, checkpoint_then_clock_corrected_then_cross), (0.5, bystander_crosses),
                              (1.0, bystander_checkpoint)], 3.0)
    _outcome("commit-jobmanager-clock-steps-back", results)


# Found by the red team (fixed since): the checkpoint statistics' trigger_timestamp is not validated like a watermark: a float beyond any epoch  (1e300) commits every crossing at once, a string crashes the victim's trigger with a raw TypeError instead  of failing it with FlinkApiError naming the value
@pytest.mark.parametrize("trigger_timestamp", [1e300, "soon"], ids=["float-1e300", "string"])
def test_commit_aware_checkpoint_trigger_timestamp_unreadable(cluster, trigger_timestamp):
    victim, bystander = cluster.job("victim"), cluster.job("bystander")
    cluster.override("checkpoints", lambda j, q: FakeCluster.json({
        "counts": {"completed": 1, "failed": 0}, "history": [],
        "latest": {"completed": {"id": 1, "trigger_timestamp": trigger_timestamp, "status": "COMPLETED"},
                   "savepoint": None, "failed": None, "restored": None}}), "victim")

    def cross():
        victim.watermarks = [T, T]
        bystander.watermarks = [T, T + 5]

    def bystander_checkpoint():
        bystander.checkpoints.append((1, cluster.now_ms()))

    triggers = {"victim": wait_on("victim", commit_aware=True), "bystander": wait_on("bystander", commit_aware=True)}
    results = race(triggers, [(0.3, cross), (0.9, bystander_checkpoint)], 3.0)
    # An unreadable answer about one job: its waits keep waiting (like every other unreadable answer), never
    # fire, never crash on comparing a string with a time.
    _outcome(f"commit-checkpoint-trigger-timestamp-{type(trigger_timestamp).__name__}", results, "waiting")


# ---------------------------------------------------------------------------------------------------- Kafka
@pytest.fixture
def topic(stack, monkeypatch):
    """A fresh two-partition progress topic on the real broker (and the connection waits read it with)."""
    from confluent_kafka.admin import AdminClient, NewTopic

    monkeypatch.setenv("AIRFLOW_CONN_KAFKA_ADV", json.dumps({"conn_type": "kafka",
                                                             "extra": {"bootstrap.servers": BOOTSTRAP}}))
    name = f"rtml-adv-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    for fut in admin.create_topics([NewTopic(name, 2, 1)]).values():
        fut.result(timeout=30)
    return name


def _produce(topic: str, records: list[tuple[int | None, bytes, bytes]]) -> None:
    """``(partition or None, key, value)``: a partition of its own is what a producer with another partitioner
    (Java's murmur2 vs librdkafka's crc32), or the same producer after partitions were added, writes to."""
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": BOOTSTRAP, "linger.ms": 0})
    for partition, key, value in records:
        kw = {} if partition is None else {"partition": partition}
        producer.produce(topic, key=key, value=value, **kw)
    assert producer.flush(20) == 0


def _sig(stream: str, wm: int, *, source: str = "p", final: bool = False, run: str | None = None,
         emitted_at_ms: int | None = None, partition: int | None = None) -> tuple[int | None, bytes, bytes]:
    body = {"stream": stream, "watermark_ms": wm, "source": source,
            "emitted_at_ms": int(time.time() * 1000) if emitted_at_ms is None else emitted_at_ms, "final": final}
    if run is not None:
        body["run"] = run
    return partition, stream.encode(), json.dumps(body).encode()


def _kafka_race(topic: str, script: list, duration: float = 6.0) -> dict:
    from airflow_rtml.triggers.kafka import KafkaWatermarkTrigger

    kw = {"topic": topic, "threshold_ms": T, "kafka_config_id": "kafka_adv", "poll_interval": 0.2}
    triggers = {"victim": KafkaWatermarkTrigger(stream="victim", **kw),
                "bystander": KafkaWatermarkTrigger(stream="bystander", **kw)}
    return race(triggers, [*script, (1.5, lambda: _produce(topic, [_sig("bystander", T)]))], duration)


# Found by the red team (fixed since): signals.py orders a producer's signals by the order the consumer reads them, assuming one partition per  stream; when the stream's key lands on two partitions (partitions added, or producers with different  partitioners) an unnamed producer's old final read after its re-run's signal ends the re-run
def test_kafka_an_old_final_on_another_partition_read_after_the_rerun(topic):
    # Yesterday producer p (no run ids) ended the stream: final on partition 0, behind a backlog. Partitions were
    # added; today p re-runs and its signal (T - 1000, an hour-old window still open) lands on partition 1. The
    # consumer reads partition 1 first; then partition 0's final. By the module's own rule the re-run is what
    # counts (a lower value after a final is a new run), so the stream is at T - 1000: no wait may fire.
    yesterday = int(time.time() * 1000) - 86_400_000
    backlog = [(0, b"victim", b"x" * 900_000) for _ in range(6)]  # 900 KB junk records, each its own fetch
    _produce(topic, backlog + [_sig("victim", T - 5000, final=True, emitted_at_ms=yesterday, partition=0),
                               _sig("victim", T - 1000, partition=1)])
    _outcome("kafka-old-final-read-after-rerun-on-another-partition", _kafka_race(topic, []))


# Found by the red team (fixed since): run takeover compares emitted_at_ms of two runs, i.e. two producers' clocks: a second live process under  the same source whose clock is 3 minutes ahead takes over after 3 signals, the slower live run is pruned  before it signals again, so the duplicate is never detected and the faster one's progres
def test_kafka_duplicate_source_with_a_clock_ahead_takes_over_a_live_run(topic):
    now = int(time.time() * 1000)
    ahead = now + 180_000  # the second host's clock
    _produce(topic, [_sig("victim", T - 100, run="slow", emitted_at_ms=now),
                     *(_sig("victim", T + 50 + i, run="fast", emitted_at_ms=ahead + 1000 * i) for i in range(3))])
    # The slow process is alive: it heartbeats again (every 30 s for the relay; here after 3 s).
    script = [(3.0, lambda: _produce(topic, [_sig("victim", T - 90, run="slow")]))]
    _outcome("kafka-duplicate-source-clock-ahead", _kafka_race(topic, script))
