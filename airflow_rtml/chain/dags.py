"""Airflow DAGs from a chain plan: the tasks that start its stream nodes, and one DAG per registered experiment.

The chain core (:mod:`airflow_rtml.chain`) says *what* runs under which name; this module turns a plan into Airflow
tasks. How one node starts (its operator, SQL, jars) is the caller's ``submit`` function; the order between the
nodes comes from the chain's edges:

- **stream → stream**: the downstream job's task runs after the upstream job's (adopt-or-submit, so a retry never
  starts a second job); a shared upstream node already runs, so its edge needs no task.
- Only the nodes the plan **owns** get a task: a clone never starts a second copy of a shared job.

``experiment_dags`` builds one DAG per experiment of a registry (``rtml experiment clone``), tagged with the
experiment and its base. A registered entry the code no longer gives (its base's SQL changed since the clone)
becomes a DAG whose one task fails saying so: it never hides the other experiments' DAGs.

This module imports Airflow; the chain core does not.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from airflow.sdk import DAG, BaseOperator, task

from airflow_rtml.chain.clone import ChainPlan, NodeInstance
from airflow_rtml.exceptions import ChainError


def stream_tasks(plan: ChainPlan, submit: Callable[[NodeInstance], BaseOperator]) -> dict[str, BaseOperator]:
    """One task per stream node ``plan`` owns (``submit(instance)`` builds it), upstream first, each after the tasks
    of the owned stream nodes it reads from. Call it inside a DAG's context."""
    tasks = {n: submit(plan.instances[n]) for n in plan.owned if plan.instances[n].kind.streaming}
    for edge in plan.definition.edges():
        if edge.upstream in tasks and edge.downstream in tasks:
            tasks[edge.upstream] >> tasks[edge.downstream]
    return tasks


def experiment_dag_id(name: str) -> str:
    """The DAG id of experiment ``name``'s DAG."""
    return f"rtml_experiment_{name}"


def describe_plan(plan: ChainPlan) -> str:
    """A Markdown table of the plan's nodes: new or shared (with whom), job name, outputs."""
    rows = ["| node | kind | runs as | outputs |", "|---|---|---|---|"]
    for n in plan.definition.order:
        inst = plan.instances[n]
        how = (f"new: `{inst.job_name}`" if inst.job_name else "new") if inst.owner == plan.name else \
            f"shared with `{inst.owner}`"
        rows.append(f"| {n} | {inst.kind.value} | {how} | {', '.join(f'`{v}`' for v in inst.outputs.values())} |")
    return "\n".join(rows)


def experiment_dags(plans: Mapping[str, ChainPlan | ChainError], build: Callable[[ChainPlan], Any], *,
                    validate: Callable[[ChainPlan], Any] | None = None,
                    tags: tuple[str, ...] = ("airflow-rtml", "experiment"), **dag_kwargs: Any) -> dict[str, DAG]:
    """One DAG per experiment of ``plans`` (:meth:`~airflow_rtml.chain.ExperimentRegistry.experiments`):
    ``build(plan)`` adds its tasks inside the DAG's context (e.g. with :func:`stream_tasks`).

    Each DAG is ``rtml_experiment_<name>``, run on demand (``schedule=None``), tagged ``experiment:<name>`` and
    ``base:<base>``, with the plan's table as its documentation. A refused entry (or one ``validate(plan)``
    refuses with a ``ChainError``) gets a DAG whose one task fails with the refusal, saying how to fix it; the
    other experiments' DAGs are unaffected.
    """
    dags: dict[str, DAG] = {}
    for name, plan in sorted(plans.items()):
        kwargs = {"schedule": None, "start_date": datetime(2026, 1, 1, tzinfo=timezone.utc), "catchup": False,
                  **dag_kwargs}
        if validate is not None and not isinstance(plan, ChainError):
            try:
                validate(plan)
            except ChainError as e:
                plan = e
        if isinstance(plan, ChainError):
            with DAG(dag_id=experiment_dag_id(name), tags=[*tags, f"experiment:{name}"], doc_md=str(plan),
                     **kwargs) as dag:
                _refused(str(plan))
            dags[dag.dag_id] = dag
            continue
        with DAG(dag_id=experiment_dag_id(name), tags=[*tags, f"experiment:{name}", f"base:{plan.base}"],
                 doc_md=f"Experiment `{name}`, cloned from `{plan.base}` with "
                        f"`{dict((k, dict(v)) for k, v in plan.sets.items())}`: its new nodes start here, the "
                        f"shared ones are read.\n\n{describe_plan(plan)}", **kwargs) as dag:
            build(plan)
        dags[dag.dag_id] = dag
    return dags


def _refused(reason: str) -> None:
    @task(task_id="refused", retries=0)
    def refused() -> None:
        raise ChainError(reason)

    refused()


__all__ = ["describe_plan", "experiment_dag_id", "experiment_dags", "stream_tasks"]
