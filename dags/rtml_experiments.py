"""Experiments of the demo chain: one DAG per clone, which starts the clone's new Flink jobs and shares the rest.

``rtml experiment clone demo NAME --set node.param=value`` (or the DAG ``rtml_clone_experiment`` below, from
Airflow) registers a clone in the experiment registry. Every registered experiment gets a DAG
``rtml_experiment_<name>``, generated from the chain as code (``airflow_rtml/demo/chain.py``): it creates the
clone's own topics and ensures each of its new stream nodes runs (adopt-or-submit, in the chain's order). The
shared nodes are the base's: their jobs run once, the clone reads their topics. ``rtml experiment stop NAME``
cancels what only the clone uses and drops the DAG.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path

from airflow.sdk import DAG, Connection, Param, task

from airflow_rtml.chain import ChainPlan, ExperimentRegistry
from airflow_rtml.chain.dags import experiment_dag_id, experiment_dags, stream_tasks
from airflow_rtml.demo.chain import Chain, submit_operator
from airflow_rtml.exceptions import ChainError

JOBS_DIR = Path(__file__).parent / "jobs" / "demo"
WAREHOUSE = os.environ.get("RTML_WAREHOUSE", "/tmp/rtml-warehouse")
# The registry the `rtml experiment` command writes (the local stack points both at .rtml/experiments.json).
REGISTRY = ExperimentRegistry(os.environ.get("RTML_EXPERIMENTS")
                              or Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser() / "rtml-experiments.json")
# The demo chain under its own names: the base experiments are cloned from. Kafka is the kafka_default connection.
DEMO = Chain(bootstrap="{{ conn.kafka_default.extra_dejson['bootstrap.servers'] }}")
BUILTIN = {"demo": DEMO.plan(JOBS_DIR)}


def start_new_nodes(plan: ChainPlan) -> None:
    """The experiment's tasks: its own topics first, then one adopt-or-submit task per new stream node."""

    @task
    def create_topics() -> list[str]:
        from airflow_rtml.demo.chain import ensure_topics

        bootstrap = Connection.get("kafka_default").extra_dejson["bootstrap.servers"]
        return ensure_topics(bootstrap, DEMO.node_topics(plan))

    jobs = stream_tasks(plan, lambda node: submit_operator(DEMO, plan, node, JOBS_DIR, WAREHOUSE))
    create_topics() >> list(jobs.values())


def check(plan: ChainPlan) -> None:
    """Refuse a plan whose jobs cannot be rendered (before anything starts)."""
    DEMO.check_plan(plan, JOBS_DIR)


try:
    PLANS = REGISTRY.experiments(BUILTIN)
except ChainError as unreadable:  # the registry file itself: say so in a DAG, keep the clone DAG below
    PLANS = {"registry_unreadable": unreadable}
experiment_dags(PLANS, start_new_nodes, validate=check,
                default_args={"retries": 2, "retry_delay": timedelta(seconds=5)})


with DAG(
    dag_id="rtml_clone_experiment",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
    params={
        "base": Param("demo", type="string", description="the chain to clone: demo, or a registered experiment"),
        "name": Param("", type="string", pattern="^[a-z][a-z0-9_]*$", description="the experiment's name"),
        "sets": Param([], type="array", description="NODE.PARAM=VALUE, e.g. features.feature_window_minutes=20"),
    },
    doc_md="Clone a chain from Airflow, as `rtml experiment clone BASE NAME --set ...` does: registers the clone "
           "(retry-safe: the same clone again changes nothing). Its DAG `rtml_experiment_<name>` appears when this "
           "file is parsed next; trigger it to start the clone's new jobs.",
    tags=["airflow-rtml", "experiment"],
):

    @task(retries=0)
    def register_clone(params: dict | None = None) -> dict:
        """Plan the clone and record it (a clear error, and nothing registered, for an unknown chain, node or
        parameter)."""
        plan, written = REGISTRY.clone(params["base"], params["name"], params["sets"], BUILTIN, check=check)
        return {"experiment": plan.name, "registered": written, "new": plan.owned, "shared": plan.shared,
                "dag_id": experiment_dag_id(plan.name)}

    register_clone()
