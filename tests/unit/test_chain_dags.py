"""DAGs generated from the chain as code: the demo's stream DAG, and one DAG per registered experiment that starts
exactly the clone's new stream nodes (never a shared one), in the chain's order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from airflow_rtml.chain import ExperimentRegistry
from airflow_rtml.demo.chain import Chain

REPO = Path(__file__).resolve().parents[2]
JOBS_DIR = REPO / "dags" / "jobs" / "demo"


def _bag(path: Path):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(path))
    assert bag.import_errors == {}, bag.import_errors
    return bag


def _edges(dag) -> set[tuple[str, str]]:
    return {(t.task_id, d) for t in dag.tasks for d in t.downstream_task_ids}


def test_the_demo_stream_dag_is_generated_from_the_chain():
    dag = _bag(REPO / "dags" / "rtml_demo_streams.py").dags["rtml_demo_streams"]
    jobs = {t.task_id for t in dag.tasks if t.task_id.startswith("ensure_")}
    assert jobs == {f"ensure_{n}_job" for n in Chain().jobs}
    edges = _edges(dag)
    for up, down in [("ensure_label_join_job", "ensure_features_job"), ("ensure_features_job", "features_reached_start"),
                     ("features_reached_start", "ensure_sample_features_job"),
                     ("ensure_label_join_job", "ensure_archive_job"), ("ensure_label_join_job", "ensure_evaluation_job"),
                     ("publish_empty_offline_version", "ensure_sample_features_job"),
                     ("ensure_sample_features_job", "sample_join_not_ahead_of_features")]:
        assert (up, down) in edges, (up, down)
    assert dag.get_task("ensure_features_job").job_name == "{{ var.json.rtml_demo.job_prefix }}-features"


def test_each_registered_experiment_gets_a_dag_that_starts_only_its_new_nodes(tmp_path, monkeypatch):
    registry = ExperimentRegistry(tmp_path / "experiments.json")
    builtin = {"demo": Chain().plan(JOBS_DIR)}
    registry.clone("demo", "wide", ["features.feature_window_minutes=20"], builtin)
    registry.clone("demo", "late_attr", ["label_join.attribution_minutes=30"], builtin)
    monkeypatch.setenv("RTML_EXPERIMENTS", str(registry.path))
    dags = _bag(REPO / "dags" / "rtml_experiments.py").dags
    assert set(dags) == {"rtml_clone_experiment", "rtml_experiment_wide", "rtml_experiment_late_attr"}
    wide = dags["rtml_experiment_wide"]
    assert {t.task_id for t in wide.tasks} == {"create_topics", "ensure_features_job", "ensure_sample_features_job"}
    assert ("ensure_features_job", "ensure_sample_features_job") in _edges(wide)
    assert wide.get_task("ensure_features_job").job_name == "rtml-demo-wide-features"
    assert "'topic' = 'rtml.demo.samples'" in wide.get_task("ensure_features_job").sql  # the shared input
    assert {"experiment", "experiment:wide", "base:demo"} <= set(wide.tags)
    assert "shared with `demo`" in wide.doc_md and "new: `rtml-demo-wide-features`" in wide.doc_md
    # a changed first node: every stream node is new
    late = dags["rtml_experiment_late_attr"]
    assert {t.task_id for t in late.tasks} - {"create_topics"} == {f"ensure_{n}_job" for n in Chain().jobs}


def test_a_stale_experiment_gets_a_dag_that_says_so_and_the_others_are_unaffected(tmp_path, monkeypatch):
    registry = ExperimentRegistry(tmp_path / "experiments.json")
    builtin = {"demo": Chain().plan(JOBS_DIR)}
    registry.clone("demo", "wide", ["features.feature_window_minutes=20"], builtin)
    registry.clone("demo", "stale", ["features.feature_window_minutes=30"], builtin)
    data = json.loads(registry.path.read_text())
    data["chains"]["stale"]["instances"]["features"]["fingerprint"] = "0" * 16  # as if the SQL changed since
    registry.path.write_text(json.dumps(data))
    monkeypatch.setenv("RTML_EXPERIMENTS", str(registry.path))
    dags = _bag(REPO / "dags" / "rtml_experiments.py").dags
    assert [t.task_id for t in dags["rtml_experiment_stale"].tasks] == ["refused"]
    assert "stop it and clone it again" in dags["rtml_experiment_stale"].doc_md
    assert len(dags["rtml_experiment_wide"].tasks) == 3


def test_the_clone_dag_registers_like_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("RTML_EXPERIMENTS", str(tmp_path / "experiments.json"))
    dag = _bag(REPO / "dags" / "rtml_experiments.py").dags["rtml_clone_experiment"]
    fn = dag.get_task("register_clone").python_callable
    out = fn(params={"base": "demo", "name": "wide", "sets": ["features.feature_window_minutes=20"]})
    assert out == {"experiment": "wide", "registered": True, "new": ["features", "sample_features", "training"],
                   "shared": ["label_join", "evaluation", "archive", "offline_features", "evaluation_report"],
                   "dag_id": "rtml_experiment_wide"}
    assert fn(params={"base": "demo", "name": "wide", "sets": ["features.feature_window_minutes=20"]})["registered"] is False
    from airflow_rtml.exceptions import UnknownChainNode

    with pytest.raises(UnknownChainNode):
        fn(params={"base": "demo", "name": "x", "sets": ["nope.a=1"]})


def test_the_demo_training_checks_each_hours_quality_before_it_trains_and_announces_promotions_after():
    dag = _bag(REPO / "dags" / "rtml_demo_training.py").dags["rtml_demo_train_hourly"]
    assert _edges(dag) == {("register_training_partition", "training_partition_registered"),
                           ("training_partition_registered", "dqc_training_samples"),
                           ("dqc_training_samples", "train_on_hour"), ("train_on_hour", "announce_promotion")}
    assert [o.name for o in dag.get_task("announce_promotion").outlets] == ["rtml_demo_model_promoted"]


def test_a_malformed_entry_or_an_unreadable_registry_never_hides_the_other_dags(tmp_path, monkeypatch):
    registry = ExperimentRegistry(tmp_path / "experiments.json")
    builtin = {"demo": Chain().plan(JOBS_DIR)}
    registry.clone("demo", "wide", ["features.feature_window_minutes=20"], builtin)
    data = json.loads(registry.path.read_text())
    data["chains"]["broken"] = {"name": "broken", "base": "demo"}  # no sets, no instances
    data["chains"]["odd"] = ["not", "an", "entry"]
    registry.path.write_text(json.dumps(data))
    monkeypatch.setenv("RTML_EXPERIMENTS", str(registry.path))
    dags = _bag(REPO / "dags" / "rtml_experiments.py").dags
    assert [t.task_id for t in dags["rtml_experiment_broken"].tasks] == ["refused"]
    assert "malformed" in dags["rtml_experiment_broken"].doc_md
    assert len(dags["rtml_experiment_wide"].tasks) == 3 and "rtml_clone_experiment" in dags
    registry.path.write_text("{not json")
    dags = _bag(REPO / "dags" / "rtml_experiments.py").dags
    assert set(dags) == {"rtml_clone_experiment", "rtml_experiment_registry_unreadable"}
    assert "not valid JSON" in dags["rtml_experiment_registry_unreadable"].doc_md


def test_a_clone_the_jobs_cannot_be_rendered_for_is_refused_before_it_is_registered(tmp_path, monkeypatch):
    monkeypatch.setenv("RTML_EXPERIMENTS", str(tmp_path / "experiments.json"))
    fn = _bag(REPO / "dags" / "rtml_experiments.py").dags["rtml_clone_experiment"].get_task("register_clone") \
        .python_callable
    from airflow_rtml.exceptions import UnknownChainParameter

    with pytest.raises(UnknownChainParameter, match="set it on all of them"):
        fn(params={"base": "demo", "name": "late", "sets": ["label_join.lateness_seconds=120"]})
    assert not (tmp_path / "experiments.json").exists() or \
        "late" not in ExperimentRegistry(tmp_path / "experiments.json").chains()
