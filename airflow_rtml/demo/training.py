"""Hourly incremental CTR model of the demo: read exactly one closed event-time hour of training samples,
measure the current model on it before learning from it (progressive validation), update, register a version.

Guarantees: a version is a pure function of its hour and the previous version's artifact — version ``v`` is
hour ``v - 1`` since the chain's start, trained from the newest earlier artifact (``v - 1``, or the one before
the hours a data-quality rule blocked: a blocked hour has no version) on that hour's samples read in a fixed
order (deduplicated by impression id: the sink is at-least-once) — so a retried or cleared run rewrites the
same artifact and registry entry instead of adding a version. Promotion compares candidate and current model on
the hour's holdout slice (every fifth impression by id hash, not trained on).
"""

from __future__ import annotations

import hashlib
import math
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

HOUR_MS = 3_600_000

from airflow_rtml.models import ModelRegistry, PromotionRule  # noqa: E402
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


class PreviousVersionNotReady(RuntimeError):
    """The version to train from is not trained yet, and its hour was not blocked either: retry later."""


def previous_version(version: int, models_dir: Path, blocked: Callable[[int], bool]) -> int:
    """The version that version ``version`` trains from: the newest earlier version trained, skipping the hours
    data-quality checks blocked (``blocked(v)``: was version ``v``'s hour blocked?). 0 when every earlier hour
    was blocked (train from scratch). Raises :class:`PreviousVersionNotReady` when an earlier hour is neither
    trained nor blocked yet: versions are trained in hour order, so a retry waits for it."""
    for v in range(version - 1, 0, -1):
        if (models_dir / f"model-v{v:04d}.pkl").exists():
            return v
        if not blocked(v):
            raise PreviousVersionNotReady(
                f"model version {v} (hour {v - 1} of the chain) is not trained yet and its hour was not blocked by "
                "a data-quality rule: versions train in hour order, so this retries. If that hour's run failed, "
                "clear it (its data-quality check or training task) in rtml_demo_train_hourly, then this hour's")
    return 0


def train_hour(rows: list[dict], *, version: int, models_dir: Path, hour_start_ms: int,
               previous_version: int | None = None, rule: PromotionRule | None = None) -> dict:
    """Train version ``version`` from ``previous_version`` (default ``version - 1``; 0: none) on one hour; register
    it in the chain's :class:`~airflow_rtml.models.ModelRegistry`; promote it when ``rule`` (the training node's
    :class:`~airflow_rtml.models.PromotionRule`; default: holdout AUC at least the current version's) says so.

    Returns the registry entry: ``{"version", "hour_start_ms", "artifact", "previous_version", "progressive":
    {auc, log_loss, n}, "holdout": {...}, "current_holdout": {...}, "promoted", "samples", "positives"}``.
    """
    from sklearn.linear_model import SGDClassifier

    models_dir.mkdir(parents=True, exist_ok=True)
    previous_version = version - 1 if previous_version is None else previous_version
    previous = _load(models_dir / f"model-v{previous_version:04d}.pkl") if previous_version else None
    registry = ModelRegistry(models_dir / "registry.json")
    current_version = registry.current()
    current = _load(Path(current_version.artifact)) if current_version else None

    train = [r for r in rows if not is_holdout(r["imp_id"])]
    holdout = [r for r in rows if is_holdout(r["imp_id"])]
    progressive = metrics(previous, rows)  # measured before learning from this hour
    model = previous or SGDClassifier(loss="log_loss", alpha=1e-4, random_state=7)
    if train:
        x, y = featurize(train)
        model.partial_fit(x, y, classes=[0, 1])
    artifact = models_dir / f"model-v{version:04d}.pkl"
    artifact.write_bytes(pickle.dumps(model))

    candidate_m = metrics(model, holdout)
    current_m = metrics(current, holdout) if current is not None else None
    promoted = (rule or PromotionRule()).decide(candidate_m, current_m)
    entry = {"version": version, "hour_start_ms": hour_start_ms, "artifact": str(artifact),
             "previous_version": previous_version, "progressive": progressive, "holdout": candidate_m,
             "current_holdout": current_m or metrics(None, holdout), "promoted": promoted, "samples": len(rows),
             "positives": sum(int(r["label"]) for r in rows)}
    return registry.record(entry)  # a re-run of this hour keeps its first promotion decision


def wilson_interval(clicks: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval of a click-through rate."""
    if n == 0:
        return (0.0, 1.0)
    p = clicks / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))
