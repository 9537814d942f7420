"""docs/experiments.md: a chain defined once in code, and a clone that shares its unchanged upstream node.

The chain reads the demo's SQL files (``dags/jobs/demo``); the DAG only shows the clone's plan (what is new, what
is shared, under which names): starting a clone's new nodes from Airflow is not built yet (issue 14)."""

from datetime import datetime
from pathlib import Path

from airflow.sdk import DAG, task
from airflow_rtml.chain import ChainDefinition, Naming, Node, clone, plan_chain

JOBS = Path(__file__).resolve().parents[2] / "jobs" / "demo"

chain = ChainDefinition(name="demo", root=JOBS, sources=("impressions", "clicks"), nodes=[
    Node("label_join", "stream", ("impressions", "clicks"), ("samples",), Path("label_join.sql"),
         {"attribution_minutes": 10}),
    Node("features", "stream", ("samples",), ("user_features",), Path("features.sql"),
         {"feature_window_minutes": 10}),
    Node("training", "train", ("user_features",), ("model",), "my_pkg.training"),
])
base = plan_chain(chain, Naming(topic_prefix="rtml.demo", job_prefix="rtml-demo"))
exp = clone(base, "wide_window", ["features.feature_window_minutes=20"])
exp.shared   # ['label_join']            — the base's job and topic, no second job
exp.owned    # ['features', 'training']  — new job rtml-demo-wide-window-features, topic rtml.demo.wide-window.*

with DAG("experiment_plan", schedule=None, start_date=datetime(2026, 1, 1), catchup=False):

    @task
    def show_plan() -> dict:
        return exp.to_json()

    show_plan()
