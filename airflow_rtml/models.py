"""Model versions of a chain: what was trained on which window, its metrics and artifact, and which one is current.

One :class:`ModelRegistry` per chain (a base or an experiment) is a JSON file beside its artifacts. Each trained
window adds one **version** (training of hour ``h`` is version ``h + 1`` in the demo); a re-run of the same window
rewrites that version with the same promotion decision, so retries never add versions. A version is
**promoted** (becomes current) when the chain's :class:`PromotionRule` says the candidate beats the current one
on the window's holdout. The rule is declared with the training node, as its parameters (``promotion_metric``,
``promotion_min_gain``, ``promotion_lower_is_better``), so an experiment can change it with ``--set``.

In Airflow, the training task emits a model asset event per version, and a promotion an event of the promotion
asset, so serving or notification DAGs can be scheduled on promotions only (see ``dags/rtml_demo_training.py``).

Pure Python (stdlib only).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from airflow_rtml.exceptions import ModelRegistryError


@dataclass(frozen=True)
class PromotionRule:
    """Promote a candidate when its holdout ``metric`` beats the current version's by at least ``min_gain``
    (higher is better, unless ``lower_is_better``). The first version is always promoted; a candidate whose
    metric is undefined (one class only in the holdout) never is, unless there is no current version."""

    metric: str = "auc"
    min_gain: float = 0.0
    lower_is_better: bool = False

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> PromotionRule:
        """The rule declared in a training node's parameters (missing ones keep the defaults)."""
        return cls(metric=str(params.get("promotion_metric", cls.metric)),
                   min_gain=float(params.get("promotion_min_gain", cls.min_gain)),
                   lower_is_better=bool(params.get("promotion_lower_is_better", cls.lower_is_better)))

    def decide(self, candidate: Mapping[str, Any], current: Mapping[str, Any] | None) -> bool:
        """Whether a candidate with metrics ``candidate`` replaces the current version (metrics ``current``,
        measured on the same holdout; None when there is no current version)."""
        if current is None:
            return True
        new, old = candidate.get(self.metric), current.get(self.metric)
        if new is None:
            return False
        if old is None:
            return True
        gain = (old - new) if self.lower_is_better else (new - old)
        return gain >= self.min_gain

    def describe(self) -> str:
        way = "lower" if self.lower_is_better else "higher"
        return f"promote when holdout {self.metric} is {way} than the current version's by >= {self.min_gain:g}"


@dataclass(frozen=True)
class ModelVersion:
    """One trained version: its window, artifact, metrics and whether it was promoted."""

    version: int
    window_start_ms: int
    artifact: str
    promoted: bool
    previous_version: int | None = None  # the version it was trained from (0: from scratch)
    metrics: Mapping[str, Any] = field(default_factory=dict)  # e.g. {"holdout": {...}, "progressive": {...}}

    @classmethod
    def from_entry(cls, entry: Mapping[str, Any]) -> ModelVersion:
        return cls(version=int(entry["version"]), window_start_ms=int(entry["hour_start_ms"]),
                   artifact=str(entry["artifact"]), promoted=bool(entry["promoted"]),
                   previous_version=entry.get("previous_version"),
                   metrics={k: entry[k] for k in ("holdout", "progressive", "current_holdout") if k in entry})


class ModelRegistry:
    """The versions of one chain's model, in the JSON file ``path`` (``{"versions": {...}, "current": N}``)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {"versions": {}, "current": None}
        except ValueError as e:
            raise ModelRegistryError(f"The model registry {self.path} is not valid JSON ({e}). To fix this, "
                                     "restore it or retrain: every version is rewritten by re-running its window.")
        if not isinstance(data, dict) or not isinstance(data.get("versions"), dict):
            raise ModelRegistryError(f"{self.path} has no 'versions' object: not a model registry file.")
        return data

    def versions(self) -> list[ModelVersion]:
        """Every version, oldest first."""
        return [ModelVersion.from_entry(e) for _, e in sorted(self._read()["versions"].items(), key=lambda kv: int(kv[0]))]

    def get(self, version: int) -> ModelVersion | None:
        entry = self._read()["versions"].get(str(version))
        return None if entry is None else ModelVersion.from_entry(entry)

    def current(self) -> ModelVersion | None:
        """The promoted version serving would use (None before the first)."""
        data = self._read()
        if data.get("current") is None:
            return None
        entry = data["versions"].get(str(data["current"]))
        if entry is None:
            raise ModelRegistryError(f"{self.path} names version {data['current']} current, but has no such version. "
                                     "To fix this, re-run that version's window (its training rewrites it).")
        return ModelVersion.from_entry(entry)

    def entry(self, version: int) -> dict[str, Any] | None:
        """The raw registry entry of ``version`` (what training wrote: every metric)."""
        return self._read()["versions"].get(str(version))

    def record(self, entry: Mapping[str, Any]) -> dict[str, Any]:
        """Write version ``entry["version"]`` (the JSON file is replaced atomically). A version recorded before
        keeps its promotion decision: a re-run of a window changes nothing about which version is current."""
        data = self._read()
        key = str(int(entry["version"]))
        earlier = data["versions"].get(key)
        entry = dict(entry)
        if earlier is not None:
            entry["promoted"], entry["current_holdout"] = earlier["promoted"], earlier.get("current_holdout")
        elif entry["promoted"]:
            data["current"] = int(entry["version"])
        data["versions"][key] = entry
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True))
        os.replace(tmp, self.path)
        return entry


def chain_registries(root: str | Path, filename: str = "registry.json") -> dict[str, ModelRegistry]:
    """Chain name → its model registry, for every chain under ``root`` (``<root>/<chain>/models/<filename>``):
    how a report lists the versions of a base and of its experiments side by side."""
    root = Path(root)
    return {p.parent.parent.name: ModelRegistry(p) for p in sorted(root.glob(f"*/models/{filename}"))}


__all__ = ["ModelRegistry", "ModelVersion", "PromotionRule", "chain_registries"]
