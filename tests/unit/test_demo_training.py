"""The demo's training after a blocked hour: which version an hour trains from."""

from __future__ import annotations

import pytest

from airflow_rtml.demo.training import PreviousVersionNotReady, previous_version, train_hour


def _touch(models, *versions):
    models.mkdir(exist_ok=True)
    for v in versions:
        (models / f"model-v{v:04d}.pkl").write_bytes(b"")


def test_an_hour_trains_from_the_newest_version_before_the_blocked_hours(tmp_path):
    models = tmp_path / "models"
    _touch(models, 1)
    assert previous_version(2, models, blocked=lambda v: False) == 1
    assert previous_version(3, models, blocked=lambda v: v == 2) == 1  # hour 1 blocked: v3 trains from v1
    assert previous_version(1, models, blocked=lambda v: False) == 0  # the first hour: from scratch
    assert previous_version(3, tmp_path / "none", blocked=lambda v: True) == 0  # every earlier hour blocked


def test_an_earlier_hour_neither_trained_nor_blocked_is_waited_for(tmp_path):
    models = tmp_path / "models"
    _touch(models, 1)
    with pytest.raises(PreviousVersionNotReady, match="model version 2 .* not trained yet"):
        previous_version(3, models, blocked=lambda v: False)


def test_the_version_records_what_it_trained_from(tmp_path):
    rows = [{"imp_id": f"i{n}", "user": f"u{n % 7}", "item": f"t{n % 5}", "bucket": "control", "ts_ms": n,
             "label": int(n % 9 == 0)} for n in range(200)]
    models = tmp_path / "models"
    first = train_hour(rows, version=1, models_dir=models, hour_start_ms=0)
    third = train_hour(rows, version=3, models_dir=models, hour_start_ms=7_200_000, previous_version=1)
    assert first["previous_version"] == 0 and third["previous_version"] == 1
    assert third["progressive"]["auc"] is not None  # measured with version 1 (there is no version 2)
