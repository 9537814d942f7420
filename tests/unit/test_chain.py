"""The chain core: definitions are checked before anything starts, fingerprints decide what a clone shares, and the
registry tracks which chains use which instance."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from airflow_rtml.chain import (
    ChainDefinition, DependencyKind, ExperimentRegistry, Naming, Node, clone, parse_sets, plan_chain,
)
from airflow_rtml.exceptions import ChainDefinitionError, ChainError, ChainNotFound, UnknownChainNode, UnknownChainParameter


def demo_like(tmp_path: Path) -> ChainDefinition:
    (tmp_path / "label_join.sql").write_text("INSERT INTO samples SELECT ...")
    (tmp_path / "features.sql").write_text("INSERT INTO user_features SELECT ... TUMBLE {window_minutes}")
    return ChainDefinition(
        name="demo", root=tmp_path, sources=("impressions", "clicks"),
        nodes=[
            # defined out of order on purpose: the order comes from the datasets
            Node("training", "train", inputs=("training_samples",), outputs=("model",), code="demo.training:train",
                 params={"learning_rate": 0.1, "epochs": 3}),
            Node("label_join", "stream", inputs=("impressions", "clicks"), outputs=("samples",),
                 code=Path("label_join.sql"), params={"attribution_minutes": 10}),
            Node("features", "stream", inputs=("samples",), outputs=("user_features",), code=Path("features.sql"),
                 params={"window_minutes": 10, "name": "ctr"}),
            Node("sample_features", "stream", inputs=("samples", "user_features"), outputs=("training_samples",),
                 code="sample_features.sql@1"),
            Node("evaluation", "evaluate", inputs=("samples", "model"), outputs=("ctr_report",), code="demo.eval:ctr"),
        ])


def test_order_and_edges_follow_the_datasets(tmp_path):
    chain = demo_like(tmp_path)
    assert chain.order == ("label_join", "features", "sample_features", "training", "evaluation")
    kinds = {(e.upstream, e.downstream): e.kind for e in chain.edges()}
    assert kinds[("label_join", "features")] is DependencyKind.STREAM_TO_STREAM
    assert kinds[("sample_features", "training")] is DependencyKind.STREAM_TO_BATCH
    assert kinds[("training", "evaluation")] is DependencyKind.BATCH_TO_BATCH
    assert chain.downstream_closure(["features"]) == {"features", "sample_features", "training", "evaluation"}


def test_a_cycle_is_refused_naming_it():
    with pytest.raises(ChainDefinitionError, match=r"cycle: (a -> b -> c -> a|b -> c -> a -> b|c -> a -> b -> c)"):
        ChainDefinition("loop", [Node("a", "stream", inputs=("z",), outputs=("x",)),
                                 Node("b", "stream", inputs=("x",), outputs=("y",)),
                                 Node("c", "batch", inputs=("y",), outputs=("z",))])


@pytest.mark.parametrize("nodes, sources, match", [
    ([Node("a", "stream", outputs=("x",)), Node("a", "batch")], (), "node 'a' twice"),
    ([Node("a", "stream", outputs=("x",)), Node("b", "batch", outputs=("x",))], (), "written by nodes 'a' and 'b'"),
    ([Node("a", "stream", inputs=("nope",))], (), "reads 'nope', which no node writes"),
    ([Node("a", "stream", outputs=("raw",))], ("raw",), "is a source"),
])
def test_bad_definitions_are_refused(nodes, sources, match):
    with pytest.raises(ChainDefinitionError, match=match):
        ChainDefinition("c", nodes, sources=sources)


def test_bad_names_kinds_and_params_are_refused():
    with pytest.raises(ChainDefinitionError, match="kind 'spark'"):
        Node("a", "spark")
    with pytest.raises(ChainDefinitionError, match="not a valid name"):
        Node("Bad-Name", "stream")
    with pytest.raises(ChainDefinitionError, match="not a JSON value"):
        Node("a", "stream", params={"f": object()})
    with pytest.raises(ChainDefinitionError, match="cycle of one"):
        Node("a", "stream", inputs=("x",), outputs=("x",))


def test_a_missing_code_file_is_a_clear_error(tmp_path):
    chain = ChainDefinition("c", [Node("a", "stream", code=Path("gone.sql"))], root=tmp_path)
    with pytest.raises(ChainDefinitionError, match="gone.sql cannot be read"):
        chain.fingerprints()


def test_fingerprints_change_with_code_params_and_upstream(tmp_path):
    chain = demo_like(tmp_path)
    before = chain.fingerprints()
    assert chain.fingerprints() == before  # stable
    (tmp_path / "features.sql").write_text("INSERT INTO user_features SELECT ... HOP")
    after = chain.fingerprints()
    changed = {n for n in before if before[n] != after[n]}
    assert changed == {"features", "sample_features", "training", "evaluation"}


def test_set_values_are_typed_and_unknown_names_are_listed(tmp_path):
    chain = demo_like(tmp_path)
    assert parse_sets(chain, ["features.window_minutes=20", "training.learning_rate=1", "features.name=20"]) == {
        "features": {"window_minutes": 20, "name": "20"}, "training": {"learning_rate": 1}}
    with pytest.raises(UnknownChainNode, match=r"no node 'featurez'.*'label_join'"):
        parse_sets(chain, ["featurez.window_minutes=20"])
    with pytest.raises(UnknownChainParameter, match=r"no parameter 'window'.*\['name', 'window_minutes'\]"):
        parse_sets(chain, ["features.window=20"])
    with pytest.raises(UnknownChainParameter, match="is a int"):
        parse_sets(chain, ["features.window_minutes=twenty"])
    with pytest.raises(UnknownChainParameter, match="NODE.PARAM=VALUE"):
        parse_sets(chain, ["features=20"])


def test_a_clone_shares_exactly_the_unchanged_upstream(tmp_path):
    base = plan_chain(demo_like(tmp_path), Naming("rtml.demo", "rtml-demo"))
    assert base.shared == [] and base.owned == list(base.definition.order)
    exp = clone(base, "exp_b", ["features.window_minutes=20"])
    assert exp.shared == ["label_join"]
    assert exp.owned == ["features", "sample_features", "training", "evaluation"]
    assert exp.instances["label_join"] is base.instances["label_join"]  # same job, same output: no second job
    assert exp.instances["features"].job_name == "rtml-demo-exp-b-features"
    assert exp.instances["features"].inputs == {"samples": "rtml.demo.samples"}  # reads the shared output
    assert exp.instances["sample_features"].inputs == {"samples": "rtml.demo.samples",
                                                       "user_features": "rtml.demo.exp-b.user-features"}
    assert exp.instances["training"].job_name is None  # batch nodes have no Flink job
    assert exp.instances["label_join"].inputs == {"impressions": "rtml.demo.impressions",
                                                  "clicks": "rtml.demo.clicks"}


def test_a_clone_of_a_clone_shares_with_whichever_chain_owns_each_node(tmp_path):
    base = plan_chain(demo_like(tmp_path), Naming())
    b = clone(base, "exp_b", {"features": {"window_minutes": 20}})
    c = clone(b, "exp_c", ["training.epochs=5"])
    assert c.sets == {"features": {"window_minutes": 20}, "training": {"epochs": 5}}
    assert {n: c.instances[n].owner for n in c.definition.order} == {
        "label_join": "demo", "features": "exp_b", "sample_features": "exp_b", "training": "exp_c",
        "evaluation": "exp_c"}
    assert c.instances["training"].outputs == {"model": "rtml.demo.exp-c.model"}


def test_a_clone_that_changes_nothing_shares_everything(tmp_path):
    base = plan_chain(demo_like(tmp_path), Naming())
    same = clone(base, "same", ["features.window_minutes=10"])
    assert same.owned == [] and len(same.shared) == 5


def test_clone_refuses_a_bad_experiment_name(tmp_path):
    base = plan_chain(demo_like(tmp_path), Naming())
    with pytest.raises(ChainDefinitionError):
        clone(base, "Exp B", [])
    with pytest.raises(ChainDefinitionError, match="its base's name"):
        clone(base, "demo", [])
    with pytest.raises(UnknownChainNode):
        clone(base, "x", {"nope": {"a": 1}})


def test_the_registry_tracks_users_and_stops_only_what_nobody_else_uses(tmp_path):
    reg = ExperimentRegistry(tmp_path / "experiments.json")
    base = plan_chain(demo_like(tmp_path), Naming())
    exp = clone(base, "exp_b", ["features.window_minutes=20"])
    with pytest.raises(ChainNotFound, match="'demo', which is not registered"):
        reg.register(exp)
    assert reg.register(base) is True
    assert reg.register(exp) is True
    assert reg.register(exp) is False  # a retried clone: nothing changes
    assert reg.users()["demo/label_join"] == ["demo", "exp_b"]
    assert reg.users()["exp_b/features"] == ["exp_b"]
    stop = [i["key"] for i in reg.to_stop("exp_b")]
    assert stop == ["exp_b/evaluation", "exp_b/training", "exp_b/sample_features", "exp_b/features"]
    assert reg.to_stop("exp_b") == reg.to_stop("exp_b")  # a stop that died half-way sees the same list again
    reg.forget("exp_b")
    reg.forget("exp_b")  # no-op on retry
    assert sorted(reg.chains()) == ["demo"]
    assert [i["key"] for i in reg.to_stop("demo")][-1] == "demo/label_join"
    with pytest.raises(ChainNotFound, match=r"Registered: \['demo'\]"):
        reg.get("exp_b")


def test_the_registry_refuses_a_name_taken_with_other_settings(tmp_path):
    reg = ExperimentRegistry(tmp_path / "experiments.json")
    base = plan_chain(demo_like(tmp_path), Naming())
    reg.register(base)
    reg.register(clone(base, "exp_b", ["features.window_minutes=20"]))
    with pytest.raises(ChainError, match="registered already with other"):
        reg.register(clone(base, "exp_b", ["features.window_minutes=30"]))


def test_the_registry_file_survives_concurrent_writers(tmp_path):
    reg = ExperimentRegistry(tmp_path / "experiments.json")
    base = plan_chain(demo_like(tmp_path), Naming())
    reg.register(base)
    plans = [clone(base, f"exp_{i}", [f"training.epochs={i + 10}"]) for i in range(12)]
    threads = [threading.Thread(target=reg.register, args=(p,)) for p in plans]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(reg.chains()) == sorted(["demo", *(p.name for p in plans)])
    json.loads((tmp_path / "experiments.json").read_text())


def test_a_corrupt_registry_is_a_clear_error(tmp_path):
    path = tmp_path / "experiments.json"
    path.write_text("{not json")
    with pytest.raises(ChainError, match="not valid JSON"):
        ExperimentRegistry(path).chains()


def test_the_chain_core_imports_no_airflow():
    code = ("import sys, airflow_rtml.chain; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('airflow', 'pyflink')]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


JOBS_DIR = Path(__file__).resolve().parents[2] / "dags" / "jobs" / "demo"


def test_the_demo_chain_definition_matches_its_sql_files_and_names():
    """Each SQL node's datasets are exactly the topics/paths its SQL file names, and its parameters appear in it;
    the plan's job and topic names are the ones the demo DAGs use."""
    import re

    from airflow_rtml.demo.chain import Chain

    demo = Chain()
    definition = demo.definition(JOBS_DIR)
    for node in definition.nodes:
        files = node.code if isinstance(node.code, tuple) else (node.code,)
        if not (isinstance(files[0], Path) and files[0].suffix == ".sql"):
            continue
        text = (JOBS_DIR / files[0]).read_text()
        if "{samples_in}" in text:  # an included file is part of the node's code (its fingerprint)
            assert Path("_samples_in.sql") in files, node.name
        text += "".join((JOBS_DIR / f).read_text() for f in files[1:])
        named = set(re.findall(r"\{([a-z_]+)_topic\}", text)) | {f"{p}_archive" for p in
                                                                  re.findall(r"\{([a-z_]+)_path\}", text)}
        assert named == set(node.inputs) | set(node.outputs), node.name
        placeholders = set(re.findall(r"\{([a-z_]+)\}", text))
        assert set(node.params) <= placeholders, node.name
    plan = plan_chain(definition, demo.naming())
    assert {k: plan.instances[k].job_name for k in demo.jobs} == demo.jobs
    for dataset, topic in demo.topics.items():
        writer = definition.writer(dataset)
        if writer is not None:
            assert plan.instances[writer].outputs[dataset] == topic
    assert plan.source("impressions") == demo.topics["impressions"]
    exp = clone(plan, "wide_window", ["features.feature_window_minutes=20"])
    assert exp.shared == ["label_join", "evaluation", "archive", "offline_features", "evaluation_report"]
    assert exp.owned == ["features", "sample_features", "training"]


def test_rtml_experiment_clone_list_show_and_stop_dry_run(tmp_path, capsys):
    from airflow_rtml.local.cli import main

    reg = ["--registry", str(tmp_path / "experiments.json")]
    assert main(["experiment", "clone", "demo", "wide", "--set", "features.feature_window_minutes=20", *reg]) == 0
    out = capsys.readouterr().out
    assert "rtml-demo-wide-features" in out and "shared with demo" in out and "3 new node(s), 5 shared" in out
    assert main(["experiment", "clone", "demo", "wide", "--set", "features.feature_window_minutes=20", *reg]) == 0
    assert "already registered (nothing changed)" in capsys.readouterr().out
    assert main(["experiment", "clone", "wide", "wider", "--set", "label_join.attribution_minutes=30", *reg]) == 0
    capsys.readouterr()
    assert main(["experiment", "show", "wider", *reg]) == 0
    assert "rtml-demo-wider-label-join" in capsys.readouterr().out  # the changed upstream: everything new
    assert main(["experiment", "list", *reg]) == 0
    out = capsys.readouterr().out
    assert "demo/label_join                      demo, wide" in out
    assert main(["experiment", "stop", "wide", "--dry-run", *reg]) == 2  # wider is cloned from it
    assert "is the base of ['wider']" in capsys.readouterr().err
    assert main(["experiment", "stop", "wider", "--dry-run", *reg]) == 0
    assert "would stop ['wider/evaluation_report', 'wider/training'" in capsys.readouterr().out
    # bad input: a clear error, exit 2, nothing registered
    assert main(["experiment", "clone", "nope", "x", *reg]) == 2
    assert main(["experiment", "clone", "demo", "x", "--set", "featurez.a=1", *reg]) == 2
    assert main(["experiment", "clone", "demo", "x", "--set", "features.feature_window_minutes=ten", *reg]) == 2
    err = capsys.readouterr().err
    assert "No chain 'nope'" in err and "no node 'featurez'" in err and "is a int" in err
    assert sorted(ExperimentRegistry(tmp_path / "experiments.json").chains()) == ["demo", "wide", "wider"]


def test_the_example_of_docs_experiments_says_what_it_shows():
    """docs/experiments.md shows dags/examples/snippets/experiment_clone.py (test_docs_snippets checks the excerpt);
    its comments state the plan: check them."""
    import importlib.util

    path = JOBS_DIR.parents[1] / "examples" / "snippets" / "experiment_clone.py"
    spec = importlib.util.spec_from_file_location("experiment_clone_snippet", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.exp.shared == ["label_join"]
    assert module.exp.owned == ["features", "training"]
    assert module.exp.instances["features"].job_name == "rtml-demo-wide-window-features"
    assert module.exp.instances["features"].outputs == {"user_features": "rtml.demo.wide-window.user-features"}


def test_an_included_file_is_part_of_the_code(tmp_path):
    (tmp_path / "job.sql").write_text("{source} INSERT ...")
    (tmp_path / "source.sql").write_text("CREATE TABLE src ...")
    chain = ChainDefinition("c", [Node("a", "stream", outputs=("x",), code=(Path("job.sql"), Path("source.sql")))],
                            root=tmp_path)
    before = chain.fingerprints()["a"]
    (tmp_path / "source.sql").write_text("CREATE TABLE src ... WATERMARK")
    assert chain.fingerprints()["a"] != before
    with pytest.raises(ChainDefinitionError, match="must hold Paths"):
        Node("b", "stream", code=("x.sql",))


def test_an_int_for_a_float_parameter_is_the_same_node(tmp_path):
    base = plan_chain(demo_like(tmp_path), Naming())
    same = clone(base, "lr_same", ["training.learning_rate=0.1"])
    assert same.owned == []
    assert parse_sets(base.definition, ["training.learning_rate=1"]) == {"training": {"learning_rate": 1.0}}


def test_a_name_another_instance_uses_is_refused(tmp_path):
    (tmp_path / "j.sql").write_text("x")
    chain = ChainDefinition("c", [Node("b_c", "stream", outputs=("o",), code=Path("j.sql"), params={"p": 1}),
                                  Node("c", "stream", inputs=("o",), outputs=("q",), code=Path("j.sql"),
                                       params={"p": 1})], root=tmp_path)
    reg = ExperimentRegistry(tmp_path / "experiments.json")
    base = plan_chain(chain, Naming("t", "j"))
    reg.register(base)
    reg.register(clone(base, "a", ["b_c.p=2"]))  # job j-a-b-c for node b_c
    with pytest.raises(ChainError, match="'j-a-b-c' for node 'a_b/c', which 'a/b_c' already uses"):
        reg.register(clone(base, "a_b", ["c.p=2"]))  # would be j-a-b-c for node c


def test_a_base_with_clones_is_not_stopped(tmp_path):
    reg = ExperimentRegistry(tmp_path / "experiments.json")
    base = plan_chain(demo_like(tmp_path), Naming())
    reg.register(base)
    reg.register(clone(base, "exp_b", ["features.window_minutes=20"]))
    with pytest.raises(ChainError, match=r"base of \['exp_b'\]"):
        reg.to_stop("demo")


@pytest.mark.parametrize("prefix,job_prefix", [("rtml.demo", "rtml-demo"),
                                               ("{{ var.json.rtml_demo.prefix }}", "{{ var.json.rtml_demo.job_prefix }}")])
def test_the_base_plan_renders_the_jobs_the_demo_always_ran(prefix, job_prefix):
    """A job rendered from the base plan is exactly the SQL of the chain's own names (the DAG's templated too)."""
    from airflow_rtml.demo.chain import Chain

    demo = Chain(prefix=prefix, job_prefix=job_prefix)
    plan = demo.plan(JOBS_DIR)
    for job in demo.jobs:
        assert demo.sql(job, JOBS_DIR, plan=plan) == demo.sql(job, JOBS_DIR), job


def test_a_clone_renders_its_new_jobs_over_the_shared_topics():
    """The clone's feature job reads the base's samples topic, writes its own topics with its window; its sample join
    reads the base's samples and offline features and the clone's real-time features; a shared node has no SQL."""
    from airflow_rtml.demo.chain import Chain

    demo = Chain()
    exp = clone(demo.plan(JOBS_DIR), "wide", ["features.feature_window_minutes=20"])
    features = demo.sql("features", JOBS_DIR, plan=exp)
    assert "'topic' = 'rtml.demo.samples'" in features
    assert "'topic' = 'rtml.demo.wide.user-features'" in features and "rtml.demo.user-features" not in features
    assert "INTERVAL '20' MINUTE" in features and "INTERVAL '10' MINUTE" not in features
    assert "rtml-demo-wide-features" in features
    joined = demo.sql("sample_features", JOBS_DIR, plan=exp)
    for topic in ("rtml.demo.samples", "rtml.demo.offline-user-features", "rtml.demo.wide.user-features",
                  "rtml.demo.wide.training-samples"):
        assert f"'topic' = '{topic}'" in joined, topic
    assert "/rtml_demo_wide.db/training_samples" in joined  # the clone's own Hive database
    assert demo.node_topics(exp) == ["rtml.demo.offline-item-features", "rtml.demo.offline-user-features",
                                     "rtml.demo.samples", "rtml.demo.wide.item-features",
                                     "rtml.demo.wide.training-samples", "rtml.demo.wide.user-features"]
    with pytest.raises(ChainError, match="shared with 'demo'"):
        demo.sql("label_join", JOBS_DIR, plan=exp)
    # a parameter another node reads: the samples' watermark delay follows the clone's attribution window
    exp2 = clone(demo.plan(JOBS_DIR), "late_attr", ["label_join.attribution_minutes=30"])
    assert f"INTERVAL '{30 * 60 + 2 * 60}' SECOND" in demo.sql("features", JOBS_DIR, plan=exp2)


def test_a_setting_two_nodes_declare_must_agree_in_a_clone():
    """lateness_seconds is the label join's and the archive's: a clone changing one of them would render jobs with
    another node's value. It is refused before anything starts, naming the fix; changing both is fine."""
    from airflow_rtml.demo.chain import Chain

    demo = Chain()
    one = clone(demo.plan(JOBS_DIR), "late1", ["label_join.lateness_seconds=120"])
    with pytest.raises(UnknownChainParameter, match=r"--set archive.lateness_seconds=VALUE --set "
                                                    r"label_join.lateness_seconds=VALUE"):
        demo.check_plan(one, JOBS_DIR)
    both = clone(demo.plan(JOBS_DIR), "late2", ["label_join.lateness_seconds=120", "archive.lateness_seconds=120"])
    demo.check_plan(both, JOBS_DIR)
    assert f"INTERVAL '{10 * 60 + 2 * 120}' SECOND" in demo.sql("features", JOBS_DIR, plan=both)
