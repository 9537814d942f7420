"""The fingerprint of a submitted program (issue 17): what changes the program changes it, nothing else does."""

from __future__ import annotations

import dataclasses

import pytest

from airflow_rtml.operators.flink import ARTIFACT_PARAM, FINGERPRINT_PARAM, JobArtifact, _with_fingerprint, _with_record

JAR = JobArtifact("jar", jar_id="abc_job.jar", jar_name="job.jar", jar_sha256="11" * 32, jar_path="/w/job.jar",
                  entry_class="a.Main", args=["--x", "1"], parallelism=2, flink_conf={"state.ttl": "1h"})


def test_the_same_program_has_the_same_fingerprint_wherever_its_jar_was_uploaded():
    assert JAR.fingerprint == dataclasses.replace(JAR, jar_id="def_job.jar", jar_path="/other/job.jar").fingerprint
    assert JobArtifact.decode(JAR.encode()).fingerprint == JAR.fingerprint  # computable from the record too


@pytest.mark.parametrize("change", [{"jar_sha256": "22" * 32}, {"entry_class": "a.Other"}, {"args": ["--x", "2"]},
                                    {"parallelism": 4}, {"flink_conf": {"state.ttl": "2h"}}])
def test_what_defines_the_program_changes_it(change):
    assert dataclasses.replace(JAR, **change).fingerprint != JAR.fingerprint


def test_rendered_sql_and_session_jars_change_it():
    sql = JobArtifact("sql", statements=["INSERT INTO t SELECT 1"], sql_jars=["/j/kafka.jar"])
    assert dataclasses.replace(sql, statements=["INSERT INTO t SELECT 2"]).fingerprint != sql.fingerprint
    assert dataclasses.replace(sql, sql_jars=[]).fingerprint != sql.fingerprint
    assert dataclasses.replace(sql, statements=["  INSERT INTO t SELECT 1\n"]).fingerprint == sql.fingerprint


def test_it_is_a_global_job_parameter_beside_the_record():
    conf = _with_fingerprint(_with_record({"pipeline.global-job-parameters": "team:ml"}, "R"), "f" * 64)
    assert conf["pipeline.global-job-parameters"] == f"team:ml,{ARTIFACT_PARAM}:R,{FINGERPRINT_PARAM}:{'f' * 64}"
    assert _with_fingerprint(conf, "e" * 64)["pipeline.global-job-parameters"].count(FINGERPRINT_PARAM) == 1
