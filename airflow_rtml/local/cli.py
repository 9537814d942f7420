"""The ``rtml`` command line: ``rtml local install | up | status | down | env``."""

from __future__ import annotations

import argparse
import shlex
import sys
import time

from airflow_rtml.local.config import StackConfig


def _progress_printer() -> callable:
    t0 = time.monotonic()

    def progress(msg: str) -> None:
        print(f"[rtml {time.monotonic() - t0:6.1f}s] {msg}", flush=True)

    return progress


def _cmd_install(args: argparse.Namespace) -> int:
    from airflow_rtml.local.install import install_all

    install_all(StackConfig.from_env(), _progress_printer())
    return 0


def _cmd_up(args: argparse.Namespace) -> int:
    from airflow_rtml.local.stack import LocalStack

    progress = _progress_printer()
    t0 = time.monotonic()
    stack = LocalStack(progress=progress)
    started = stack.up(install=not args.no_install)
    verb = "started " + ", ".join(s.name for s in started) if started else "everything was already up"
    progress(f"local stack up in {time.monotonic() - t0:.1f}s ({verb})")
    for svc in stack.services:
        for url in svc.urls():
            print(f"  {url}")
    print(f"  Logs: {stack.cfg.log_dir}    Stop: rtml local down")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from airflow_rtml.local.stack import LocalStack

    stack = LocalStack()
    rows = stack.status()
    total = 0
    print(f"{'service':<18} {'state':<9} {'pid':>7} {'rss':>9}  detail")
    for r in rows:
        state = "healthy" if r.healthy else ("starting" if r.running else "down")
        total += r.rss_bytes
        rss = f"{r.rss_bytes / 2**20:.0f} MiB" if r.running else "-"
        print(f"{r.name:<18} {state:<9} {r.pid or '-':>7} {rss:>9}  {r.detail}")
    print(f"{'total':<18} {'':<9} {'':>7} {total / 2**20:>5.0f} MiB")
    return 0 if all(r.healthy for r in rows) else 1


def _cmd_down(args: argparse.Namespace) -> int:
    from airflow_rtml.local.stack import LocalStack

    progress = _progress_printer()
    n = LocalStack(progress=progress).down()
    progress(f"local stack down ({n} process(es) stopped)" if n else "local stack was not running")
    return 0


def _cmd_env(args: argparse.Namespace) -> int:
    from airflow_rtml.local.stack import airflow_env

    for key, value in airflow_env(StackConfig.from_env()).items():
        print(f"export {key}={shlex.quote(value)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rtml", description="airflow-rtml command line.")
    sub = parser.add_subparsers(dest="group", required=True)
    local = sub.add_parser(
        "local",
        help="the embedded local stack: Flink session cluster, Kafka broker, Airflow standalone",
        description="State lives in $RTML_HOME (default ./.rtml); DAGs come from $RTML_DAGS_FOLDER (default ./dags).",
    )
    lsub = local.add_subparsers(dest="command", required=True)
    lsub.add_parser("install", help="install the Flink venv, the Flink Kafka connector and the Kafka broker jars")
    up = lsub.add_parser("up", help="install if needed, start everything, wait until healthy (idempotent)")
    up.add_argument("--no-install", action="store_true", help="fail instead of installing missing pieces")
    lsub.add_parser("status", help="state, PID and memory of each service (exit 1 unless all healthy)")
    lsub.add_parser("down", help="stop exactly the processes this stack started; data is kept")
    lsub.add_parser("env", help="print `export` lines that point the airflow CLI at the local stack")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {"install": _cmd_install, "up": _cmd_up, "status": _cmd_status, "down": _cmd_down, "env": _cmd_env}
    from airflow_rtml.local.install import InstallError
    from airflow_rtml.local.stack import StackError

    try:
        return handlers[args.command](args)
    except (StackError, InstallError, FileNotFoundError) as exc:
        print(f"rtml: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rtml: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
