"""docker/compose.yaml: what `docker compose config` would check, without a Docker engine.

No engine runs in CI, so the file is checked the way the compose CLI loads it: variables interpolated from
``docker/.env.example`` (a required ``${VAR:?…}`` without a value fails, as compose fails), YAML anchors and
merge keys resolved, the result validated against the published compose-spec JSON schema
(``tests/data/compose-spec.json``, vendored from compose-spec/compose-spec, see ``tests/data/README.md``), then
the references the schema cannot see: ``depends_on`` targets, named volumes, build contexts and Dockerfiles,
bind-mount sources. On top: the house rules (health checks, loopback ports, no secret in the file), the
connections the local stack defines, the versions the code pins, and that every service the docs name exists.
When a compose CLI is on PATH, ``docker compose config`` runs too.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
COMPOSE_FILE = DOCKER / "compose.yaml"
ENV_EXAMPLE = DOCKER / ".env.example"
SCHEMA_FILE = REPO / "tests" / "data" / "compose-spec.json"
DEPLOYMENT_DOC = REPO / "docs" / "deployment.md"

_VAR = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<braced>[^}]*)\}|(?P<named>[A-Za-z_][A-Za-z0-9_]*))")
_BRACED = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>.*))?$", re.S)


class InterpolationError(ValueError):
    pass


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines of a compose env file (comments and blank lines skipped)."""
    env: dict[str, str] = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise InterpolationError(f"{path.name}: not KEY=VALUE: {line!r}")
        env[key.strip()] = value.strip().strip("'\"")
    return env


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable substitution: ``$$``, ``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``,
    ``${VAR:?error}``, ``${VAR?error}``, ``${VAR:+alt}``; raise on a required variable without a value."""

    def substitute(m: re.Match) -> str:
        if m.group("escaped"):
            return "$"
        if m.group("named"):
            return env.get(m.group("named"), "")
        b = _BRACED.match(m.group("braced"))
        if not b:
            raise InterpolationError(f"invalid interpolation format: ${{{m.group('braced')}}}")
        name, op, arg = b.group("name"), b.group("op"), b.group("arg")
        value = env.get(name)
        unset_or_empty = not value
        missing = unset_or_empty if op and op.startswith(":") else value is None
        if op in (":-", "-"):
            return interpolate(arg, env) if missing else value
        if op in (":?", "?"):
            if missing:
                raise InterpolationError(f"required variable {name} is missing a value: {arg}")
            return value
        if op in (":+", "+"):
            return "" if missing else interpolate(arg, env)
        return value or ""

    return _VAR.sub(substitute, text)


def load_compose(text: str, env: dict[str, str]) -> dict:
    """The compose model as the CLI sees it: YAML (anchors, merge keys) loaded, then variables substituted in
    every string value; the ``x-`` extension fields are kept."""
    model = yaml.safe_load(text)
    if not isinstance(model, dict):
        raise ValueError("a compose file is a mapping")
    return _interpolate_values(model, env)


def _interpolate_values(node, env):
    # Compose parses the YAML first and substitutes inside values (never in comments or keys).
    if isinstance(node, dict):
        return {k: _interpolate_values(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate_values(v, env) for v in node]
    return interpolate(node, env) if isinstance(node, str) else node


def schema_errors(model: dict, schema: dict) -> list[str]:
    validator = jsonschema.Draft7Validator(schema)
    return sorted(
        f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in validator.iter_errors(model)
    )


def reference_errors(model: dict, base: Path) -> list[str]:
    """What `docker compose config` rejects beyond the schema: dangling references and missing paths."""
    errors: list[str] = []
    services = model.get("services", {})
    declared_volumes = set(model.get("volumes") or {})
    for name, svc in services.items():
        deps = svc.get("depends_on") or {}
        for dep in deps if isinstance(deps, list) else deps.keys():
            if dep not in services:
                errors.append(f"{name}: depends_on unknown service {dep!r}")
            elif dep == name:
                errors.append(f"{name}: depends on itself")
        for vol in svc.get("volumes") or []:
            source = vol.split(":")[0] if isinstance(vol, str) else vol.get("source", "")
            if not source:
                continue
            if source.startswith((".", "/", "~")):
                if not (base / source).exists():
                    errors.append(f"{name}: bind-mount source {source} does not exist")
            elif source not in declared_volumes:
                errors.append(f"{name}: named volume {source!r} is not declared under top-level volumes")
        build = svc.get("build")
        if build is not None:
            build = {"context": build} if isinstance(build, str) else build
            context = base / build.get("context", ".")
            dockerfile = context / build.get("dockerfile", "Dockerfile")
            if not context.is_dir():
                errors.append(f"{name}: build context {context} is not a directory")
            elif not dockerfile.is_file():
                errors.append(f"{name}: Dockerfile {dockerfile} does not exist")
        for env_file in svc.get("env_file") or []:
            path = env_file if isinstance(env_file, str) else env_file.get("path", "")
            if not (base / path).exists():
                errors.append(f"{name}: env_file {path} does not exist")
    return errors


def _one_shot(name: str, model: dict) -> bool:
    """A service others wait for with ``service_completed_successfully`` (an init job) needs no health check."""
    for svc in model["services"].values():
        deps = svc.get("depends_on") or {}
        if isinstance(deps, dict) and deps.get(name, {}).get("condition") == "service_completed_successfully":
            return model["services"][name].get("restart", "no") == "no"
    return False


def house_rule_errors(model: dict) -> list[str]:
    """Health checks on every long-running service, waits only on what can become healthy, loopback ports,
    no literal secret."""
    errors: list[str] = []
    services = model["services"]
    for name, svc in services.items():
        hc = svc.get("healthcheck")
        if not _one_shot(name, model):
            if not hc or hc.get("disable") or not hc.get("test") or hc.get("test") == ["NONE"]:
                errors.append(f"{name}: no health check")
        deps = svc.get("depends_on") or {}
        for dep, spec in (deps.items() if isinstance(deps, dict) else []):
            if spec.get("condition") == "service_healthy" and not services.get(dep, {}).get("healthcheck"):
                errors.append(f"{name}: waits for {dep} to be healthy, but {dep} has no health check")
        for port in svc.get("ports") or []:
            spec = port if isinstance(port, str) else f"{port.get('host_ip', '')}:{port.get('published', '')}:"
            if not str(spec).startswith("127.0.0.1:"):
                errors.append(f"{name}: port {spec} is published on every interface, not 127.0.0.1")
    return errors


_SECRET_NAME = re.compile(r"PASSWORD|SECRET|FERNET|TOKEN|_KEY$", re.I)
_SECRET_IN_VALUE = re.compile(r"(password=|://[^/:@\s]+:(?=[^@/\s]+@))(?P<value>[^@\s]+)", re.I)


def literal_secrets(raw: dict) -> list[str]:
    """Secrets written into the file instead of interpolated from .env (checked on the raw, uninterpolated YAML)."""
    found: list[str] = []

    def walk(node, path):
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(value, str) and _SECRET_NAME.search(str(key)) and not value.startswith("${"):
                    found.append(f"{path}{key}")
                walk(value, f"{path}{key}.")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{path}{i}.")
        elif isinstance(node, str):
            for m in _SECRET_IN_VALUE.finditer(node):
                if not m.group("value").startswith("${"):
                    found.append(f"{path.rstrip('.')}: {m.group(0)}")

    walk(raw, "")
    return found


# --------------------------------------------------------------------------------------------------
# fixtures


@pytest.fixture(scope="module")
def schema() -> dict:
    return json.loads(SCHEMA_FILE.read_text())


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def model(env) -> dict:
    return load_compose(COMPOSE_FILE.read_text(), env)


# --------------------------------------------------------------------------------------------------
# the checker itself: each check must be able to fail


def test_vendored_schema_is_a_draft7_schema(schema):
    jsonschema.Draft7Validator.check_schema(schema)
    assert schema["title"] == "Compose Specification"


def test_the_schema_rejects_what_compose_rejects(schema):
    good = {"services": {"a": {"image": "x", "healthcheck": {"test": ["CMD", "true"], "interval": "10s"}}}}
    assert schema_errors(good, schema) == []
    for broken in (
        {"servics": {"a": {"image": "x"}}},                                  # misspelt top-level key
        {"services": {"a": {"image": "x", "restart_policy": "always"}}},    # unknown service key
        {"services": {"a": {"image": "x", "depends_on": {"b": {"condition": "service_up"}}}}},
        {"services": {"a": {"image": "x", "healthcheck": {"test": 5}}}},            # test: a string or a list
        {"services": {"a": {"image": "x", "deploy": {"replicas": [2]}}}},
    ):
        assert schema_errors(broken, schema), broken


def test_interpolation_follows_compose():
    env = {"SET": "v", "EMPTY": ""}
    assert interpolate("$$HOME ${SET} $SET ${UNSET:-d} ${EMPTY:-d} ${EMPTY-d} ${SET:+alt}", env) == "$HOME v v d d  alt"
    assert interpolate("${SET:?needed}", env) == "v"
    for text in ("${UNSET:?needed}", "${EMPTY:?needed}", "${UNSET?needed}", "${bad name}"):
        with pytest.raises(InterpolationError):
            interpolate(text, env)


def test_the_reference_and_rule_checks_catch_breakage(model):
    assert reference_errors(model, DOCKER) == [] and house_rule_errors(model) == []
    broken = copy.deepcopy(model)
    broken["services"]["airflow-scheduler"]["depends_on"]["postgress"] = {"condition": "service_healthy"}
    broken["services"]["kafka"]["volumes"] = ["kafka-logs:/var/lib/kafka/data"]
    broken["services"]["flink-jobmanager"]["build"]["context"] = "no-such-dir"
    broken["services"]["flink-taskmanager"].pop("healthcheck")
    broken["services"]["airflow-apiserver"]["ports"] = ["8080:8080"]
    refs, rules = reference_errors(broken, DOCKER), house_rule_errors(broken)
    assert any("postgress" in e for e in refs)
    assert any("kafka-logs" in e for e in refs)
    assert any("no-such-dir" in e for e in refs)
    assert "flink-taskmanager: no health check" in rules
    assert any("airflow-apiserver: port 8080:8080" in e for e in rules)


def test_secret_detection_finds_literal_passwords():
    raw = {"services": {"db": {"environment": {
        "POSTGRES_PASSWORD": "hunter2",
        "SQL": "postgresql://airflow:hunter2@db/airflow",
        "OPTS": "-Dx.ConnectionPassword=hunter2",
        "OK_PASSWORD": "${PW:?set it}",
        "OK_URL": "postgresql://airflow:${PW:?}@db/airflow",
    }}}}
    assert sorted(literal_secrets(raw)) == [
        "services.db.environment.OPTS: Password=hunter2",
        "services.db.environment.POSTGRES_PASSWORD",
        "services.db.environment.SQL: ://airflow:hunter2",
    ]


# --------------------------------------------------------------------------------------------------
# docker/compose.yaml


def test_compose_file_validates_against_the_compose_spec(model, schema):
    assert schema_errors(model, schema) == []


def test_every_required_variable_comes_from_env_example(env):
    text = COMPOSE_FILE.read_text()
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    required = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*):?\?", code))
    assert required, "compose.yaml takes its secrets from .env with ${VAR:?…}"
    assert required <= set(env), f"missing from .env.example: {sorted(required - set(env))}"
    # compose fails without them: an empty environment must not load
    with pytest.raises(InterpolationError):
        load_compose(text, {})


def test_references_resolve(model):
    assert reference_errors(model, DOCKER) == []


def test_house_rules(model):
    assert house_rule_errors(model) == []


def test_no_secret_in_the_file_and_env_is_git_ignored():
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    assert literal_secrets(raw) == []
    ignored = (DOCKER / ".gitignore").read_text().split()
    assert ".env" in ignored
    assert not (DOCKER / ".env").exists() or _git_ignored(DOCKER / ".env")


def _git_ignored(path: Path) -> bool:
    git = shutil.which("git")
    if not git:
        return True
    return subprocess.run([git, "check-ignore", "-q", str(path)], cwd=REPO).returncode == 0


def test_production_shape(model):
    services = model["services"]
    airflow = {n: s for n, s in services.items() if s.get("image", "").startswith("airflow-rtml/airflow")}
    commands = sorted(s.get("command") for s in airflow.values())
    assert commands.count("triggerer") >= 2, "the production shape runs more than one triggerer"
    for role in ("api-server", "scheduler", "dag-processor"):
        assert role in commands
    for name, svc in airflow.items():
        db = svc["environment"]["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
        assert db.startswith("postgresql"), f"{name}: Airflow on PostgreSQL, not {db.split(':')[0]}"
        assert svc["environment"]["AIRFLOW__CORE__EXECUTOR"] in ("LocalExecutor", "CeleryExecutor")
    tm_props = services["flink-taskmanager"]["environment"]["FLINK_PROPERTIES"]
    assert "metrics.reporter.prom.factory.class: org.apache.flink.metrics.prometheus.PrometheusReporterFactory" in tm_props
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    hive_opts = services["hive-metastore"]["environment"]["SERVICE_OPTS"]
    assert "jdbc:postgresql://postgres:5432/" in hive_opts
    assert services["hive-metastore"]["environment"]["DB_DRIVER"] == "postgres"
    for name, svc in services.items():
        for vol in svc.get("volumes") or []:
            assert not str(vol).startswith("/"), f"{name}: absolute host path {vol}; use a named volume"


def test_connections_mirror_the_local_stack(model):
    """Every AIRFLOW_CONN_* the local stack defines exists here, same scheme and extras, on a compose service
    that exposes that port."""
    from airflow_rtml.local.config import StackConfig
    from airflow_rtml.local.stack import airflow_env

    local = {k: v for k, v in airflow_env(StackConfig.from_env()).items() if k.startswith("AIRFLOW_CONN_")}
    assert local, "the local stack defines connections"
    services = model["services"]
    for name, svc in services.items():
        if not name.startswith("airflow-"):
            continue
        env = svc["environment"]
        for key, local_value in local.items():
            assert key in env, f"{name}: {key} of the local stack is missing"
            if local_value.lstrip().startswith("{"):
                ours, theirs = json.loads(env[key]), json.loads(local_value)
                assert ours["conn_type"] == theirs["conn_type"], key
                assert set(ours.get("extra", {})) == set(theirs.get("extra", {})), key
                if "bootstrap.servers" not in ours.get("extra", {}):
                    assert ours.get("host"), f"{key}: no host"  # e.g. Spark's master: local[N] or a cluster URL
                    continue
                host, port = ours["extra"]["bootstrap.servers"].split(":")
            else:
                ours, theirs = urlsplit(env[key]), urlsplit(local_value)
                assert ours.scheme == theirs.scheme, key
                assert sorted(q.split("=")[0] for q in ours.query.split("&") if q) == sorted(
                    q.split("=")[0] for q in theirs.query.split("&") if q
                ), key
                host, port = ours.hostname, ours.port
            assert host in services, f"{key}: host {host} is not a compose service"
            assert _serves(services[host], int(port)), f"{key}: {host} does not serve port {port}"


def _serves(svc: dict, port: int) -> bool:
    return re.search(rf"(?<![0-9]){port}(?![0-9])", json.dumps(svc)) is not None


def test_versions_match_the_code_pins(model):
    from airflow_rtml.local import config

    services = model["services"]
    airflow_pin = re.search(r"^apache-airflow==(\S+)$", (REPO / "constraints" / "airflow.txt").read_text(), re.M)
    assert airflow_pin
    for name, svc in services.items():
        args = (svc.get("build") or {}).get("args") or {}
        if "AIRFLOW_IMAGE" in args:
            assert args["AIRFLOW_IMAGE"].startswith(f"apache/airflow:{airflow_pin.group(1)}-python3.11"), name
            assert args["AIRFLOW_VERSION"] == airflow_pin.group(1), name
        if "FLINK_IMAGE" in args:
            assert args["FLINK_IMAGE"].startswith(f"flink:{config.FLINK_VERSION}-"), name
    assert services["kafka"]["image"] == f"apache/kafka:{config.KAFKA_VERSION}"
    _, artifact, version = config.FLINK_KAFKA_CONNECTOR.split(":")
    jar = f"{artifact}-{version}.jar"
    assert jar in (DOCKER / "flink" / "Dockerfile").read_text()
    for name, svc in services.items():
        if name.startswith("airflow-"):
            assert svc["environment"]["RTML_FLINK_KAFKA_CONNECTOR_JAR"].endswith("/" + jar)
    dockerfile = (DOCKER / "airflow" / "Dockerfile").read_text()
    assert "-c /opt/airflow-rtml/constraints/airflow.txt" in dockerfile
    assert re.search(r"^ARG AIRFLOW_IMAGE=apache/airflow:" + re.escape(airflow_pin.group(1)), dockerfile, re.M)


def documented_services(doc: Path) -> set[str]:
    """Service names in the first column of every table of ``doc`` whose header's first column is "service"."""
    names: set[str] = set()
    in_table = False
    for line in doc.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.lstrip().startswith("|") else None
        if cells is None:
            in_table = False
            continue
        if not in_table:
            in_table = cells[0].lower() == "service"
            continue
        if set(cells[0]) <= set("-: "):
            continue
        names.update(re.findall(r"`([a-z0-9][a-z0-9_.-]*)`", cells[0]))
    return names


def test_every_service_the_docs_name_exists_and_every_service_is_documented(model):
    documented = documented_services(DEPLOYMENT_DOC)
    assert documented, f"{DEPLOYMENT_DOC.name} has a table whose first column is 'service'"
    services = set(model["services"])
    assert documented - services == set(), "the docs name services compose.yaml lacks"
    assert services - documented == set(), "compose.yaml has services the docs do not describe"


def test_documented_services_parser_sees_tables_only(tmp_path):
    doc = tmp_path / "d.md"
    doc.write_text("`not-a-table`\n\n| service | x |\n|---|---|\n| `a`, `b` | `c` |\n\n| other | y |\n|--|--|\n| `d` | |\n")
    assert documented_services(doc) == {"a", "b"}


def test_docker_compose_config_when_a_compose_cli_is_installed(tmp_path):
    """The real loader, where one exists (`docker compose` plugin or `docker-compose` v2); CI has none."""
    for cmd in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(cmd[0]) and subprocess.run(cmd + ["version"], capture_output=True).returncode == 0:
            version = subprocess.run(cmd + ["version", "--short"], capture_output=True, text=True).stdout.strip()
            if version.startswith("1."):
                continue  # v1 predates the compose spec's current schema
            break
    else:
        pytest.skip("no compose CLI v2 on PATH (none is installed in CI); the schema checks above stand in for it")
    proc = subprocess.run(
        cmd + ["--env-file", str(ENV_EXAMPLE), "-f", str(COMPOSE_FILE), "config", "--quiet"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
