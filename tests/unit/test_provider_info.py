"""The provider's metadata as Airflow reads it."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import jsonschema
import pytest

import airflow_rtml


def _schema() -> dict:
    import airflow

    return json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())


def test_provider_info_matches_airflow_schema():
    jsonschema.validate(airflow_rtml.get_provider_info(), _schema())


def test_provider_info_schema_rejects_a_broken_info():
    # The check above must be able to fail: a wrongly typed field is rejected by the same schema.
    broken = dict(airflow_rtml.get_provider_info(), integrations="Apache Flink")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, _schema())


def _class_paths(info: dict) -> list[str]:
    paths = list(info.get("hook-class-names", []))
    paths += [ct["hook-class-name"] for ct in info.get("connection-types", [])]
    paths += [p["plugin-class"] for p in info.get("plugins", [])]
    paths += list(info.get("extra-links", []))
    for group in ("operators", "sensors", "hooks", "triggers"):
        for entry in info.get(group, []):
            for module in entry.get("python-modules", []):
                paths.append(module + ":module")
    return paths


def test_every_class_path_in_provider_info_imports():
    for path in _class_paths(airflow_rtml.get_provider_info()):
        if path.endswith(":module"):
            importlib.import_module(path[: -len(":module")])
        else:
            module, _, name = path.rpartition(".")
            assert hasattr(importlib.import_module(module), name), path


def test_entry_points_are_registered():
    providers = {ep.value for ep in entry_points(group="apache_airflow_provider")}
    assert "airflow_rtml:get_provider_info" in providers
    plugins = {ep.value for ep in entry_points(group="airflow.plugins")}
    assert "airflow_rtml.plugins:RtmlPlugin" in plugins
    scripts = {ep.name: ep.value for ep in entry_points(group="console_scripts")}
    assert scripts.get("rtml") == "airflow_rtml.local.cli:main"


def test_airflow_providers_list_shows_us(tmp_path):
    env = {"AIRFLOW_HOME": str(tmp_path), "PATH": str(Path(sys.executable).parent)}
    out = subprocess.run(
        [str(Path(sys.executable).with_name("airflow")), "providers", "list", "-o", "json"],
        capture_output=True, text=True, env=env, timeout=180,
    )
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout[out.stdout.index("["):])
    ours = [r for r in rows if r["package_name"] == "airflow-rtml"]
    assert ours and ours[0]["version"] == airflow_rtml.__version__


def test_airflow_lists_our_connection_types(tmp_path):
    code = (
        "from airflow.providers_manager import ProvidersManager\n"
        "hooks = ProvidersManager().hooks\n"
        "print(hooks['flink_rest'].hook_class_name)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180,
                         env={"AIRFLOW_HOME": str(tmp_path), "PATH": str(Path(sys.executable).parent)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("airflow_rtml.hooks.flink.FlinkRestHook")


def test_importing_the_provider_never_imports_pyflink():
    code = (
        "import sys, pkgutil, importlib, airflow_rtml\n"
        "for m in pkgutil.walk_packages(airflow_rtml.__path__, 'airflow_rtml.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = sorted(n for n in sys.modules if n == 'pyflink' or n.startswith('pyflink.'))\n"
        "assert not bad, bad\n"
        "print('modules ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "modules ok" in out.stdout, out.stderr
