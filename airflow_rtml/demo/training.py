"""Hourly incremental CTR model of the demo: read exactly one closed event-time hour of training samples,
measure the current model on it before learning from it (progressive validation), update, register a version.

Guarantees: a version is a pure function of its hour and the previous version's artifact — version ``v`` is
hour ``v - 1`` since the chain's start, trained from artifact ``v - 1`` on that hour's samples read in a fixed
order (deduplicated by impression id: the sink is at-least-once) — so a retried or cleared run rewrites the
same artifact and registry entry instead of adding a version. Promotion compares candidate and current model on
the hour's holdout slice (every fifth impression by id hash, not trained on).
"""

from __future__ import annotations

import hashlib
import json
import math
import pickle
from pathlib import Path
from typing import Any

HOUR_MS = 3_600_000

from airflow_rtml.streams.topics import read_topic  # noqa: E402,F401 - the demo's readers use it from here


def hour_rows(rows: list[dict], start_ms: int, end_ms: int) -> list[dict]:
    """The rows of ``[start_ms, end_ms)``, one per impression, in a fixed order."""
    by_id = {r["imp_id"]: r for r in rows if start_ms <= r["ts_ms"] < end_ms}
    return [by_id[k] for k in sorted(by_id, key=lambda k: (by_id[k]["ts_ms"], k))]


def is_holdout(imp_id: str) -> bool:
    return int(hashlib.sha1(imp_id.encode()).hexdigest(), 16) % 5 == 0


def _features(row: dict) -> dict[str, Any]:
    def num(v):
        return -1.0 if v is None else float(v)

    return {f"user={row['user']}": 1, f"item={row['item']}": 1, f"bucket={row['bucket']}": 1,
            "user_ctr": num(row.get("user_ctr")), "item_ctr": num(row.get("item_ctr")),
            "user_seen": 0.0 if row.get("user_ctr") is None else 1.0,
            "item_seen": 0.0 if row.get("item_ctr") is None else 1.0,
            # Offline long-window features (batch → stream, joined as of the sample's time; None before any).
            "user_ctr_7d": num(row.get("user_ctr_7d")), "item_ctr_7d": num(row.get("item_ctr_7d"))}


def featurize(rows: list[dict]):
    from sklearn.feature_extraction import FeatureHasher

    hasher = FeatureHasher(n_features=2**14, input_type="dict")
    return hasher.transform(_features(r) for r in rows), [int(r["label"]) for r in rows]


def metrics(model, rows: list[dict]) -> dict[str, float | None]:
    """AUC and log loss of ``model`` on ``rows`` (None when undefined: no model, one class only)."""
    if model is None or not rows:
        return {"auc": None, "log_loss": None, "n": len(rows)}
    from sklearn.metrics import log_loss, roc_auc_score

    x, y = featurize(rows)
    p = model.predict_proba(x)[:, 1]
    auc = roc_auc_score(y, p) if 0 < sum(y) < len(y) else None
    return {"auc": None if auc is None else round(float(auc), 4),
            "log_loss": round(float(log_loss(y, p, labels=[0, 1])), 4), "n": len(rows)}


def _load(path: Path):
    return pickle.loads(path.read_bytes()) if path.exists() else None


def train_hour(rows: list[dict], *, version: int, models_dir: Path, hour_start_ms: int) -> dict:
    """Train version ``version`` from version ``version - 1`` on one hour; register it; promote if better.

    Returns the registry entry: ``{"version", "hour_start_ms", "artifact", "progressive": {auc, log_loss, n},
    "holdout": {...}, "current_holdout": {...}, "promoted", "samples", "positives"}``.
    """
    from sklearn.linear_model import SGDClassifier

    models_dir.mkdir(parents=True, exist_ok=True)
    previous = _load(models_dir / f"model-v{version - 1:04d}.pkl")
    registry_path = models_dir / "registry.json"
    registry = json.loads(registry_path.read_text()) if registry_path.exists() else {"versions": {}, "current": None}
    current_version = registry["current"]
    current = _load(models_dir / f"model-v{current_version:04d}.pkl") if current_version else None

    train = [r for r in rows if not is_holdout(r["imp_id"])]
    holdout = [r for r in rows if is_holdout(r["imp_id"])]
    progressive = metrics(previous, rows)  # measured before learning from this hour
    model = previous or SGDClassifier(loss="log_loss", alpha=1e-4, random_state=7)
    if train:
        x, y = featurize(train)
        model.partial_fit(x, y, classes=[0, 1])
    artifact = models_dir / f"model-v{version:04d}.pkl"
    artifact.write_bytes(pickle.dumps(model))

    candidate_m, current_m = metrics(model, holdout), metrics(current, holdout)
    earlier = registry["versions"].get(str(version))
    if earlier is not None:  # a re-run of this hour: same version, same promotion decision
        current_m, promoted = earlier["current_holdout"], earlier["promoted"]
    else:
        promoted = current is None or (candidate_m["auc"] or 0) >= (current_m["auc"] or 0)
    entry = {"version": version, "hour_start_ms": hour_start_ms, "artifact": str(artifact),
             "progressive": progressive, "holdout": candidate_m, "current_holdout": current_m,
             "promoted": promoted, "samples": len(rows), "positives": sum(int(r["label"]) for r in rows)}
    registry["versions"][str(version)] = entry
    if promoted and earlier is None:
        registry["current"] = version
    registry_path.write_text(json.dumps(registry, indent=2, sort_keys=True))
    return entry


def wilson_interval(clicks: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a click-through rate."""
    if n == 0:
        return (0.0, 1.0)
    p = clicks / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))
