"""The model registry API: versions per chain with their window, metrics and artifact; the promotion rule declared
with the training node; re-runs keep their decision."""

from __future__ import annotations

import pytest

from airflow_rtml.exceptions import ModelRegistryError
from airflow_rtml.models import ModelRegistry, PromotionRule, chain_registries


def _entry(version, auc, promoted, hour=0):
    return {"version": version, "hour_start_ms": hour, "artifact": f"/m/model-v{version:04d}.pkl",
            "previous_version": version - 1, "holdout": {"auc": auc}, "progressive": {"auc": None},
            "current_holdout": {"auc": None}, "promoted": promoted}


def test_the_rule_compares_the_candidate_with_the_current_version():
    rule = PromotionRule()
    assert rule.decide({"auc": 0.6}, None)  # the first version
    assert rule.decide({"auc": 0.7}, {"auc": 0.7}) and not rule.decide({"auc": 0.69}, {"auc": 0.7})
    assert not PromotionRule(min_gain=0.01).decide({"auc": 0.705}, {"auc": 0.7})
    assert PromotionRule(metric="log_loss", lower_is_better=True).decide({"log_loss": 0.3}, {"log_loss": 0.31})
    assert not rule.decide({"auc": None}, {"auc": 0.7}) and rule.decide({"auc": 0.5}, {"auc": None})
    assert PromotionRule.from_params({"promotion_metric": "log_loss", "promotion_min_gain": 0,
                                      "promotion_lower_is_better": True}) == PromotionRule("log_loss", 0.0, True)
    assert "higher" in PromotionRule().describe()


def test_versions_current_and_a_rerun_that_keeps_its_decision(tmp_path):
    reg = ModelRegistry(tmp_path / "demo" / "models" / "registry.json")
    assert reg.versions() == [] and reg.current() is None
    reg.record(_entry(1, 0.6, True))
    reg.record(_entry(2, 0.55, False, hour=3_600_000))
    assert [v.version for v in reg.versions()] == [1, 2] and reg.current().version == 1
    assert reg.get(2).window_start_ms == 3_600_000 and reg.get(2).metrics["holdout"] == {"auc": 0.55}
    reg.record(_entry(2, 0.9, True, hour=3_600_000))  # a re-run of hour 1: same decision, current unchanged
    assert reg.current().version == 1 and reg.get(2).promoted is False
    other = ModelRegistry(tmp_path / "wide" / "models" / "registry.json")
    other.record(_entry(1, 0.7, True))
    assert sorted(chain_registries(tmp_path)) == ["demo", "wide"]


def test_a_corrupt_registry_is_a_clear_error(tmp_path):
    path = tmp_path / "registry.json"
    path.write_text("{nope")
    with pytest.raises(ModelRegistryError, match="not valid JSON"):
        ModelRegistry(path).versions()
    path.write_text("[]")
    with pytest.raises(ModelRegistryError, match="not a model registry"):
        ModelRegistry(path).current()
