"""A programmable fake Flink JobManager (and TaskManager reporter) on loopback, for the answers a real cluster
cannot be made to give on demand: a subtask omitted, a value out of range, an HTML page, a 150 MB body, a 429
storm, a clock an hour off. Everything else about the waits is the real code (reader, triggers, hook, transport).

Two jobs run on it: ``victim`` (the hostile answers are its own, or the cluster's) and ``bystander`` (a normal
job that crosses the threshold when the test says so). Shapes follow Flink 2.2's REST answers.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

T = 1_767_265_200_000 - 1  # the threshold every wait in the suite waits for (window ending 2026-01-01T11:00Z)
LONG_MIN = -(2**63)

Answer = tuple[int, dict, bytes]  # status, headers, body
HTML_PAGE: Answer = (200, {"Content-Type": "text/html"}, b"<html><body>Sign in to the proxy</body></html>")


def _hex(seed: str) -> str:
    return hashlib.md5(seed.encode()).hexdigest()


@dataclass
class FakeJob:
    """One job: ``source -> sink`` with ``parallelism`` subtasks each; the sink's watermarks per subtask."""

    name: str
    parallelism: int = 2
    state: str = "RUNNING"
    watermarks: list = field(default_factory=lambda: [T - 60_000, T - 60_000])
    attempts: list = field(default_factory=lambda: [0, 0])
    checkpoints: list = field(default_factory=list)  # [(id, trigger_ms)] completed, oldest first
    checkpointing: bool = True
    savepoint_type: str | None = None  # the latest savepoint's checkpoint_type, e.g. "SYNC_SAVEPOINT" (a stop)
    start_ms: int = 1_700_000_000_000

    @property
    def jid(self) -> str:
        return _hex("job-" + self.name)

    @property
    def source(self) -> str:
        return _hex("src-" + self.name)

    @property
    def sink(self) -> str:
        return _hex("sink-" + self.name)


class FakeCluster:
    """State + routing. ``override(route, fn)`` replaces one route's answer (``fn(job, query) -> Answer``);
    routes: overview, detail, plan, watermarks, vertex_metrics, vertex, checkpoints, checkpoint_config,
    exceptions, jobmanager_config, taskmanagers, reporter."""

    def __init__(self) -> None:
        self.jobs = {j.jid: j for j in (FakeJob("victim"), FakeJob("bystander"))}
        self.overrides: dict[tuple[str, str | None], Callable] = {}
        self.clock_offset_ms = 0  # the JobManager's clock minus the real one
        self.hits: dict[str, int] = {}
        self.unknown: list[str] = []
        self.lock = threading.Lock()

    def job(self, name: str) -> FakeJob:
        return next(j for j in self.jobs.values() if j.name == name)

    def override(self, route: str, fn: Callable, job: str | None = None) -> None:
        """Answer ``route`` (for ``job`` only, or for every job) with ``fn(job, query)``."""
        self.overrides[(route, job)] = fn

    def now_ms(self) -> int:
        return int(time.time() * 1000) + self.clock_offset_ms

    # ------------------------------------------------------------------ answers
    @staticmethod
    def json(body, status: int = 200) -> Answer:
        return status, {"Content-Type": "application/json"}, json.dumps(body).encode()

    def overview(self, _job, _q) -> Answer:
        now = self.now_ms()
        return self.json({"jobs": [
            {"jid": j.jid, "name": j.name, "state": j.state, "start-time": j.start_ms,
             "end-time": -1 if j.state == "RUNNING" else now, "duration": now - j.start_ms,
             "last-modification": j.start_ms, "tasks": {"running": 2 * j.parallelism, "total": 2 * j.parallelism}}
            for j in self.jobs.values()]})

    def detail(self, j: FakeJob, _q) -> Answer:
        vertices = [{"id": vid, "name": name, "parallelism": j.parallelism, "status": "RUNNING"}
                    for vid, name in ((j.source, "Source: events"), (j.sink, "Window -> Sink: out"))]
        return self.json({"jid": j.jid, "name": j.name, "state": j.state, "start-time": j.start_ms,
                          "vertices": vertices, "now": self.now_ms()})

    def plan(self, j: FakeJob, _q) -> Answer:
        return self.json({"plan": {"jid": j.jid, "name": j.name, "nodes": [
            {"id": j.source, "inputs": []}, {"id": j.sink, "inputs": [{"id": j.source, "num": 0}]}]}})

    def watermarks(self, j: FakeJob, _q) -> Answer:
        return self.json([{"id": f"{i}.currentInputWatermark", "value": str(w)}
                          for i, w in enumerate(j.watermarks) if w is not None])

    def vertex_metrics(self, j: FakeJob, q) -> Answer:
        names = (q.get("get") or [""])[0].split(",")
        out = []
        for name in names:
            head, _, metric = name.partition(".")
            if head.isdigit() and int(head) < len(j.watermarks) and j.watermarks[int(head)] is not None:
                out.append({"id": name, "value": str(j.watermarks[int(head)])})
        return self.json(out)

    def vertex(self, j: FakeJob, _q) -> Answer:
        return self.json({"id": j.sink, "parallelism": j.parallelism, "now": self.now_ms(),
                          "subtasks": [{"subtask": i, "status": "RUNNING", "attempt": a}
                                       for i, a in enumerate(j.attempts)]})

    def checkpoints(self, j: FakeJob, _q) -> Answer:
        done = j.checkpoints[-1] if j.checkpoints else None
        latest = {"completed": {"id": done[0], "trigger_timestamp": done[1], "status": "COMPLETED"} if done else None,
                  "savepoint": {"id": 99, "checkpoint_type": j.savepoint_type} if j.savepoint_type else None,
                  "failed": None, "restored": None}
        history = [{"id": cid, "trigger_timestamp": ts, "status": "COMPLETED"} for cid, ts in reversed(j.checkpoints)]
        return self.json({"counts": {"completed": len(j.checkpoints), "failed": 0}, "latest": latest,
                          "history": history})

    def checkpoint_config(self, j: FakeJob, _q) -> Answer:
        if not j.checkpointing:
            return self.json({"errors": [f"Checkpointing is not enabled for this job ({j.jid})."]}, 404)
        return self.json({"mode": "exactly_once", "interval": 1000})

    def exceptions(self, j: FakeJob, _q) -> Answer:
        return self.json({"exceptionHistory": {"entries": [{"stacktrace": "java.lang.RuntimeException: boom"}]}})

    def jobmanager_config(self, _j, _q) -> Answer:
        return self.json([{"key": "web.refresh-interval", "value": "100"},
                          {"key": "metrics.fetcher.update-interval", "value": "100"},
                          {"key": "rest.cache.checkpoint-statistics.timeout", "value": "100"}])

    def taskmanagers(self, _j, _q) -> Answer:
        return self.json({"taskmanagers": []})

    def reporter(self, _j, _q) -> Answer:
        lines = []
        for j in self.jobs.values():
            for i, (w, a) in enumerate(zip(j.watermarks, j.attempts)):
                if w is not None:
                    lines.append(f'flink_taskmanager_job_task_currentInputWatermark{{job_id="{j.jid}",'
                                 f'task_id="{j.sink}",subtask_index="{i}",task_attempt_num="{a}"}} {w}')
        return 200, {"Content-Type": "text/plain"}, ("\n".join(lines) + "\n").encode()

    # ------------------------------------------------------------------ routing
    _ROUTES = [
        (re.compile(r"^/jobs/overview$"), "overview"),
        (re.compile(r"^/jobs/([0-9a-f]{32})$"), "detail"),
        (re.compile(r"^/jobs/([0-9a-f]{32})/plan$"), "plan"),
        (re.compile(r"^/jobs/([0-9a-f]{32})/vertices/[0-9a-f]{32}/watermarks$"), "watermarks"),
        (re.compile(r"^/jobs/([0-9a-f]{32})/vertices/[0-9a-f]{32}/metrics$"), "vertex_metrics"),
        (re.compile(r"^/jobs/([0-9a-f]{32})/vertices/[0-9a-f]{32}$"), "vertex"),
        (re.compile(r"^/jobs/([0-9a-f]{32})/checkpoints$"), "checkpoints"),
        (re.compile(r"^/jobs/([0-9a-f]{32})/checkpoints/config$"), "checkpoint_config"),
        (re.compile(r"^/jobs/([0-9a-f]{32})/exceptions$"), "exceptions"),
        (re.compile(r"^/jobmanager/config$"), "jobmanager_config"),
        (re.compile(r"^/taskmanagers$"), "taskmanagers"),
        (re.compile(r"^/metrics$"), "reporter"),
    ]

    def handle(self, path: str) -> Answer:
        url = urlsplit(path)
        query = parse_qs(url.query)
        for pattern, route in self._ROUTES:
            m = pattern.match(url.path)
            if not m:
                continue
            with self.lock:
                self.hits[route] = self.hits.get(route, 0) + 1
                job = self.jobs.get(m.group(1)) if m.groups() else None
                if m.groups() and job is None:
                    return self.json({"errors": ["Job could not be found."]}, 404)
                fn = self.overrides.get((route, job.name if job else None)) or self.overrides.get((route, None))
                return (fn or getattr(self, route))(job, query)
        with self.lock:
            self.unknown.append(url.path)  # a request no Flink REST client should make
        return self.json({"errors": ["Not found."]}, 404)


class FakeServer:
    """:class:`FakeCluster` served over HTTP/1.1 on 127.0.0.1 (a port of its own); ``url`` is its base URL.
    An answer body of ``b"<hang>"`` never completes (the connection stays open until the server stops)."""

    def __init__(self, cluster: FakeCluster):
        self.cluster = cluster
        self._stop = threading.Event()
        stop = self._stop

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802
                status, headers, body = cluster.handle(self.path)
                if body == b"<hang>":
                    stop.wait(30)
                    return
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    for i in range(0, len(body), 1 << 16):
                        self.wfile.write(body[i:i + (1 << 16)])
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client stopped reading (the size cap): fine

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()
