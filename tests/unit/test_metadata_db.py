"""Choosing Airflow's metadata database for the local stack: the choice is kept, read back by every later command,
validated, and turned into the service list, the command line and the SQLAlchemy URL."""

from __future__ import annotations

import dataclasses

import pytest

from airflow_rtml.local.config import StackConfig
from airflow_rtml.local.stack import LocalStack, PostgresServer, airflow_env


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("RTML_HOME", str(tmp_path / ".rtml"))
    monkeypatch.delenv("RTML_AIRFLOW_DB", raising=False)
    return tmp_path / ".rtml"


def test_postgres_is_the_default_where_it_is_installed_and_a_saved_choice_is_read_back(home, monkeypatch):
    monkeypatch.setattr("airflow_rtml.local.config.postgres_bin_dir", lambda: home / "bin")
    assert StackConfig.from_env().airflow_db == "postgres"
    dataclasses.replace(StackConfig.from_env(), airflow_db="sqlite").save_settings()
    assert StackConfig.from_env().airflow_db == "sqlite"  # status, down, the supervisor, tests: the same DB
    monkeypatch.setenv("RTML_AIRFLOW_DB", "postgres")
    assert StackConfig.from_env().airflow_db == "postgres"  # the environment wins


def test_sqlite_where_postgres_cannot_be_had_or_a_sqlite_db_exists(home, monkeypatch):
    monkeypatch.setattr("airflow_rtml.local.config.postgres_bin_dir", lambda: None)
    monkeypatch.setattr("os.geteuid", lambda: 1000)  # not root: apt-get cannot install it
    assert StackConfig.from_env().airflow_db == "sqlite"
    monkeypatch.setattr("airflow_rtml.local.config.postgres_bin_dir", lambda: home / "bin")
    (home / "airflow").mkdir(parents=True)
    (home / "airflow" / "airflow.db").touch()  # a stack from before the choice existed keeps its history
    assert StackConfig.from_env().airflow_db == "sqlite"


def test_an_unknown_database_is_refused(home, monkeypatch):
    monkeypatch.setenv("RTML_AIRFLOW_DB", "mysql")
    with pytest.raises(ValueError, match=r"one of \('sqlite', 'postgres'\)"):
        StackConfig.from_env()


def test_postgres_adds_a_server_before_airflow_and_points_airflow_at_it(home):
    cfg = dataclasses.replace(StackConfig.from_env(), airflow_db="postgres")
    names = [s.name for s in LocalStack(cfg).services]
    assert names.index("postgres") < names.index("airflow-api-server")
    assert airflow_env(cfg)["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == \
        "postgresql+psycopg2://airflow@127.0.0.1:5433/airflow"
    lite = dataclasses.replace(cfg, airflow_db="sqlite")
    assert "postgres" not in [s.name for s in LocalStack(lite).services]
    assert airflow_env(lite)["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("sqlite:///")


def test_the_server_listens_on_loopback_only_and_drops_root(home, monkeypatch):
    server = PostgresServer(dataclasses.replace(StackConfig.from_env(), airflow_db="postgres"))
    monkeypatch.setattr("airflow_rtml.local.stack.postgres_bin_dir", lambda: home / "bin")
    monkeypatch.setattr("os.geteuid", lambda: 0)
    argv = server.command()
    assert argv[:4] == ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"]
    assert "listen_addresses=127.0.0.1" in argv and "port=5433" in argv
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert server.command()[0] == str(home / "bin" / "postgres")


def test_missing_binaries_say_how_to_install_them(home, monkeypatch):
    server = PostgresServer(dataclasses.replace(StackConfig.from_env(), airflow_db="postgres"))
    monkeypatch.setattr("airflow_rtml.local.stack.postgres_bin_dir", lambda: None)
    with pytest.raises(Exception, match="apt-get install -y postgresql"):
        server.command()


def test_switching_while_airflow_runs_is_refused_and_a_choice_is_saved(home, monkeypatch, capsys):
    from airflow_rtml.local import cli
    from airflow_rtml.local.stack import StackError

    dataclasses.replace(StackConfig.from_env(), airflow_db="sqlite").save_settings()
    monkeypatch.setattr(LocalStack, "process_of", lambda self, svc: object())  # Airflow's processes are up
    with pytest.raises(StackError, match=r"Airflow runs on sqlite .*rtml local down"):
        cli._choose_db("postgres", print)
    monkeypatch.setattr(LocalStack, "process_of", lambda self, svc: None)  # stopped: the switch is kept
    assert cli._choose_db("postgres", print).airflow_db == "postgres"
    assert StackConfig.from_env().airflow_db == "postgres"
    assert "sqlite -> postgres" in capsys.readouterr().out


def test_the_server_gets_the_real_data_path_not_the_link(home, tmp_path):
    """As root the data folder is a link into /var/tmp; the link's parents may be a 0700 checkout the postgres
    user cannot enter (a CI clone under /tmp failed so), so initdb and the server get the link's target."""
    target = tmp_path / "real"
    target.mkdir()
    home.mkdir(parents=True, exist_ok=True)
    (home / "postgres").symlink_to(target, target_is_directory=True)
    server = PostgresServer(dataclasses.replace(StackConfig.from_env(), airflow_db="postgres"))
    assert server.data_dir == target.resolve() / "data"
