"""The ``rtml`` command line: ``rtml local install | up | status | down | env``; ``rtml progress relay | publish``;
``rtml experiment clone | list | show | stop``; ``rtml backfill verify``; ``rtml demo``."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

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


def _cmd_backfill_verify(args: argparse.Namespace) -> int:
    from airflow_rtml.offline.archive import ArchiveTable
    from airflow_rtml.offline.backfill import check_range, parse_time
    from airflow_rtml.offline.equality import live_vs_backfill

    start, end = parse_time(args.start), parse_time(args.end)
    check_range(start, end)
    table = ArchiveTable("backfill", Path(args.table_path).name, args.table_path, ())
    report = live_vs_backfill(args.bootstrap, args.topic, table, args.key, start, end,
                              version_column=args.version_column, features=args.feature)
    print(report.summary())
    if args.json:
        Path(args.json).write_text(json.dumps(report.as_dict(), indent=2, default=str))
    return 0 if report.equal else 1


def _choose_db(db: str, progress) -> StackConfig:
    """``up --db X``: keep the choice in the stack's settings; refused while Airflow runs on the other database."""
    from dataclasses import replace

    from airflow_rtml.local.stack import AirflowComponent, LocalStack, StackError

    current = StackConfig.from_env()
    if current.airflow_db != db:
        stack = LocalStack(current)
        running = [s.name for s in stack.services if isinstance(s, AirflowComponent) and stack.process_of(s)]
        if running:
            raise StackError(f"Airflow runs on {current.airflow_db} ({', '.join(running)}). To fix this, stop the "
                             f"stack first (rtml local down), then rtml local up --db {db}.")
        progress(f"airflow: metadata database {current.airflow_db} -> {db} (kept in {current.settings_file}; the "
                 f"{current.airflow_db} data stays, a new {db} database starts empty)")
    cfg = replace(current, airflow_db=db)
    cfg.save_settings()
    return cfg


def _cmd_up(args: argparse.Namespace) -> int:
    from airflow_rtml.local.stack import LocalStack

    progress = _progress_printer()
    t0 = time.monotonic()
    cfg = _choose_db(args.db, progress) if args.db else StackConfig.from_env()
    stack = LocalStack(cfg, progress=progress)
    started = stack.up(install=not args.no_install)
    verb = "started " + ", ".join(s.name for s in started) if started else "everything was already up"
    progress(f"local stack up in {time.monotonic() - t0:.1f}s ({verb})")
    for svc in stack.services:
        for url in svc.urls():
            print(f"  {url}")
    print(f"  Logs: {stack.cfg.log_dir}    Stop: rtml local down")
    return 0


def status_word(row) -> str:
    """``healthy`` / ``degraded (restarting, 2 restarts)`` / ``starting`` / ``down`` for one service."""
    if row.restarting:
        return f"degraded (restarting, {row.restarts} restart{'s' if row.restarts != 1 else ''})"
    if row.healthy:
        return "healthy" if not row.restarts else f"healthy ({row.restarts} restart{'s' if row.restarts != 1 else ''})"
    return "starting" if row.running else "down"


def _cmd_status(args: argparse.Namespace) -> int:
    from airflow_rtml.local.stack import LocalStack

    stack = LocalStack()
    rows = stack.status()
    total = 0
    print(f"{'service':<22} {'state':<34} {'pid':>7} {'rss':>9}  detail")
    for r in rows:
        total += r.rss_bytes
        rss = f"{r.rss_bytes / 2**20:.0f} MiB" if r.running else "-"
        print(f"{r.name:<22} {status_word(r):<34} {r.pid or '-':>7} {rss:>9}  {r.detail}")
    print(f"{'total':<22} {'':<34} {'':>7} {total / 2**20:>5.0f} MiB")
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


def _registry(args: argparse.Namespace):
    import os

    from airflow_rtml.chain import ExperimentRegistry

    return ExperimentRegistry(args.registry or os.environ.get("RTML_EXPERIMENTS")
                              or StackConfig.from_env().home / "experiments.json")


def _builtin_plans() -> dict:
    """Chain name → plan of the built-in chains (the demo), planned once per command."""
    from airflow_rtml.demo.chain import Chain

    return {"demo": Chain().plan(StackConfig.from_env().dags_folder / "jobs" / "demo")}


def _builtin_check(plan) -> None:
    """Refuse a clone whose jobs cannot be rendered, before it is registered."""
    from airflow_rtml.demo.chain import Chain

    Chain().check_plan(plan, StackConfig.from_env().dags_folder / "jobs" / "demo")


def _resolve_plan(name: str, registry, builtin: dict | None = None):
    """The plan of chain ``name``: built in, or rebuilt from its registered base and sets (fingerprints checked)."""
    return registry.plan(name, _builtin_plans() if builtin is None else builtin)


def _print_plan(plan, users: dict[str, list[str]] | None = None) -> None:
    print(f"chain {plan.name}" + (f" (cloned from {plan.base})" if plan.base else ""))
    for n in plan.definition.order:
        inst = plan.instances[n]
        how = "new" if inst.owner == plan.name else f"shared with {inst.owner}"
        ident = inst.job_name or "batch"
        used = f"; used by {', '.join(users[inst.key])}" if users and inst.key in users else ""
        print(f"  {n:<20} {inst.kind.value:<8} {how:<24} {ident}{used}")
        for d, phys in inst.outputs.items():
            print(f"      -> {d}: {phys}")


def _cmd_experiment_clone(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    registry = _registry(args)
    plan, written = registry.clone(args.base, args.name, args.set or [], _builtin_plans(), check=_builtin_check)
    _print_plan(plan, registry.users())
    print(("registered" if written else "already registered (nothing changed)")
          + f" in {registry.path}: {len(plan.owned)} new node(s), {len(plan.shared)} shared")
    if args.start:
        _start_experiment(plan, args, t0)
    return 0


def _local_connections() -> None:
    """Point the ``flink_default`` (and other) connections at the local stack unless the environment sets them."""
    import os

    from airflow_rtml.local.stack import airflow_env

    for key, value in airflow_env(StackConfig.from_env()).items():
        if key.startswith("AIRFLOW_CONN_"):
            os.environ.setdefault(key, value)


def _start_experiment(plan, args: argparse.Namespace, t0: float) -> None:
    """Run the experiment's DAG (``rtml_experiment_<name>``, generated from the registry) on the stack's Airflow and
    wait until each of its new Flink jobs is RUNNING. Retry-safe: the DAG adopts jobs that run already."""
    from datetime import datetime, timezone

    import httpx

    from airflow_rtml.chain.dags import experiment_dag_id
    from airflow_rtml.exceptions import ChainError
    from airflow_rtml.hooks.flink import FlinkRestHook
    from airflow_rtml.local.airflow_api import AirflowApi

    _local_connections()
    dag = experiment_dag_id(plan.name)
    hook = FlinkRestHook(flink_conn_id=args.flink_conn_id)
    # A shared stream node runs once, under its owner: the clone reads its topics, so it must be running.
    idle = [plan.instances[n].job_name for n in plan.shared if plan.instances[n].job_name
            and hook.find_active_job(plan.instances[n].job_name) is None]
    if idle:
        raise ChainError(f"Experiment {plan.name!r} is registered, but the shared job(s) {idle} it reads from are not "
                         f"running, so its new jobs would read nothing. To fix this, start the chain that owns them "
                         f"first (its DAG), then run this clone again.")
    batch = [n for n in plan.owned if not plan.instances[n].kind.streaming]
    if batch:
        print(f"note: the new batch node(s) {batch} are not run by the generated DAG yet (docs/experiments.md): "
              "their outputs stay empty")
    api = AirflowApi(args.airflow_url or StackConfig.from_env().airflow_url)
    try:
        asked = datetime.now(timezone.utc)  # after the registry was written: a parse after this one sees it
        api.request_parse("rtml_clone_experiment")  # the file that generates the experiments' DAGs
        api.wait_fresh(dag, since=asked, timeout=min(args.timeout, 120))
        api.pause(dag, False)
        run = api.trigger(dag)
    except (httpx.HTTPError, TimeoutError) as e:
        raise ChainError(f"Experiment {plan.name!r} is registered, but its DAG {dag} could not be run from a fresh "
                         f"parse ({e}). To fix this, check that Airflow runs (rtml local up) and parses "
                         f"dags/rtml_experiments.py with RTML_EXPERIMENTS={_registry(args).path}; then run the clone "
                         f"again.") from None
    print(f"started DAG {dag} (run {run}); waiting for its new Flink jobs")
    state = api.wait_run(dag, run, timeout=max(1.0, args.timeout - (time.monotonic() - t0)))
    if state != "success":
        raise ChainError(f"DAG {dag} run {run} ended {state}: failed tasks {api.failed_tasks(dag, run)}. See its "
                         f"task logs in the Airflow UI; the clone is registered, so run it again once fixed.")
    names = [plan.instances[n].job_name for n in plan.owned if plan.instances[n].job_name]
    running = {n: [j.job_id for j in hook.find_jobs_by_name(n) if j.state.value == "RUNNING"] for n in names}
    missing = [n for n, ids in running.items() if not ids]
    if missing:
        raise ChainError(f"DAG {dag} succeeded but these jobs are not RUNNING: {missing}. See the Flink UI.")
    for n, ids in running.items():
        print(f"  running {n} ({ids[0]})")
    print(f"experiment {plan.name} started in {time.monotonic() - t0:.1f} s: {len(names)} new Flink job(s) "
          f"running, {len(plan.shared)} node(s) shared")


def _cmd_experiment_list(args: argparse.Namespace) -> int:
    registry = _registry(args)
    users = registry.users()
    chains = registry.chains()
    if not chains:
        print(f"no chains registered in {registry.path}")
        return 0
    for name, entry in sorted(chains.items()):
        own = [n for n in entry["order"] if entry["instances"][n]["owner"] == name]
        print(f"{name}: base {entry['base'] or '-'}, {len(own)} own node(s) of {len(entry['order'])}, sets "
              f"{json.dumps(entry['sets'], sort_keys=True)}")
    print("instances in use:")
    for key, chains_using in sorted(users.items()):
        print(f"  {key:<36} {', '.join(chains_using)}")
    return 0


def _cmd_experiment_show(args: argparse.Namespace) -> int:
    registry = _registry(args)
    _print_plan(_resolve_plan(args.name, registry), registry.users())
    return 0


def _cmd_experiment_stop(args: argparse.Namespace) -> int:
    registry = _registry(args)
    stop = registry.to_stop(args.name)
    jobs = [i["job_name"] for i in stop if i["job_name"]]
    if not args.dry_run:
        _pause_experiment_dag(args)  # first: a run still going would start a job again after its cancel
    if jobs and not args.dry_run:
        from airflow_rtml.hooks.flink import FlinkRestHook

        _local_connections()

        hook = FlinkRestHook(flink_conn_id=args.flink_conn_id)
        for name in jobs:
            for job in hook.find_jobs_by_name(name):
                if not job.state.is_terminal:
                    print(f"cancelling {name} ({job.job_id})")
                    hook.cancel_job(job.job_id)
    kept = sorted({i["key"] for i in registry.get(args.name)["instances"].values()} - {i["key"] for i in stop})
    if args.dry_run:
        print(f"would stop {[i['key'] for i in stop]}; kept (used by other chains): {kept}")
        return 0
    registry.forget(args.name)
    print(f"stopped {args.name}: {len(stop)} node(s) only it used ({len(jobs)} Flink job(s)); kept, used by other "
          f"chains: {kept or 'none'}")
    _airflow_quietly(args, lambda api: api.request_parse("rtml_clone_experiment"))  # its DAG goes with the entry
    return 0


def _airflow_quietly(args: argparse.Namespace, call) -> None:
    """``call(api)`` on the stack's Airflow; nothing when Airflow is not running (the DAG file's next parse then
    does what the call would have hastened)."""
    import httpx

    from airflow_rtml.local.airflow_api import AirflowApi

    try:
        call(AirflowApi(args.airflow_url or StackConfig.from_env().airflow_url))
    except httpx.HTTPError:
        pass


def _pause_experiment_dag(args: argparse.Namespace) -> None:
    """Pause the experiment's DAG and end its unfinished runs, so nothing submits its jobs again."""
    from airflow_rtml.chain.dags import experiment_dag_id

    dag = experiment_dag_id(args.name)

    def pause(api) -> None:
        if api.c.get(f"/dags/{dag}").status_code == 200:
            api.pause(dag, True)
            api.stop_runs(dag)

    _airflow_quietly(args, pause)


def _signal_line(topic: str):
    from airflow_rtml.progress import describe

    progress = _progress_printer()

    def line(signal) -> None:
        final = " final" if signal.final else ""
        progress(f"published {signal.stream} = {describe(signal.watermark_ms)} ({signal.watermark_ms}) "
                 f"from {signal.source}{final} to {topic}")

    return line


def _cmd_relay(args: argparse.Namespace) -> int:
    from airflow_rtml.progress_relay import relay

    published = relay(
        job_name=args.job_name, stream=args.stream, topic=args.topic, source=args.source or f"flink:{args.job_name}",
        base_url=args.flink_url, bootstrap_servers=args.bootstrap, vertex=args.vertex, interval=args.interval,
        once=args.once, final_on_finish=args.final_on_finish, commit_aware=args.commit_aware,
        on_publish=_signal_line(args.topic),
    )
    if not published:
        print(f"rtml: job {args.job_name!r} reports no progress yet; nothing published", file=sys.stderr)
    return 0


def _cmd_publish(args: argparse.Namespace) -> int:
    from airflow_rtml.progress import ProgressParseError, ProgressSignal, parse_watermark
    from airflow_rtml.progress_relay import kafka_config, make_producer, publish

    watermark = parse_watermark(args.watermark_ms, origin="--watermark-ms")
    if watermark is None:
        raise ProgressParseError("--watermark-ms is empty. To fix this, pass epoch milliseconds.")
    signal = ProgressSignal(args.stream, watermark, args.source, int(time.time() * 1000), args.final, args.run)
    publish(make_producer(kafka_config(bootstrap_servers=args.bootstrap)), args.topic, signal)
    _signal_line(args.topic)(signal)
    return 0


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _cmd_demo(args: argparse.Namespace) -> int:
    from airflow_rtml.demo.run import print_summary, run_demo

    summary = run_demo(hours=args.hours, keep=args.keep, speedup=args.speedup, seed=args.seed,
                       progress=_progress_printer(), backfill_hours=args.backfill_hours,
                       on_summary=print_summary,  # printed before the teardown, not after it
                       anomaly_hours=tuple(args.anomaly_hour or ()))
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    if not summary.get("truth_check", {}).get("ok"):
        print("rtml demo: the evaluation does not match the source's ground truth (see MISMATCH above)", file=sys.stderr)
        return 1
    if args.backfill_hours and not summary.get("backfill", {}).get("equal"):
        print("rtml demo: the backfill differs from the live feature job's output (see above)", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rtml", description="airflow-rtml command line.")
    sub = parser.add_subparsers(dest="group", required=True)
    local = sub.add_parser(
        "local",
        help="the embedded local stack: Flink session cluster, Kafka broker, Hive metastore, Airflow; supervised",
        description="State lives in $RTML_HOME (default ./.rtml); DAGs come from $RTML_DAGS_FOLDER (default ./dags).",
    )
    lsub = local.add_subparsers(dest="command", required=True)
    lsub.add_parser("install", help="install the Flink venv, the Flink Kafka connector and the Kafka broker jars")
    up = lsub.add_parser("up", help="install if needed, start everything, wait until healthy (idempotent)")
    up.add_argument("--no-install", action="store_true", help="fail instead of installing missing pieces")
    up.add_argument("--db", choices=("sqlite", "postgres"),
                    help="Airflow's metadata database, kept for later commands. Default: the last choice; else "
                         "postgres where Debian's PostgreSQL is installed (or root can apt-get it), started on "
                         "127.0.0.1:5433; else sqlite")
    lsub.add_parser("status", help="state (healthy / degraded / starting / down), restarts, PID and memory of each "
                                    "service (exit 1 unless all healthy)")
    lsub.add_parser("down", help="stop exactly the processes this stack started; data is kept")
    lsub.add_parser("env", help="print `export` lines that point the airflow CLI at the local stack")

    prog = sub.add_parser("progress", help="publish stream progress signals to a Kafka progress topic",
                          description="Signals are read by KafkaWatermarkTrigger (airflow_rtml.triggers.kafka).")
    psub = prog.add_subparsers(dest="command", required=True)
    rel = psub.add_parser("relay", help="publish a Flink job's progress whenever it advances (and every 30 s)")
    rel.add_argument("--job-name", required=True, help="the Flink job's name (followed across upgrades)")
    rel.add_argument("--vertex", help="vertex id or part of its name whose input watermark is the progress")
    rel.add_argument("--flink-url", default="http://127.0.0.1:8081", help="JobManager REST URL")
    rel.add_argument("--source", help="this producer's name (default flink:<job-name>)")
    rel.add_argument("--interval", type=_positive, default=1.0, help="seconds between polls (default 1)")
    rel.add_argument("--once", action="store_true", help="publish the current progress once and exit")
    rel.add_argument("--final-on-finish", action="store_true",
                     help="any FINISHED run ends the stream (bounded jobs, drained stops; not for jobs upgraded by "
                          "savepoint)")
    rel.add_argument("--commit-aware", action="store_true",
                     help="publish only progress a completed checkpoint committed (exactly-once sinks)")
    pub = psub.add_parser("publish", help="publish one progress signal (for producers outside Flink)")
    pub.add_argument("--watermark-ms", required=True, help="progress reached, epoch milliseconds")
    pub.add_argument("--source", required=True, help="this producer's name")
    pub.add_argument("--final", action="store_true", help="this run of the producer ended; it no longer holds the "
                                                          "stream back")
    pub.add_argument("--run", help="id of this run of the producer (the same for all its signals; a new id when it "
                                   "restarts): lets waiters tell a restart from two producers sharing --source")
    for p in (rel, pub):
        p.add_argument("--stream", required=True, help="the stream name")
        p.add_argument("--topic", required=True, help="the progress topic")
        p.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap servers")

    back = sub.add_parser("backfill", help="feature backfill tools")
    bsub = back.add_subparsers(dest="command", required=True)
    ver = bsub.add_parser(
        "verify", help="compare a backfill's versioned Hive table with the live job's topic (exit 1 unless equal)",
        description="Row for row over [--from, --to): mismatch / missing / extra ratios and SMAPE per feature "
                    "(Chronon's consistency metrics). The live rows are read from the live job's upsert topic (its "
                    "log keeps every version), the backfill's from the table's hourly partitions.")
    ver.add_argument("--topic", required=True, help="the live job's output topic")
    ver.add_argument("--table-path", required=True, help="the backfill's versioned table folder (dt=/hour= inside)")
    ver.add_argument("--key", action="append", required=True, help="entity key column (repeat for several)")
    ver.add_argument("--from", dest="start", required=True, help="range start, a whole hour (ISO-8601 or ms)")
    ver.add_argument("--to", dest="end", required=True, help="range end (exclusive), a whole hour")
    ver.add_argument("--version-column", default="version_ms")
    ver.add_argument("--feature", action="append", help="feature column to compare (default: all others)")
    ver.add_argument("--bootstrap", default="127.0.0.1:9092", help="Kafka bootstrap servers")
    ver.add_argument("--json", help="also write the report as JSON to this file")

    exp = sub.add_parser("experiment", help="clone a chain, sharing its unchanged nodes; list and stop clones",
                         description="A clone changes node parameters (--set node.param=value). A node whose "
                                     "definition and inputs are unchanged is shared: the clone reads its outputs "
                                     "and no second job runs. See docs/experiments.md.")
    esub = exp.add_subparsers(dest="command", required=True)
    ecl = esub.add_parser("clone", help="clone chain BASE as experiment NAME (retry-safe)")
    ecl.add_argument("base", help="the chain to clone: demo, or a registered experiment")
    ecl.add_argument("name", help="the experiment's name (lower-case letters, digits, _)")
    ecl.add_argument("--set", action="append", metavar="NODE.PARAM=VALUE", help="a changed parameter (repeat)")
    ecl.add_argument("--start", action="store_true",
                     help="then start its new nodes: run its DAG rtml_experiment_NAME and wait until each new Flink "
                          "job is RUNNING (prints the clone time)")
    ecl.add_argument("--timeout", type=_positive, default=600.0, help="seconds --start waits (default 600)")
    ecl.add_argument("--flink-conn-id", default="flink_default", help="the flink_rest connection of the cluster")
    esub.add_parser("list", help="registered chains and which chains use each node instance")
    esh = esub.add_parser("show", help="one chain's nodes: new or shared, job and output names")
    esh.add_argument("name")
    est = esub.add_parser("stop", help="stop what only this chain uses (its Flink jobs) and forget it (retry-safe)")
    est.add_argument("name")
    est.add_argument("--dry-run", action="store_true", help="only say what would be stopped and what is kept")
    est.add_argument("--flink-conn-id", default="flink_default", help="the flink_rest connection of the cluster")
    for p in (ecl, esub.choices["list"], esh, est):
        p.add_argument("--registry", help="the registry file (default $RTML_EXPERIMENTS or .rtml/experiments.json)")
    for p in (ecl, est):
        p.add_argument("--airflow-url", help="Airflow's URL (default: the local stack's)")

    demo = sub.add_parser("demo", help="run the real-time ML chain end to end on the local stack",
                          description="Starts the stack and the chain, plays the synthetic source, prints a summary.")
    demo.add_argument("--hours", type=int, default=3, help="event-time hours to run (default 3)")
    demo.add_argument("--speedup", type=_positive, default=60.0,
                      help="event-time seconds per wall-clock second (default 60: one hour per minute)")
    demo.add_argument("--seed", type=int, default=7, help="the synthetic source's seed")
    demo.add_argument("--keep", action="store_true", help="leave the stack and the chain running for exploring")
    demo.add_argument("--json", help="also write the summary as JSON to this file")
    demo.add_argument("--anomaly-hour", type=int, action="append", metavar="H",
                      help="withhold half the clicks of event-time hour H (0 = the first; repeat for more): the "
                           "training's data-quality check blocks exactly that hour, the others train")
    demo.add_argument("--backfill-hours", type=int, default=0, metavar="N",
                      help="then replay the first N archived hours through the live feature SQL and check the "
                           "result equals the live job's output row for row (DAG feature_backfill)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {"install": _cmd_install, "up": _cmd_up, "status": _cmd_status, "down": _cmd_down, "env": _cmd_env,
                "relay": _cmd_relay, "publish": _cmd_publish, "verify": _cmd_backfill_verify}
    if args.group == "experiment":
        handlers = {"clone": _cmd_experiment_clone, "list": _cmd_experiment_list, "show": _cmd_experiment_show,
                    "stop": _cmd_experiment_stop}
    if args.group == "demo":
        handlers = {None: _cmd_demo}
        args.command = None
    from airflow_rtml.exceptions import RtmlError
    from airflow_rtml.local.install import InstallError
    from airflow_rtml.local.stack import StackError

    try:
        return handlers[args.command](args)
    except (StackError, InstallError, FileNotFoundError, RtmlError) as exc:
        print(f"rtml: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rtml: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
