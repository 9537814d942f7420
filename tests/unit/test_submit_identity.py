"""The submit operator's program record (what an upgrade rolls back to): encoding and how it joins the job's
global job parameters. The behaviour on a real cluster is in tests/integration/test_submit_identity_and_upgrade.py."""

from __future__ import annotations

import pytest

from airflow_rtml.operators.flink import ARTIFACT_PARAM, JobArtifact, _with_record


def test_a_record_survives_the_round_trip_and_fits_flinks_map_syntax():
    artifact = JobArtifact("sql", statements=["CREATE TABLE t (s STRING) WITH ('a' = 'x,y:z')", "INSERT INTO u SELECT 1"],
                           sql_jars=["/jars/kafka.jar"], parallelism=2, flink_conf={"execution.checkpointing.interval": "1s"})
    text = artifact.encode()
    assert "," not in text and ":" not in text  # Flink splits pipeline.global-job-parameters on both
    assert JobArtifact.decode(text) == artifact


@pytest.mark.parametrize("text", ["", "not base64 at all!", JobArtifact("sql").encode()[:-8],
                                  "eJyrVipLLSrOzM9TslIw0lFQys7MSwEylYoLc5RqAYsYCPM="])
def test_a_corrupt_or_foreign_record_is_a_value_error(text):
    with pytest.raises(ValueError):
        JobArtifact.decode(text)


def test_the_record_joins_the_users_global_job_parameters_and_replaces_an_older_one():
    assert _with_record({}, "R1") == {"pipeline.global-job-parameters": f"{ARTIFACT_PARAM}:R1"}
    conf = {"pipeline.global-job-parameters": f"team:ml,{ARTIFACT_PARAM}:OLD", "x": "1"}
    assert _with_record(conf, "R2") == {"pipeline.global-job-parameters": f"team:ml,{ARTIFACT_PARAM}:R2", "x": "1"}
    assert _with_record(conf, None) == conf  # too large to attach: the user's settings go through unchanged
