"""Hourly A/B evaluation of the demo: CTR per experiment bucket with a 95 % interval and the winner, written as
a small report (JSON per hour, and a PNG of CTR per bucket over event time)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from airflow_rtml.demo.training import wilson_interval


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def hour_report(rows: list[dict], window_start_ms: int, reports_dir: Path) -> dict:
    """The report of one closed hour from the evaluation job's rows (at-least-once: duplicates collapse)."""
    buckets: dict[str, dict] = {}
    for r in rows:
        if r["window_start_ms"] == window_start_ms:
            buckets[r["bucket"]] = {"impressions": int(r["impressions"]), "clicks": int(r["clicks"])}
    for b in buckets.values():
        b["ctr"] = round(b["clicks"] / b["impressions"], 5) if b["impressions"] else None
        b["ci95"] = [round(x, 5) for x in wilson_interval(b["clicks"], b["impressions"])]
    ranked = sorted(buckets, key=lambda k: buckets[k]["ctr"] or 0, reverse=True)
    winner = ranked[0] if ranked else None
    significant = len(ranked) > 1 and buckets[ranked[0]]["ci95"][0] > buckets[ranked[1]]["ci95"][1]
    report = {"hour_start": _iso(window_start_ms), "window_start_ms": window_start_ms, "buckets": buckets,
              "winner": winner, "significant": significant}
    reports_dir.mkdir(parents=True, exist_ok=True)
    (reports_dir / f"eval-{_iso(window_start_ms)}.json").write_text(json.dumps(report, indent=2, sort_keys=True))
    plot(reports_dir)
    return report


def plot(reports_dir: Path) -> Path:
    """CTR per bucket over event time, with 95 % intervals, from every hourly report so far."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reports = sorted((json.loads(p.read_text()) for p in reports_dir.glob("eval-*.json")),
                     key=lambda r: r["window_start_ms"])
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for bucket in sorted({b for r in reports for b in r["buckets"]}):
        pts = [(r["hour_start"][5:16], r["buckets"][bucket]) for r in reports if bucket in r["buckets"]]
        ctr = [b["ctr"] for _, b in pts]
        err = [[c - b["ci95"][0] for c, (_, b) in zip(ctr, pts)], [b["ci95"][1] - c for c, (_, b) in zip(ctr, pts)]]
        ax.errorbar([t for t, _ in pts], ctr, yerr=err, marker="o", capsize=3, label=bucket)
    ax.set_xlabel("event-time hour (UTC)")
    ax.set_ylabel("CTR (95 % interval)")
    ax.set_title("CTR per experiment bucket")
    ax.legend()
    fig.tight_layout()
    out = reports_dir / "ctr_per_bucket.png"
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
