"""Waiter density: what N concurrent watermark waits cost one triggerer, ours vs the peer a user writes today.

For each configuration (implementation x N waits x poll interval) a fresh Python process emulates one triggerer:
one asyncio loop, one ``SharedStreamManager`` built from the ``[triggerer]`` config as ``TriggerRunner`` builds it,
and one task per trigger running the body of ``TriggerRunner.run_trigger`` (Airflow 3.3.2): greenback portal,
then ``SharedStreamManager.subscribe()`` + ``filter_shared_stream()`` for a trigger with a ``shared_stream_key()``,
else ``run()``. What is left out is the triggerer's DB/supervisor plumbing, equal for every implementation.

Implementations:

* ``ours`` — ``airflow_rtml.triggers.watermark.FlinkWatermarkTrigger`` by job name (N waits over ``--jobs`` jobs;
  waits on one job share one poll loop).
* ``ours-reporter`` — the same trigger on a connection with ``metrics_reporter_port``: job states from the shared
  ``/jobs/overview``, watermarks of every job from one scrape of the TaskManager's Prometheus reporter (the fake
  serves ``/taskmanagers`` and the reporter's ``/metrics`` on its own port; both are counted).
* ``peer`` — ``airflow.providers.http.triggers.http.HttpEventTrigger`` per wait, GET on the job's sink vertex
  ``/watermarks`` with an async response check parsing the watermark (``peer_watermark_check.py``); no shared key,
  so each wait runs its own ``run()`` loop. DESIGN.md section 6 explains why this, not ``HttpSensor``, is the
  closest deferred peer.
* ``floor`` — ``DateTimeTrigger`` far in the future: the cost of N idle triggerer tasks and nothing else.
* ``floor-shared`` — N no-op ``BaseEventTrigger`` subscribers of Airflow's shared streams (one per job, a constant
  every poll, no I/O), each filter looking at every snapshot and doing nothing: what Airflow itself costs for N
  triggers subscribed to shared streams, with a task wake-up per wait and snapshot (what ours cost before its
  waits parked between the snapshots that concern them).

The JobManager is ``fake_jobmanager.py`` in its own process (its CPU is not the triggerer's), port 18081 by
default, ``--jobs`` RUNNING jobs; the thresholds are never reached, so every wait stays open for the window.
Trigger start times are spread uniformly over one poll interval (waits arrive over time in a real deployment),
or all at once (``burst``).

Measured per configuration, over a fixed window after a warm-up:

* JobManager requests/min — the fake server's own counter, reporter scrapes included, (``GET /__count``) at window start and end;
* RSS added — median RSS over the window minus RSS before the first trigger was created (after imports and
  ``gc.collect()``), also scaled to 1,000 waits (only meaningful for large N: fixed costs dominate at N=10);
* CPU % of the process (user+system, all threads; 100 % = one core) over the window;
* event-loop lag — a probe identical to ``TriggerRunner.block_watchdog`` (sleep 0.1 s, measure), overshoot p50/p99/max;
* "blocked" warnings — probe iterations that would log "Triggerer's async thread was blocked" (elapsed >
  ``[triggerer] blocked_main_thread_warning_threshold``, 0.2 s by default, i.e. overshoot > 0.1 s); also the count
  of overshoots > 0.2 s;
* trigger failures, events fired (must be 0) and warning/error log lines during the window;
* contention: the fake server's CPU %, the whole machine's busy % (100 % = all cores) and the part of it not
  explained by the benchmark's two processes; the 1-minute load average before and after each configuration.

Usage (from the repo root)::

    .venv/bin/python benchmarks/waiter_density.py            # full run, ~14 min -> benchmarks/results/waiter_density.json
    .venv/bin/python benchmarks/waiter_density.py --quick    # ~2 min smoke run  -> benchmarks/results/waiter_density.quick.json
    .venv/bin/python benchmarks/waiter_density.py --scale --jobs 100   # ~14 min -> benchmarks/results/waiter_density.scale.json

Full plan: N = 10, 100, 1,000 at a 5 s poll (60 s windows) and at a 1 s poll (30 s windows), waits started
spread over one poll interval; N = 1,000 at 5 s with a *burst* start (every trigger created at once, as after a
triggerer restart; 30 s windows); the floor at N = 1,000 (30 s). Ours and the peer run back to back with the same
warm-up and window. ``--scale``: 1,000 and 10,000 waits at a 5 s poll (60 s windows), ours on each source, the
peer at 1,000, and both floors at both N. ``--only``, ``--n``, ``--poll``, ``--start`` select a subset of the plan.

Needs ``apache-airflow-providers-http`` for the peer. Uses 127.0.0.1:<--port> only (default 18081).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import functools
import gc
import json
import os
import platform
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
FAR_FUTURE_MS = 4_102_444_800_000  # 2100-01-01: never reached during a run
IMPLS = ("ours", "ours-reporter", "ours-auto", "peer", "floor", "floor-shared")
#: The connection each of our implementations waits through (env in main()).
OUR_CONNS = {"ours": "flink_default", "ours-reporter": "flink_reporter", "ours-auto": "flink_auto"}
WINDOW_START, WINDOW_END = "=== waiter_density window start ===", "=== waiter_density window end ==="


def _hex(seed: str) -> str:
    import hashlib

    return hashlib.md5(seed.encode()).hexdigest()


# ====================================================================== child: one configuration, one "triggerer"
@functools.cache
def shared_floor_trigger_class() -> type:
    """The ``floor-shared`` trigger (defined on first use: the parent process does not import Airflow's triggers)."""
    from airflow.triggers.base import BaseEventTrigger

    class SharedFloorTrigger(BaseEventTrigger):
        """A no-op subscriber of a shared stream that yields a constant every ``poll_interval`` (no I/O)."""

        def __init__(self, stream: str, poll_interval: float):
            super().__init__()
            self.stream, self.poll_interval = stream, poll_interval

        def serialize(self):
            return (f"{__name__}.SharedFloorTrigger", {"stream": self.stream, "poll_interval": self.poll_interval})

        def shared_stream_key(self):
            return ("waiter_density.floor-shared", self.stream, self.poll_interval)

        @classmethod
        async def open_shared_stream(cls, kwargs):
            while True:
                yield kwargs["stream"]
                await asyncio.sleep(kwargs["poll_interval"])

        async def filter_shared_stream(self, shared_stream):
            async for _ in shared_stream:
                pass
            yield  # pragma: no cover - never reached: the stream does not end

        async def run(self):  # pragma: no cover - always shared here
            raise NotImplementedError
            yield

    return SharedFloorTrigger


def make_triggers(impl: str, n: int, jobs: int, poll: float) -> list:
    """N trigger objects, built from kwargs as the triggerer deserializes them. Wait i is on job ``i % jobs``."""
    triggers = []
    if impl in OUR_CONNS:
        from airflow_rtml.triggers.watermark import FlinkWatermarkTrigger

        deadline = time.time() + 86_400
        conn_id = OUR_CONNS[impl]
        for i in range(n):
            kwargs = FlinkWatermarkTrigger(threshold_ms=FAR_FUTURE_MS + i, job_name=f"bench-job-{i % jobs}",
                                           poll_interval=poll, deadline=deadline,
                                           flink_conn_id=conn_id).serialize()[1]
            triggers.append(FlinkWatermarkTrigger(**kwargs))
    elif impl == "peer":
        from airflow.providers.http.triggers.http import HttpEventTrigger

        for i in range(n):
            j = i % jobs
            kwargs = HttpEventTrigger(
                response_check_path="peer_watermark_check.watermark_reached", http_conn_id="flink_http",
                method="GET", endpoint=f"/jobs/{_hex(f'job-{j}')}/vertices/{_hex(f'sink-{j}')}/watermarks",
                poll_interval=poll,
            ).serialize()[1]
            triggers.append(HttpEventTrigger(**kwargs))
    elif impl == "floor":
        from airflow.providers.standard.triggers.temporal import DateTimeTrigger

        moment = dt.datetime(2100, 1, 1, tzinfo=dt.timezone.utc)
        triggers = [DateTimeTrigger(moment=moment) for _ in range(n)]
    elif impl == "floor-shared":
        cls = shared_floor_trigger_class()
        triggers = [cls(**cls(stream=f"bench-job-{i % jobs}", poll_interval=poll).serialize()[1]) for i in range(n)]
    else:
        raise ValueError(impl)
    return triggers


class Outcomes:
    def __init__(self) -> None:
        self.events = 0
        self.failures: list[str] = []
        self.finished = 0


async def run_trigger(trigger_id: int, trigger, shared_streams, outcomes: Outcomes) -> None:
    """The body of Airflow 3.3.2 ``TriggerRunner.run_trigger`` without the DB/supervisor/span plumbing."""
    import greenback
    from airflow.triggers.base import BaseEventTrigger

    if not os.environ.get("AIRFLOW_DISABLE_GREENBACK_PORTAL", "").lower() == "true":
        await greenback.ensure_portal()
    event_trigger = trigger if isinstance(trigger, BaseEventTrigger) else None
    shared_key = None
    try:
        if event_trigger is not None:
            try:
                shared_key = event_trigger.shared_stream_key()
            except Exception:  # noqa: BLE001 - as the triggerer: fall back to run()
                shared_key = None
        if shared_key is not None and event_trigger is not None:
            shared_stream = shared_streams.subscribe(trigger_id=trigger_id, trigger=event_trigger, key=shared_key)
            event_stream = event_trigger.filter_shared_stream(shared_stream)
        else:
            event_stream = trigger.run()
        async for _event in event_stream:
            outcomes.events += 1
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - counted and reported
        outcomes.failures.append(repr(exc)[:300])
    finally:
        if shared_key is not None:
            with suppress(Exception):
                await shared_streams.unsubscribe(trigger_id, shared_key)
        with suppress(Exception):
            await trigger.cleanup()
        outcomes.finished += 1


async def http_get_json(port: int, path: str) -> dict:
    """One GET to the fake JobManager without blocking the loop (and without the clients under test)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        raw = await reader.read()
    finally:
        writer.close()
    return json.loads(raw.split(b"\r\n\r\n", 1)[1])


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    s = sorted(values)
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


async def measure(cfg: dict) -> dict:
    import psutil
    from airflow.configuration import conf
    from airflow.triggers.shared_stream import SharedStreamManager

    # Pre-import every implementation's modules so the RSS baseline is comparable across implementations.
    import aiohttp  # noqa: F401
    import httpx  # noqa: F401
    import airflow.providers.http.triggers.http  # noqa: F401
    import airflow.providers.standard.triggers.temporal  # noqa: F401
    import airflow_rtml.triggers.watermark  # noqa: F401
    import peer_watermark_check  # noqa: F401

    proc = psutil.Process()
    server = psutil.Process(cfg["server_pid"])
    threshold = conf.getfloat("triggerer", "blocked_main_thread_warning_threshold")
    shared_streams = SharedStreamManager(
        max_subscriber_queue=conf.getint("triggerer", "shared_stream_subscriber_queue_size"),
        ack_timeout=conf.getfloat("triggerer", "shared_stream_ack_timeout"),
        cohort_grace_period=conf.getfloat("triggerer", "shared_stream_cohort_grace_period"),
    )

    window = {"on": False}
    lag: list[float] = []
    rss: list[int] = []
    stop = asyncio.Event()

    async def watchdog() -> None:  # TriggerRunner.block_watchdog, recording instead of logging
        while not stop.is_set():
            last = time.monotonic()
            await asyncio.sleep(0.1)
            if window["on"]:
                lag.append(time.monotonic() - last)

    async def rss_sampler() -> None:
        while not stop.is_set():
            await asyncio.sleep(1.0)
            if window["on"]:
                rss.append(proc.memory_info().rss)

    probes = [asyncio.create_task(watchdog()), asyncio.create_task(rss_sampler())]
    await asyncio.sleep(1.0)
    gc.collect()
    rss_base = proc.memory_info().rss

    n, poll = cfg["n"], cfg["poll"]
    triggers = make_triggers(cfg["impl"], n, cfg["jobs"], poll)
    outcomes = Outcomes()
    tasks: list[asyncio.Task] = []
    rng = random.Random(42)
    offsets = sorted(rng.uniform(0, poll) for _ in range(n)) if cfg["start"] == "spread" else [0.0] * n
    t_create = time.monotonic()
    for trigger_id, (offset, trigger) in enumerate(zip(offsets, triggers), start=1):
        delay = t_create + offset - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(run_trigger(trigger_id, trigger, shared_streams, outcomes),
                                         name=f"trigger-{trigger_id}"))
    await asyncio.sleep(max(0.0, t_create + cfg["warmup"] - time.monotonic()))

    # ---------------------------------------------------------------- the window
    count0 = await http_get_json(cfg["port"], "/__count")
    print(WINDOW_START, flush=True)  # the parent counts warning/error log lines between the markers
    events0, failures0 = outcomes.events, len(outcomes.failures)
    cpu0, scpu0, sys0 = proc.cpu_times(), server.cpu_times(), psutil.cpu_times()
    w0 = time.monotonic()
    window["on"] = True
    await asyncio.sleep(cfg["duration"])
    window["on"] = False
    print(WINDOW_END, flush=True)
    wall = time.monotonic() - w0
    cpu1, scpu1, sys1 = proc.cpu_times(), server.cpu_times(), psutil.cpu_times()
    count1 = await http_get_json(cfg["port"], "/__count")
    alive = sum(1 for t in tasks if not t.done())
    outcomes_failures = list(outcomes.failures)
    window_events, window_failures = outcomes.events - events0, outcomes.failures[failures0:]
    threads = proc.num_threads()
    fds = proc.num_fds()

    # ---------------------------------------------------------------- teardown (as the triggerer on shutdown)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await shared_streams.stop_all()
    stop.set()
    for p in probes:
        p.cancel()
    await asyncio.gather(*probes, return_exceptions=True)

    by_path = {k: count1["by_path"].get(k, 0) - count0["by_path"].get(k, 0) for k in count1["by_path"]}
    requests = count1["total"] - count0["total"]
    overshoot = [x - 0.1 for x in lag]
    rss_steady = statistics.median(rss) if rss else proc.memory_info().rss
    added = (rss_steady - rss_base) / 2**20
    cpu = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / wall * 100
    server_cpu = (scpu1.user + scpu1.system - scpu0.user - scpu0.system) / wall * 100
    busy = lambda t: sum(t) - t.idle - getattr(t, "iowait", 0)  # noqa: E731
    machine_busy = (busy(sys1) - busy(sys0)) / max(1e-9, sum(sys1) - sum(sys0)) * 100
    other_busy = machine_busy - (cpu + server_cpu) / psutil.cpu_count()
    return {
        **{k: cfg[k] for k in ("impl", "n", "poll", "start", "jobs", "warmup", "duration")},
        "window_s": round(wall, 2),
        "requests": requests,
        "requests_per_min": round(requests / wall * 60, 1),
        "requests_by_path_per_min": {k: round(v / wall * 60, 1) for k, v in sorted(by_path.items()) if v},
        "rss_base_mb": round(rss_base / 2**20, 1),
        "rss_added_mb": round(added, 1),
        "rss_added_peak_mb": round((max(rss) - rss_base) / 2**20, 1) if rss else None,
        "rss_added_per_1000_mb": round(added * 1000 / n, 1),
        "cpu_pct": round(cpu, 2),
        "cpu_pct_per_1000": round(cpu * 1000 / n, 2),
        "server_cpu_pct": round(server_cpu, 2),
        "machine_busy_pct": round(machine_busy, 1),
        "machine_busy_other_pct": round(other_busy, 1),
        "lag_samples": len(lag),
        "lag_p50_ms": round(_percentile(overshoot, 0.5) * 1000, 2) if overshoot else None,
        "lag_p99_ms": round(_percentile(overshoot, 0.99) * 1000, 2) if overshoot else None,
        "lag_max_ms": round(max(overshoot) * 1000, 2) if overshoot else None,
        "blocked_warnings": sum(1 for x in lag if x > threshold),
        "blocked_threshold_s": threshold,
        "overshoots_over_200ms": sum(1 for x in overshoot if x > 0.2),
        "waits_alive_at_end": alive,
        "events_fired": window_events,
        "trigger_failures": len(outcomes_failures),
        "trigger_failures_in_window": len(window_failures),
        "trigger_failure_samples": outcomes_failures[:3],
        "threads": threads,
        "fds": fds,
    }


def child_main(cfg_json: str, out: str) -> None:
    cfg = json.loads(cfg_json)
    sys.path.insert(0, str(HERE))  # peer_watermark_check: the user's check module, reloaded by the peer
    result = asyncio.run(measure(cfg))
    Path(out).write_text(json.dumps(result))


# ====================================================================== parent: orchestrate, collect, report
def machine_facts() -> dict:
    import importlib.metadata as md

    import psutil

    def version(dist: str) -> str | None:
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            return None

    model = None
    with suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    commit = None
    with suppress(Exception):
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "airflow_rtml"],
                               capture_output=True, text=True, check=True).stdout.strip()
        commit += " (airflow_rtml has uncommitted changes)" if dirty else ""
    return {
        "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "platform": platform.platform(),
        "cpu_model": model,
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "airflow": version("apache-airflow"),
        "airflow_core": version("apache-airflow-core"),
        "apache_airflow_providers_http": version("apache-airflow-providers-http"),
        "airflow_rtml": version("airflow-rtml"),
        "httpx": version("httpx"),
        "aiohttp": version("aiohttp"),
        "git_commit": commit,
    }


def port_free(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def start_server(port: int, jobs: int, logdir: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "fake_jobmanager.py"), "--port", str(port), "--jobs", str(jobs)],
        stdout=subprocess.PIPE, stderr=open(logdir / "fake_jobmanager.log", "w"), text=True,
    )
    line = proc.stdout.readline()
    if not line.startswith("READY"):
        proc.kill()
        raise SystemExit(f"fake JobManager did not start: {line!r}; see {logdir / 'fake_jobmanager.log'}")
    return proc


def log_lines_in_window(path: Path) -> dict:
    """Warning/error lines the triggers logged during the window (Airflow logs through structlog to stdout)."""
    lines, inside = [], False
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith(WINDOW_START):
            inside = True
        elif line.startswith(WINDOW_END):
            break
        elif inside and ("[warning" in line or "[error" in line or " WARNING " in line or " ERROR " in line):
            lines.append(line)
    return {"warning_log_lines": len(lines), "warning_log_samples": [ln[:300] for ln in lines[:3]]}


def run_config(cfg: dict, env: dict, logdir: Path) -> dict:
    name = f"{cfg['impl']}-n{cfg['n']}-p{cfg['poll']:g}-{cfg['start']}"
    out = logdir / f"{name}.json"
    load0 = os.getloadavg()[0]
    started = time.monotonic()
    with open(logdir / f"{name}.log", "w") as log:
        rc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--_child", json.dumps(cfg),
                             "--_out", str(out)], env=env, stdout=log, stderr=subprocess.STDOUT,
                            timeout=cfg["warmup"] + cfg["duration"] + 300).returncode
    if rc != 0 or not out.exists():
        tail = (logdir / f"{name}.log").read_text()[-3000:]
        raise SystemExit(f"configuration {name} failed (rc={rc}):\n{tail}")
    result = json.loads(out.read_text())
    result.update(log_lines_in_window(logdir / f"{name}.log"))
    result["load1_start"], result["load1_end"] = round(load0, 2), round(os.getloadavg()[0], 2)
    result["process_wall_s"] = round(time.monotonic() - started, 1)
    return result


def plan(quick: bool, scale: bool = False) -> list[dict]:
    """Configurations in run order: ours (REST, reporter, auto-detected source) and the peer back to back for
    each (poll, N, start). ``scale``: 1,000 and 10,000 waits (run with ``--jobs 100``); the peer only at 1,000
    (10,000 HttpEventTrigger loops cannot keep a 5 s poll on 2 cores: it would measure a saturated CPU); the
    floors at both, so what Airflow itself costs per trigger is measured in the same run."""
    def pair(n: int, poll: float, warmup: float, duration: float, start: str = "spread",
             impls: tuple = ("ours", "ours-reporter", "ours-auto", "peer")) -> list[dict]:
        return [dict(impl=impl, n=n, poll=poll, warmup=warmup, duration=duration, start=start) for impl in impls]

    if scale:
        floors = ("floor", "floor-shared")
        return (pair(1000, 5.0, 12.0, 60.0, impls=("ours", "ours-reporter", "ours-auto", "peer", *floors))
                + pair(10000, 5.0, 20.0, 60.0, impls=("ours", "ours-reporter", "ours-auto", *floors)))
    if quick:
        return [c for n in (10, 1000) for c in pair(n, 5.0, 7.0, 15.0)]
    cfgs = [c for n in (10, 100, 1000) for c in pair(n, 5.0, 12.0, 60.0)]
    cfgs += [c for n in (10, 100, 1000) for c in pair(n, 1.0, 6.0, 30.0)]
    # A triggerer (re)start creates every deferred trigger in one pass: the waits poll in lock-step.
    cfgs += pair(1000, 5.0, 12.0, 30.0, start="burst")
    cfgs += [dict(impl="floor", n=1000, poll=5.0, warmup=12.0, duration=30.0, start="spread")]
    return cfgs


def _fmt(v, nd=1) -> str:
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:,.{nd}f}"
    return f"{v:,}"


LABELS = {"ours": "ours (FlinkWatermarkTrigger), REST source", "ours-reporter": "ours, reporter source set explicitly",
          "ours-auto": "ours, source auto-detected (no extras)", "peer": "peer (HttpEventTrigger)",
          "floor": "floor (DateTimeTrigger)",
          "floor-shared": "floor-shared (no-op shared-stream subscribers)"}


def _key(r: dict, impl: str | None = None) -> tuple:
    return (impl or r["impl"], r["n"], r["poll"], r["start"])


def markdown(results: list[dict]) -> str:
    by = {_key(r): r for r in results}
    lines = [
        "| poll | start | N waits | implementation | JM requests/min | peer ÷ ours | RSS added MB "
        "| RSS MB per 1,000 waits | CPU % | loop lag p50 / p99 / max ms | blocked warnings | failures "
        "| machine busy (others) % |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        ratio = "—"
        if r["impl"].startswith("ours") and (peer := by.get(_key(r, "peer"))) and r["requests_per_min"]:
            ratio = f"{peer['requests_per_min'] / r['requests_per_min']:,.1f}×"
        lines.append(
            f"| {r['poll']:g} s | {r['start']} | {r['n']:,} | {LABELS[r['impl']]} | {_fmt(r['requests_per_min'], 0)} "
            f"| {ratio} | {_fmt(r['rss_added_mb'])} | {_fmt(r['rss_added_per_1000_mb'])} | {_fmt(r['cpu_pct'])} "
            f"| {_fmt(r['lag_p50_ms'])} / {_fmt(r['lag_p99_ms'])} / {_fmt(r['lag_max_ms'])} "
            f"| {r['blocked_warnings']} | {r['trigger_failures']} | {_fmt(r['machine_busy_other_pct'], 0)} |"
        )
    return "\n".join(lines)


def targets(results: list[dict]) -> list[dict]:
    """The issue's targets, checked on every N=1000 run of ours against the peer's run of the same shape."""
    by = {_key(r): r for r in results}
    checks = []
    for r in results:
        if not r["impl"].startswith("ours") or r["n"] not in (1000, 10000):
            continue
        peer = by.get(_key(r, "peer"))
        ratio = peer["requests_per_min"] / r["requests_per_min"] if peer and r["requests_per_min"] else None
        shape = {"impl": r["impl"], "poll": r["poll"], "start": r["start"]}
        checks += [
            {**shape, "target": "JobManager requests >= 100x fewer than the peer at 1,000 waits",
             "measured": None if ratio is None else round(ratio, 1), "met": None if ratio is None else ratio >= 100},
            {**shape, "target": "RSS <= 50 MB per 1,000 waits", "measured": r["rss_added_per_1000_mb"],
             "met": r["rss_added_per_1000_mb"] <= 50},
            {**shape, "target": "CPU <= 3 % per 1,000 waits (DESIGN.md section 6, stated for a 5 s poll)", "measured": r["cpu_pct_per_1000"],
             "met": r["cpu_pct_per_1000"] <= 3},
            {**shape, "target": "event-loop lag p99 <= 50 ms", "measured": r["lag_p99_ms"],
             "met": r["lag_p99_ms"] is not None and r["lag_p99_ms"] <= 50},
            {**shape, "target": "0 blocked-loop warnings", "measured": r["blocked_warnings"],
             "met": r["blocked_warnings"] == 0},
        ]
    return checks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="~2 min smoke run (N=10 and 1000, 5 s poll, 15 s windows)")
    parser.add_argument("--scale", action="store_true",
                        help="1,000 and 10,000 waits at a 5 s poll (use with --jobs 100) -> waiter_density.scale.json")
    parser.add_argument("--port", type=int, default=18081, help="port of the fake JobManager (default 18081)")
    parser.add_argument("--jobs", type=int, default=10, help="distinct Flink jobs the waits spread over (default 10)")
    parser.add_argument("--only", nargs="+", choices=IMPLS, help="run only these implementations")
    parser.add_argument("--n", nargs="+", type=int, help="run only these N (from the plan)")
    parser.add_argument("--poll", nargs="+", type=float, help="run only these poll intervals (from the plan)")
    parser.add_argument("--start", choices=("spread", "burst"), help="run only configurations with this start")
    parser.add_argument("--out", type=Path, help="result JSON (default benchmarks/results/waiter_density[.quick].json)")
    parser.add_argument("--_child", help=argparse.SUPPRESS)
    parser.add_argument("--_out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._child:
        child_main(args._child, args._out)
        return

    try:
        import airflow.providers.http.triggers.http  # noqa: F401
    except ImportError:
        raise SystemExit("The peer needs apache-airflow-providers-http. To fix this, install the project's "
                         "benchmark dependencies (it is not installed in this environment).")
    if not port_free(args.port):
        raise SystemExit(f"127.0.0.1:{args.port} is in use. To fix this, pass --port with a free port.")

    out = args.out or RESULTS / ("waiter_density.quick.json" if args.quick else
                                 "waiter_density.scale.json" if args.scale else "waiter_density.json")
    cfgs = [c for c in plan(args.quick, args.scale) if (not args.only or c["impl"] in args.only)
            and (not args.n or c["n"] in args.n) and (not args.poll or c["poll"] in args.poll)
            and (not args.start or c["start"] == args.start)]
    est = sum(c["warmup"] + c["duration"] + 6 for c in cfgs)
    facts = machine_facts()
    load_start = os.getloadavg()
    print(f"waiter density: {len(cfgs)} configurations, ~{est / 60:.0f} min; fake JobManager on 127.0.0.1:{args.port} "
          f"with {args.jobs} jobs; load average at start {load_start[0]:.2f}", flush=True)

    logdir = Path(tempfile.mkdtemp(prefix="waiter_density-"))
    airflow_home = logdir / "airflow_home"  # never the developer's or the running stack's AIRFLOW_HOME
    airflow_home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        AIRFLOW_HOME=str(airflow_home),
        AIRFLOW_CONN_FLINK_DEFAULT=f"flink-rest://127.0.0.1:{args.port}?watermark_source=rest",
        AIRFLOW_CONN_FLINK_AUTO=f"flink-rest://127.0.0.1:{args.port}",
        AIRFLOW_CONN_FLINK_REPORTER=f"flink-rest://127.0.0.1:{args.port}?metrics_reporter_port={args.port}",
        AIRFLOW_CONN_FLINK_HTTP=f"http://127.0.0.1:{args.port}",
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        PYTHONUNBUFFERED="1",
    )
    server = start_server(args.port, args.jobs, logdir)
    results = []
    try:
        for i, cfg in enumerate(cfgs, 1):
            cfg = dict(cfg, jobs=args.jobs, port=args.port, server_pid=server.pid)
            print(f"[{i}/{len(cfgs)}] {cfg['impl']:13} N={cfg['n']:<5} poll={cfg['poll']:g}s {cfg['start']:6}: warm-up {cfg['warmup']:g}s, "
                  f"window {cfg['duration']:g}s ...", end=" ", flush=True)
            r = run_config(cfg, env, logdir)
            results.append(r)
            print(f"{r['requests_per_min']:,.0f} req/min, +{r['rss_added_mb']:.1f} MB, CPU {r['cpu_pct']:.1f} %, "
                  f"lag p99 {_fmt(r['lag_p99_ms'])} ms, blocked {r['blocked_warnings']}, "
                  f"failures {r['trigger_failures']} (others kept the machine {r['machine_busy_other_pct']:.0f} % busy)", flush=True)
    finally:
        server.terminate()
        with suppress(subprocess.TimeoutExpired):
            server.wait(5)
        if server.poll() is None:
            server.kill()
    load_end = os.getloadavg()

    for r in results:
        r.pop("port", None)
    doc = {
        "benchmark": "waiter_density",
        "description": "N concurrent watermark waits in one emulated Airflow 3.3 triggerer loop: ours "
                       "(FlinkWatermarkTrigger through Airflow's SharedStreamManager) vs the peer (one "
                       "HttpEventTrigger run() per wait) vs the floor (DateTimeTrigger); fake JobManager in its "
                       "own process. See benchmarks/waiter_density.py for the method.",
        "command": " ".join(["benchmarks/waiter_density.py", *sys.argv[1:]]),
        "quick": args.quick,
        "machine": facts,
        "load_average_1min": {"start": round(load_start[0], 2), "end": round(load_end[0], 2)},
        "load_average_start": [round(x, 2) for x in load_start],
        "load_average_end": [round(x, 2) for x in load_end],
        "setup": {"jobs": args.jobs, "vertices_per_job": 2, "parallelism": 2, "fake_jobmanager_port": args.port,
                  "start": "spread: trigger starts uniform over one poll interval (waits arrive over time); "
                           "burst: all created at once, as after a triggerer restart",
                  "greenback_portal": os.environ.get("AIRFLOW_DISABLE_GREENBACK_PORTAL", "").lower() != "true",
                  "peer_check": "benchmarks/peer_watermark_check.py:watermark_reached"},
        "results": results,
        "targets": targets(results),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print()
    print(markdown(results))
    print()
    for t in doc["targets"]:
        met = "n/a" if t["met"] is None else ("met" if t["met"] else "NOT met")
        print(f"  target ({t['impl']}, {t['poll']:g} s poll, {t['start']} start) {t['target']}: {t['measured']} -> {met}")
    print(f"\nload average (1 min) start {load_start[0]:.2f}, end {load_end[0]:.2f}; results: {out}; logs: {logdir}")


if __name__ == "__main__":
    main()
