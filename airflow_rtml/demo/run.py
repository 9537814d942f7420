"""``rtml demo``: the real-time ML chain end to end on the embedded stack.

Brings the stack up, points the demo DAGs at a fresh chain (Airflow Variable ``rtml_demo``), starts the four
Flink jobs through ``rtml_demo_streams``, plays the synthetic impression/click source on an accelerated
event-time clock, shows progress (watermark per stream, hours trained) and prints a summary checked against the
source's ground truth. Without ``--keep`` it stops what it started.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path


from airflow_rtml.demo.chain import Chain
from airflow_rtml.demo.training import HOUR_MS, read_topic
from airflow_rtml.exceptions import RtmlError
from airflow_rtml.local.airflow_api import AirflowApi
from airflow_rtml.local.stack import LocalStack
from airflow_rtml.progress import describe

DAGS = ("rtml_demo_streams", "rtml_demo_sample_hours", "rtml_demo_train_hourly", "rtml_demo_eval_hours",
        "rtml_demo_evaluate_hourly", "rtml_demo_archive_hours", "rtml_demo_archive_commit",
        "rtml_demo_offline_features", "feature_backfill", "rtml_demo_serve_model")
CONTINUOUS = ("rtml_demo_sample_hours", "rtml_demo_eval_hours", "rtml_demo_archive_hours")


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def feature_violations(training: list[dict], samples: list[dict], window_ms: int) -> dict[str, int]:
    """Check point-in-time correctness against a recomputation from the labelled samples.

    ``future``: a feature version later than the sample's event time (leakage). ``stale``: not the latest
    version at or before the sample's time (a missed update).
    """
    versions: dict[tuple[str, str], set[int]] = {}
    for s in samples:
        end = (s["ts_ms"] // window_ms + 1) * window_ms
        versions.setdefault(("user", s["user"]), set()).add(end)
        versions.setdefault(("item", s["item"]), set()).add(end)
    future = stale = 0
    for t in {r["imp_id"]: r for r in training}.values():
        for kind in ("user", "item"):
            got = t.get(f"{kind}_version_ms")
            expected = max((v for v in versions.get((kind, t[kind]), ()) if v <= t["ts_ms"]), default=None)
            if got is not None and got > t["ts_ms"]:
                future += 1
            elif got != expected:
                stale += 1
    return {"future": future, "stale": stale, "checked": len(training)}


def offline_violations(training: list[dict], chain: Chain, warehouse, start_ms: int) -> dict[str, int]:
    """The same check for the offline features: each sample must carry the version valid at its time — the
    latest of the empty start version and the published hourly versions (hour end + attribution window) at or
    before it — and the entity's row of that version if it has one; ``future`` counts later versions."""
    from airflow_rtml.offline.archive import data_files, hour_start_ms, read_partition

    attribution = chain.attribution_minutes * 60_000
    tables = chain.archive_tables(warehouse)
    members: dict[str, dict[int, set]] = {"user": {}, "item": {}}
    for kind in members:
        table = tables[f"offline_{kind}_features"]
        for dt_dir in sorted(Path(table.path).glob("dt=*")):
            for hour_dir in sorted(dt_dir.glob("hour=*")):
                values = (dt_dir.name[3:], hour_dir.name[5:])
                if data_files(hour_dir):
                    version = hour_start_ms(values) + HOUR_MS + attribution
                    members[kind][version] = set(read_partition(table, values, columns=[kind]).column(kind).to_pylist())
    future = stale = 0
    for t in {r["imp_id"]: r for r in training}.values():
        for kind, by_version in members.items():
            got = t.get(f"{kind}_offline_version_ms")
            valid = max((v for v in [start_ms, *by_version] if v <= t["ts_ms"]), default=None)
            expected = valid if valid in by_version and t[kind] in by_version[valid] else None
            if got is not None and got > t["ts_ms"]:
                future += 1
            elif got != expected:
                stale += 1
    return {"future": future, "stale": stale, "checked": len(training)}


def truth_check(reports: list[dict], ledgers) -> dict:
    """Every evaluated hour against the source's ground truth: clicks per bucket exactly, and impressions in
    total (on-time ones plus the hour's late ones, which the label join still labels). ``ok`` is False on any
    difference; the summary then names the hour and the numbers."""
    by_hour = {_iso(led.start_ms): led for led in ledgers}
    hours, ok = {}, True
    for r in reports:
        led = by_hour.get(r["hour_start"])
        if led is None:  # the extra hour the source plays so that the last trained one closes
            continue
        counted_clicks = {b: v["clicks"] for b, v in r["buckets"].items()}
        counted_imps = sum(v["impressions"] for v in r["buckets"].values())
        sent_imps = sum(led.impressions.values()) + led.late
        match = counted_clicks == dict(led.clicks) and counted_imps == sent_imps
        ok = ok and match
        hours[r["hour_start"]] = {"match": match, "clicks": counted_clicks, "clicks_sent": dict(led.clicks),
                                  "impressions": counted_imps, "impressions_sent": sent_imps}
    return {"ok": ok and bool(hours), "hours": hours}


def _since_window_closed(api: AirflowApi, since: str, window_asset: str, stream: str, done_asset: str,
                         window_of) -> dict[str, float]:
    """Seconds from a window's close (its watermark crossing, first observed: the window asset event's
    ``crossed_at_ms``) to the ``done_asset`` event that ``window_of(extra)`` maps to that window, per hour."""
    crossed: dict[int, int] = {}
    for ev in api.asset_events(window_asset, since):
        extra = ev.get("extra") or {}
        if extra.get("stream") == stream and extra.get("crossed_at_ms"):
            for w in extra.get("windows", []):
                crossed[w["start_ms"]] = extra["crossed_at_ms"]
    out = {}
    for ev in api.asset_events(done_asset, since):
        start = window_of(ev.get("extra") or {})
        if start in crossed:
            done = datetime.fromisoformat(ev["timestamp"].replace("Z", "+00:00")).timestamp()
            out[_iso(start)] = round(done - crossed[start] / 1000, 2)
    return out


def freshness(api: AirflowApi, chain: Chain, since: str) -> dict[str, float]:
    """Window closed (watermark crossing first observed) → model version registered, seconds per hour."""
    return _since_window_closed(
        api, since, "rtml_demo_training_sample_hours", chain.jobs["sample_features"], "rtml_demo_model",
        lambda extra: extra.get("hour_start_ms") if extra.get("chain") == chain.job_prefix else None)


def partition_visible(api: AirflowApi, chain: Chain, since: str) -> dict[str, float]:
    """Archive window closed (crossing first observed) → its Hive partitions registered, seconds per hour."""
    return _since_window_closed(
        api, since, "rtml_demo_archive_hours", chain.jobs["archive"], "rtml_demo_archive",
        lambda extra: extra.get("window_start_ms")
        if any(p.startswith(f"{chain.hive_db}.") for p in extra.get("partitions", {})) else None)


def run_demo(hours: int = 3, keep: bool = False, speedup: float = 60.0, seed: int = 7,
             progress: Callable[[str], None] = print, timeout_s: float | None = None, backfill_hours: int = 0,
             on_summary: Callable[[dict], None] | None = None, anomaly_hours: tuple[int, ...] = ()) -> dict:
    """Run the chain for ``hours`` event-time hours; return the summary (also printed by the CLI).

    ``on_summary`` gets the summary as soon as it is complete, before what the demo started is stopped (the CLI
    prints it then, so the reader does not wait for the teardown).

    ``anomaly_hours``: the source withholds half the clicks of these event-time hours (0 = the first), an anomaly
    the training's data-quality check must catch: exactly those hours are blocked (``summary["dqc"]``), the
    others train.

    ``backfill_hours``: then replay the first that many archived hours through the live feature SQL (DAG
    ``feature_backfill``) and check the result equals the live job's output row for row (``summary["backfill"]``).
    """
    from airflow_rtml.demo.source import DemoConfig, ledger_summary, run_source

    stack = LocalStack(progress=lambda m: progress(f"  {m}"))
    progress("[demo] bringing the local stack up")
    started = stack.up()
    tag = time.strftime("%m%d%H%M%S")
    chain = Chain(prefix=f"rtml.demo.{tag}", job_prefix=f"rtml-demo-{tag}", bootstrap=stack.cfg.kafka_bootstrap)
    source_cfg = replace(DemoConfig(seed=seed, speedup=speedup, drop_clicks_hours=tuple(anomaly_hours)),
                         impressions_topic=chain.topics["impressions"], clicks_topic=chain.topics["clicks"])
    api = AirflowApi(stack.cfg.airflow_url)
    api.set_variable("rtml_demo", {"prefix": chain.prefix, "job_prefix": chain.job_prefix,
                                   "bootstrap": chain.bootstrap, "start_ms": source_cfg.start_ms})
    api.wait_parsed(DAGS)
    for dag in CONTINUOUS:
        api.stop_runs(dag)  # a previous demo's producer run must not hold the slot
    for dag in DAGS:
        api.pause(dag, False)
    streams_run = api.trigger("rtml_demo_streams")
    progress(f"[demo] chain {chain.job_prefix}: starting its Flink jobs (DAG rtml_demo_streams) and the source "
             f"({hours} event-time hours at {speedup:.0f}x)")

    hour_keys = {_iso(source_cfg.start_ms + h * HOUR_MS) for h in range(hours)}
    since = datetime.now(timezone.utc).isoformat()
    ledgers: list = []
    source = threading.Thread(target=lambda: ledgers.extend(run_source(
        source_cfg, hours + 1, bootstrap=chain.bootstrap,  # one more hour: the last one closes on real data
        progress=lambda m: progress(f"[source] {m}"))), daemon=True)
    t0 = time.monotonic()
    source.start()
    deadline = t0 + (timeout_s or (hours + 1) * 3600 / speedup + 600)
    trained = evaluated = []
    try:
        while time.monotonic() < deadline:
            trained = api.partition_runs("rtml_demo_train_hourly", hour_keys, since)
            evaluated = api.partition_runs("rtml_demo_evaluate_hourly", hour_keys, since)
            offline = api.partition_runs("rtml_demo_offline_features", hour_keys, since)
            marks = " ".join(f"{k}={describe(_progress(stack, name))}" for k, name in chain.jobs.items())
            streams_state = api.run_state("rtml_demo_streams", streams_run)
            progress(f"[demo {time.monotonic() - t0:5.0f}s] hours trained {len(trained)}/{hours}, evaluated "
                     f"{len(evaluated)}/{hours}, offline features {len(offline)}/{hours} | streams: {streams_state} "
                     f"| {marks}")
            if streams_state == "failed":
                raise RtmlError(
                    f"DAG rtml_demo_streams failed (run {streams_run}): "
                    f"{api.failed_tasks('rtml_demo_streams', streams_run)}. See its task logs in the Airflow UI "
                    f"({stack.cfg.airflow_url}).")
            if len(trained) >= hours and len(evaluated) >= hours and len(offline) >= hours:
                break
            time.sleep(10)
        source.join(timeout=60)
        summary = _summary(stack, chain, ledgers, ledger_summary(ledgers[:hours]), trained, evaluated)
        summary["hive"] = hive_summary(stack, chain, sorted(hour_keys))
        summary["dqc"] = dqc_summary(stack, chain, sorted(hour_keys))
        summary["freshness_s"] = freshness(api, chain, since)
        summary["partition_visible_s"] = partition_visible(api, chain, since)
        if backfill_hours:
            summary["backfill"] = run_backfill(api, source_cfg.start_ms, min(backfill_hours, hours), progress)
        summary["wall_seconds"] = round(time.monotonic() - t0, 1)
        summary["stack_stops_now"] = bool(started) and not keep
        if on_summary is not None:
            on_summary(summary)
    finally:
        if not keep:
            for dag in CONTINUOUS:
                api.pause(dag, True)
                api.stop_runs(dag)
            _cancel_jobs(stack, chain)
            if started:
                progress("[demo] stopping the services this demo started")
                stack.down()
    return summary


def run_backfill(api: AirflowApi, start_ms: int, hours: int, progress: Callable[[str], None],
                 timeout_s: float = 900) -> dict:
    """Trigger ``feature_backfill`` over the chain's first ``hours`` hours; its verify task's equality reports."""
    conf = {"start": _iso(start_ms), "end": _iso(start_ms + hours * HOUR_MS), "allow_live_overlap": True}
    progress(f"[demo] backfilling {conf['start']} .. {conf['end']} through the live feature SQL (DAG feature_backfill)")
    run_id, t0 = api.trigger("feature_backfill", conf), time.monotonic()
    state = "queued"
    while state not in ("success", "failed") and time.monotonic() - t0 < timeout_s:
        time.sleep(5)
        state = api.run_state("feature_backfill", run_id)
    result = api.xcom("feature_backfill", run_id, "backfill_features") or {}
    reports = api.xcom("feature_backfill", run_id, "verify_equal_to_live") or {}
    out = {"range": [conf["start"], conf["end"]], "state": state, "seconds": round(time.monotonic() - t0, 1),
           "input_records": result.get("input_records"), "steps_s": result.get("seconds"),
           "equal": state == "success" and bool(reports) and all(r.get("equal") for r in reports.values()),
           "reports": {k: {f: r[f] for f in ("matched", "missing", "extra", "missing_ratio", "extra_ratio",
                                             "duplicates_backfill")}
                           | {"mismatch": {n: s["mismatches"] for n, s in r["features"].items()},
                              "smape": {n: s["smape"] for n, s in r["features"].items()}}
                       for k, r in reports.items()}}
    if state != "success":
        out["failed_tasks"] = api.failed_tasks("feature_backfill", run_id)
    return out


def _progress(stack: LocalStack, job_name: str) -> int | None:
    import asyncio
    import os

    from airflow_rtml.hooks.flink import FlinkRestHook
    from airflow_rtml.streams.flink import FlinkStreamReader

    # REST: one probe-free read per progress line (auto-detection would probe and log on every fresh reader).
    os.environ.setdefault("AIRFLOW_CONN_FLINK_DEFAULT",
                          f"flink-rest://127.0.0.1:{stack.cfg.ports.flink_rest}?watermark_source=rest")
    reader = FlinkStreamReader(flink_conn_id="flink_default", job_name=job_name, job_id=None, vertex=None,
                               metric="currentInputWatermark", commit_aware=False, poll_interval=1.0,
                               hook=FlinkRestHook())
    return asyncio.run(reader.poll_once()).progress_ms  # None while the job is missing or unreadable


def _cancel_jobs(stack: LocalStack, chain: Chain) -> None:
    from airflow_rtml.hooks.flink import FlinkRestHook

    hook = FlinkRestHook()
    for name in chain.jobs.values():
        for job in hook.find_jobs_by_name(name):
            if not job.state.is_terminal:
                hook.cancel_job(job.job_id)


def dqc_summary(stack: LocalStack, chain: Chain, hour_keys: list[str]) -> dict:
    """Per hour, the training samples' data-quality report (``_DQC.json`` beside the partition): rows, blocked and
    warning rules; None for an hour not checked."""
    from airflow_rtml.offline.archive import hour_values, read_window_report

    table = chain.archive_tables(stack.cfg.warehouse_dir)["training_samples"]
    out = {}
    for key in hour_keys:
        start_ms = int(datetime.fromisoformat(key.replace("Z", "+00:00")).timestamp() * 1000)
        report = read_window_report(table, hour_values(start_ms))
        out[key] = None if report is None else {
            "rows": report["rows"], "blocked": report["blocked"], "warnings": report["warnings"],
            "label_join_rate": next((r["value"] for r in report["results"] if r["rule"] == "label_join_rate"), None)}
    return out


def hive_summary(stack: LocalStack, chain: Chain, hour_keys: list[str]) -> dict:
    """Per hour: which of the chain's Hive partitions are registered (and their rows); the archive's late count."""
    from airflow_rtml.offline.archive import hour_values, read_partition
    from airflow_rtml.offline.metastore import metastore_client, partition_exists
    from airflow_rtml.sensors.watermark import window_from_partition_key

    tables = chain.archive_tables(stack.cfg.warehouse_dir)
    out: dict[str, dict] = {}
    with metastore_client("127.0.0.1", stack.cfg.ports.hive_metastore) as client:
        for key in hour_keys:
            values = hour_values(window_from_partition_key(key, timedelta(hours=1)).start_ms)
            row = {}
            for name, table in tables.items():
                registered = partition_exists(client, table.db, table.table, values)
                row[name] = read_partition(table, values).num_rows if registered else None
            out[key] = row
    late = read_topic(chain.bootstrap, chain.topics["archive_late"])
    late_per_hour: dict[str, dict[str, int]] = {}
    for r in late:
        table = r["source_topic"].rsplit(".", 1)[-1]
        key = _iso(r["ts_ms"] // HOUR_MS * HOUR_MS)
        late_per_hour.setdefault(key, {}).setdefault(table, 0)
        late_per_hour[key][table] += 1
    return {"database": chain.hive_db, "partitions": out, "archive_late": len(late), "archive_late_per_hour": late_per_hour}


def _summary(stack, chain: Chain, ledgers, truth: dict, trained: list[dict], evaluated: list[dict]) -> dict:
    from airflow_rtml.demo.evaluation import hour_report  # noqa: F401 - reports were written by the DAG

    demo_dir = stack.cfg.home / "demo" / chain.job_prefix
    registry_path = demo_dir / "models" / "registry.json"
    registry = json.loads(registry_path.read_text()) if registry_path.exists() else {"versions": {}, "current": None}
    reports = [json.loads(p.read_text()) for p in sorted((demo_dir / "reports").glob("eval-*.json"))]
    topics = chain.topics
    dead = read_topic(chain.bootstrap, topics["dead_letter"])
    late = read_topic(chain.bootstrap, topics["late"])
    samples = read_topic(chain.bootstrap, topics["samples"])
    training = read_topic(chain.bootstrap, topics["training_samples"])
    trained_ms = {int(datetime.fromisoformat(r["partition_key"].replace("Z", "+00:00")).timestamp() * 1000)
                  for r in trained}
    in_hours = [t for t in training if t["ts_ms"] // HOUR_MS * HOUR_MS in trained_ms]
    return {
        "chain": chain.job_prefix,
        "prefix": chain.prefix,
        "windows_closed": sorted(r.get("partition_key") for r in trained),
        "dag_runs": {"train": len(trained), "evaluate": len(evaluated)},
        "model_versions": [
            {"version": int(v), "hour": _iso(e["hour_start_ms"]), "progressive_auc": e["progressive"]["auc"],
             "holdout_auc": e["holdout"]["auc"], "log_loss": e["progressive"]["log_loss"], "promoted": e["promoted"]}
            for v, e in sorted(registry["versions"].items(), key=lambda kv: int(kv[0]))],
        "current_model": registry["current"],
        # what the promotion-scheduled DAG rtml_demo_serve_model deployed (it may lag the last promotion by seconds)
        "serving": json.loads((demo_dir / "models" / "serving.json").read_text())["version"]
        if (demo_dir / "models" / "serving.json").exists() else None,
        "ctr_per_bucket": {r["hour_start"]: {b: v["ctr"] for b, v in r["buckets"].items()} for r in reports},
        "winner_per_hour": {r["hour_start"]: r["winner"] for r in reports},
        "truth_check": truth_check(reports, [led for led in ledgers if led.start_ms in trained_ms]),
        "truth": truth,
        # Over every hour the source sent (the run plays one hour more than it trains, so the last one closes).
        "dead_letter": {"counted": len(dead), "injected": sum(led.malformed for led in ledgers)},
        "late": {"counted": len(late), "injected": sum(led.late for led in ledgers)},
        "feature_crossing": feature_violations(in_hours, samples, chain.feature_window_minutes * 60_000),
        "offline_feature_crossing": offline_violations(in_hours, chain, stack.cfg.warehouse_dir,
                                                       min(trained_ms, default=0)),
        "reports_dir": str(demo_dir / "reports"),
        "airflow_ui": stack.cfg.airflow_url,
    }


def print_summary(s: dict, out: Callable[[str], None] = print) -> None:
    out("")
    out(f"== airflow-rtml demo summary (chain {s['chain']}, {s['wall_seconds']} s) ==")
    out(f"event-time hours closed (each trained unless its data quality blocked it): {len(s['windows_closed'])} "
        f"{s['windows_closed']}")
    out(f"DAG runs: training {s['dag_runs']['train']}, evaluation {s['dag_runs']['evaluate']}; current model "
        f"v{s.get('current_model')}, serving v{s.get('serving')} (deployed on its promotion event)")
    for m in s["model_versions"]:
        out(f"  model v{m['version']} (hour {m['hour']}): progressive AUC {m['progressive_auc']}, holdout AUC "
            f"{m['holdout_auc']}, log loss {m['log_loss']}{', promoted' if m['promoted'] else ''}")
    for hour, ctr in s["ctr_per_bucket"].items():
        out(f"  CTR {hour}: " + ", ".join(f"{b} {v:.4f}" for b, v in sorted(ctr.items()))
            + f" → winner {s['winner_per_hour'][hour]}")
    out(f"truly better bucket: {s['truth'].get('winner')}")
    tc = s.get("truth_check", {})
    for hour, h in sorted(tc.get("hours", {}).items()):
        if not h["match"]:
            out(f"  MISMATCH {hour}: counted clicks {h['clicks']} / impressions {h['impressions']}, the source sent "
                f"clicks {h['clicks_sent']} / impressions {h['impressions_sent']}")
    out("evaluation vs the source's ground truth: " + ("every hour matches exactly" if tc.get("ok") else "DIFFERS"))
    out(f"dead-letter: {s['dead_letter']['counted']} counted / {s['dead_letter']['injected']} injected; late: "
        f"{s['late']['counted']} counted / {s['late']['injected']} injected")
    if s.get("freshness_s"):
        out("freshness (window closed → model version registered): "
            + ", ".join(f"{h[11:16]} {v:.1f}s" for h, v in sorted(s["freshness_s"].items())))
    if s.get("partition_visible_s"):
        out("archive window closed → Hive partitions registered: "
            + ", ".join(f"{h[11:16]} {v:.1f}s" for h, v in sorted(s["partition_visible_s"].items())))
    if s.get("hive"):
        h = s["hive"]
        out(f"Hive partitions registered (database {h['database']}; rows, '-' = not registered):")
        for hour, row in sorted(h["partitions"].items()):
            out(f"  {hour}: " + ", ".join(f"{t} {'-' if n is None else n}" for t, n in row.items()))
        out(f"records behind the archive's watermark (kept in the archive-late topic): {h['archive_late']}")
    if s.get("dqc"):
        out("data quality of the training samples per hour (blocked hours do not train):")
        for hour, r in sorted(s["dqc"].items()):
            out(f"  {hour}: " + ("not checked" if r is None else
                                 f"{r['rows']} rows, label-join rate {r['label_join_rate']}, "
                                 + (f"BLOCKED by {', '.join(r['blocked'])}" if r["blocked"] else "passed")
                                 + (f" (warnings: {', '.join(r['warnings'])})" if r["warnings"] else "")))
    fc = s["feature_crossing"]
    out(f"feature-crossing violations: {fc['future']} future, {fc['stale']} stale, of {fc['checked']} samples")
    if s.get("offline_feature_crossing"):
        oc = s["offline_feature_crossing"]
        out(f"offline-feature crossing violations: {oc['future']} future, {oc['stale']} stale, of {oc['checked']} "
            "samples")
    if s.get("backfill"):
        b = s["backfill"]
        out(f"backfill {b['range'][0]} .. {b['range'][1]} (live feature SQL replayed, {b['input_records']} samples, "
            f"{b['seconds']} s): " + ("EQUAL to the live output" if b["equal"] else f"DIFFERS ({b['state']})"))
        for sink, r in b["reports"].items():
            out(f"  {sink}: {r['matched']} rows matched, missing {r['missing']}, extra {r['extra']}, mismatches "
                + ", ".join(f"{n} {m}" for n, m in r["mismatch"].items()))
    ui = ("(stopping now with the stack: run with --keep to explore it)" if s.get("stack_stops_now")
          else "(DAGs tagged 'demo')")
    out(f"reports: {s['reports_dir']}   Airflow UI: {s['airflow_ui']} {ui}")
