"""docs/per-window-scheduling.md: stream → batch, event-driven — an ``AssetWatcher`` runs the trigger in the
triggerer and emits one asset event per closed one-minute window of the Flink job ``training-samples``."""

from datetime import datetime

from airflow.sdk import DAG, Asset, AssetWatcher, task
from airflow_rtml.triggers.watermark import FlinkWindowEventTrigger

CLOSED_MINUTES = Asset(name="sample_minutes", uri="rtml://samples/minutes", watchers=[AssetWatcher(
    name="closed_minutes", trigger=FlinkWindowEventTrigger(job_name="training-samples", window_size_ms=60_000))])

with DAG("per_closed_minute", schedule=[CLOSED_MINUTES], start_date=datetime(2026, 1, 1), catchup=False):
    @task
    def train(triggering_asset_events=None):
        for event in triggering_asset_events[CLOSED_MINUTES]:   # one asset event per closed window
            window = event.extra["payload"]   # {"stream", "job_id", "window_start(_ms)", "window_end(_ms)", "progress_ms"}
            print(f"training on [{window['window_start']}, {window['window_end']})")

    train()
