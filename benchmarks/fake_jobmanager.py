"""A fake Flink JobManager REST endpoint for density benchmarks: many waiters, no real cluster needed.

It answers only what watermark waiters read, in Flink 2.x's JSON shapes (modelled on a real 2-vertex job's
answers): ``GET /jobs/overview``, ``/jobs/{id}``, ``/jobs/{id}/plan``, ``/jobs/{id}/vertices/{vid}/watermarks``,
``/jobs/{id}/checkpoints``, ``/jobs/{id}/exceptions``, plus ``GET /__count`` (requests served, per path
template, excluding ``/__count`` itself). ``--jobs`` jobs named ``bench-job-<i>`` are RUNNING, each
``source -> sink`` with parallelism 2; the sink's input watermark trails the wall clock by one hour and so
advances slowly; the source reports no input watermark (``Long.MIN_VALUE``), as Flink does.

Meant to run in its own process (its CPU must not count against the client being measured): a single-threaded
asyncio HTTP/1.1 server with keep-alive. Not Flink: no metric fetch delay, no other endpoints.

Usage: ``python benchmarks/fake_jobmanager.py --port 18081 --jobs 10`` (prints ``READY <port>`` once listening).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import signal
import time
from collections import Counter

LONG_MIN = -9223372036854775808
LAG_MS = 3_600_000  # the sink's watermark trails the wall clock by an hour: it moves, slowly, never to a far threshold


def _hex(seed: str) -> str:
    return hashlib.md5(seed.encode()).hexdigest()


class FakeJobManager:
    """State and routing of the fake JobManager; ``handle(path)`` -> (status, body)."""

    def __init__(self, jobs: int, parallelism: int = 2, port: int = 18081):
        self.port = port
        self.started_ms = int(time.time() * 1000) - 600_000
        self.parallelism = parallelism
        self.jobs = {}
        for i in range(jobs):
            jid = _hex(f"job-{i}")
            self.jobs[jid] = {"jid": jid, "name": f"bench-job-{i}", "source": _hex(f"src-{i}"), "sink": _hex(f"sink-{i}")}
        self.counts: Counter[str] = Counter()
        self._routes = [
            (re.compile(r"^/jobs/overview$"), "/jobs/overview", self._overview),
            (re.compile(r"^/jobs/([0-9a-f]{32})$"), "/jobs/{id}", self._detail),
            (re.compile(r"^/jobs/([0-9a-f]{32})/plan$"), "/jobs/{id}/plan", self._plan),
            (re.compile(r"^/jobs/([0-9a-f]{32})/vertices/([0-9a-f]{32})/watermarks$"),
             "/jobs/{id}/vertices/{vid}/watermarks", self._watermarks),
            (re.compile(r"^/jobs/([0-9a-f]{32})/checkpoints$"), "/jobs/{id}/checkpoints", self._checkpoints),
            (re.compile(r"^/jobs/([0-9a-f]{32})/exceptions$"), "/jobs/{id}/exceptions", self._exceptions),
            (re.compile(r"^/taskmanagers$"), "/taskmanagers", self._taskmanagers),
            (re.compile(r"^/jobmanager/config$"), "/jobmanager/config", self._jobmanager_config),
            # The TaskManager's Prometheus reporter, served on the same port (counted as its own path).
            (re.compile(r"^/metrics$"), "/metrics (TaskManager reporter)", self._reporter),
        ]

    # ------------------------------------------------------------------ payloads (Flink 2.x shapes)
    def _tasks(self, state: str, n: int) -> dict:
        keys = ("CREATED", "INITIALIZING", "RECONCILING", "CANCELING", "SCHEDULED", "RUNNING", "DEPLOYING",
                "FINISHED", "FAILED", "CANCELED")
        return {k: (n if k == state else 0) for k in keys}

    def _overview(self) -> dict:
        now = int(time.time() * 1000)
        return {"jobs": [
            {"jid": j["jid"], "name": j["name"], "start-time": self.started_ms, "end-time": -1,
             "duration": now - self.started_ms, "state": "RUNNING", "last-modification": self.started_ms,
             "tasks": {"running": 2 * self.parallelism, "canceling": 0, "canceled": 0, "total": 2 * self.parallelism,
                       "created": 0, "scheduled": 0, "deploying": 0, "reconciling": 0, "finished": 0,
                       "initializing": 0, "failed": 0},
             "pending-operators": 0}
            for j in self.jobs.values()
        ]}

    def _plan_body(self, job: dict) -> dict:
        return {
            "jid": job["jid"], "name": job["name"], "type": "STREAMING",
            "nodes": [
                {"id": job["sink"], "operator": "", "parallelism": self.parallelism, "operator_strategy": "",
                 "description": "[161]:GlobalWindowAggregate(window=[TUMBLE(slice_end=[$slice_end], size=[1 min])], "
                                "select=[COUNT(count1$0) AS EXPR$1, start('w$) AS window_start, end('w$) AS "
                                "window_end])<br/>+- [162]:Calc(select=[window_start, EXPR$1])<br/>   +- sink[163]: "
                                "Writer<br/>",
                 "optimizer_properties": {},
                 "inputs": [{"id": job["source"], "num": 0, "exchange": "pipelined_bounded", "ship_strategy": "HASH"}]},
                {"id": job["source"], "operator": "", "parallelism": self.parallelism, "operator_strategy": "",
                 "description": "[157]:TableSourceScan(table=[[default_catalog, default_database, events, "
                                "watermark=[-(ts, 5000:INTERVAL SECOND)]]], fields=[ts, user])<br/>+- [158]:Calc("
                                "select=[ts])<br/>   +- [159]:LocalWindowAggregate(window=[TUMBLE(time_col=[ts], "
                                "size=[1 min])], select=[COUNT(*) AS count1$0, slice_end('w$) AS $slice_end])<br/>",
                 "optimizer_properties": {}},
            ],
        }

    def _vertex(self, vid: str, name: str, now: int) -> dict:
        return {
            "id": vid, "slotSharingGroupId": _hex("ssg"), "name": name, "maxParallelism": 128,
            "parallelism": self.parallelism, "status": "RUNNING", "start-time": self.started_ms + 100,
            "end-time": -1, "duration": now - self.started_ms, "tasks": self._tasks("RUNNING", self.parallelism),
            "metrics": {"read-bytes": 420123, "read-bytes-complete": True, "write-bytes": 460456,
                        "write-bytes-complete": True, "read-records": 10001, "read-records-complete": True,
                        "write-records": 10001, "write-records-complete": True,
                        "accumulated-backpressured-time": 0, "accumulated-idle-time": 253600,
                        "accumulated-busy-time": 1070.0},
        }

    def _detail(self, jid: str) -> dict:
        job = self.jobs[jid]
        now = int(time.time() * 1000)
        ts = {k: 0 for k in ("RESTARTING", "CANCELED", "CREATED", "RUNNING", "FAILED", "FAILING", "RECONCILING",
                             "FINISHED", "CANCELLING", "SUSPENDED", "INITIALIZING")}
        ts.update(CREATED=self.started_ms + 30, RUNNING=self.started_ms + 40, INITIALIZING=self.started_ms)
        return {
            "jid": jid, "name": job["name"], "isStoppable": False, "state": "RUNNING", "job-type": "STREAMING",
            "start-time": self.started_ms, "end-time": -1, "duration": now - self.started_ms, "maxParallelism": -1,
            "now": now, "timestamps": ts,
            "vertices": [
                self._vertex(job["source"], "Source: events[157] -> Calc[158] -> LocalWindowAggregate[159]", now),
                self._vertex(job["sink"], "GlobalWindowAggregate[161] -> Calc[162] -> sink[163]: Writer", now),
            ],
            "status-counts": self._tasks("RUNNING", 2),
            "plan": self._plan_body(job),
            "pending-operators": 0,
        }

    def _plan(self, jid: str) -> dict:
        return {"plan": self._plan_body(self.jobs[jid])}

    def _watermarks(self, jid: str, vid: str) -> list:
        job = self.jobs[jid]
        if vid == job["source"]:
            value = LONG_MIN
        elif vid == job["sink"]:
            value = int(time.time() * 1000) - LAG_MS
        else:
            raise KeyError(vid)
        return [{"id": f"{k}.currentInputWatermark", "value": str(value - k)} for k in range(self.parallelism)]

    def _jobmanager_config(self) -> list:
        """A cluster configured with the Prometheus reporter (on this server's own port, where /metrics is
        served): what lets ``watermark_source: auto`` find the reporter without any connection extra."""
        return [{"key": "metrics.reporter.prom.factory.class",
                 "value": "org.apache.flink.metrics.prometheus.PrometheusReporterFactory"},
                {"key": "metrics.reporter.prom.port", "value": str(self.port)},
                {"key": "metrics.fetcher.update-interval", "value": "1000"}]

    def _taskmanagers(self) -> dict:
        return {"taskmanagers": [{"id": "127.0.0.1:35541-a9de52", "slotsNumber": 8, "freeSlots": 0,
                                  "path": "pekko.tcp://flink@127.0.0.1:35541/user/rpc/taskmanager_0"}]}

    def _reporter(self) -> str:
        """What a Flink 2.2 TaskManager's PrometheusReporter answers to ``?name[]=…currentInputWatermark``: one
        line per running task (the sink vertices; a source task has no input watermark) with the real labels."""
        now = int(time.time() * 1000)
        name = "flink_taskmanager_job_task_currentInputWatermark"
        lines = [f"# HELP {name} currentInputWatermark (scope: taskmanager_job_task)", f"# TYPE {name} gauge"]
        for j in self.jobs.values():
            for k in range(self.parallelism):
                lines.append(
                    f'{name}{{job_id="{j["jid"]}",task_id="{j["sink"]}",task_attempt_id="{_hex(j["jid"])}_{j["sink"]}'
                    f'_{k}_0",host="127_0_0_1",task_name="GlobalWindowAggregate_5_____Calc_6_____Sink:_Writer",'
                    f'task_attempt_num="0",job_name="{j["name"].replace("-", "_")}",tm_id="127_0_0_1:35541_a9de52",'
                    f'subtask_index="{k}",}} {float(now - LAG_MS - k)!r}')
        return "\n".join(lines) + "\n"

    def _checkpoints(self, jid: str) -> dict:
        now = int(time.time() * 1000)
        n = max(1, (now - self.started_ms) // 10_000)
        done = {"className": "completed", "id": n, "status": "COMPLETED", "is_savepoint": False,
                "savepointFormat": None, "trigger_timestamp": now - 3_000, "latest_ack_timestamp": now - 2_900,
                "checkpointed_size": 4213, "state_size": 4213, "end_to_end_duration": 100, "alignment_buffered": 0,
                "processed_data": 0, "persisted_data": 0, "num_subtasks": 2 * self.parallelism,
                "num_acknowledged_subtasks": 2 * self.parallelism, "checkpoint_type": "CHECKPOINT", "tasks": {},
                "external_path": f"file:/tmp/ckp/{jid}/chk-{n}", "discarded": False}
        return {"counts": {"restored": 0, "total": n, "in_progress": 0, "completed": n, "failed": 0},
                "summary": {}, "latest": {"completed": done, "savepoint": None, "failed": None, "restored": None},
                "history": [done]}

    def _exceptions(self, jid: str) -> dict:
        self.jobs[jid]  # noqa: B018 - 404 for unknown jobs
        return {"exceptionHistory": {"entries": [], "truncated": False}}

    # ------------------------------------------------------------------ routing
    def handle(self, method: str, path: str) -> tuple[int, object]:
        path = path.split("?", 1)[0]
        if path == "/__count":
            return 200, {"total": sum(self.counts.values()), "by_path": dict(self.counts)}
        for pattern, template, fn in self._routes:
            m = pattern.match(path)
            if m:
                self.counts[template] += 1
                if method != "GET":
                    return 405, {"errors": [f"{method} not allowed"]}
                try:
                    return 200, fn(*m.groups())
                except KeyError:
                    return 404, {"errors": ["Job could not be found."]}
        self.counts["(unknown)"] += 1
        return 404, {"errors": ["Not found: " + path]}


_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 400: "Bad Request"}


async def _serve_connection(jm: FakeJobManager, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
                return
            lines = head.decode("latin-1").split("\r\n")
            try:
                method, target, version = lines[0].split(" ", 2)
            except ValueError:
                return
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            length = int(headers.get("content-length") or 0)
            if length:
                await reader.readexactly(length)
            status, body = jm.handle(method, target)
            text = isinstance(body, str)
            payload = body.encode() if text else json.dumps(body, separators=(",", ":")).encode()
            ctype = "text/plain; version=0.0.4; charset=utf-8" if text else "application/json; charset=UTF-8"
            close = headers.get("connection", "").lower() == "close" or version == "HTTP/1.0"
            writer.write(
                f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
                f"Content-Type: {ctype}\r\nContent-Length: {len(payload)}\r\n"
                f"Connection: {'close' if close else 'keep-alive'}\r\n\r\n".encode("latin-1") + payload
            )
            await writer.drain()
            if close:
                return
    except ConnectionError:
        return
    finally:
        writer.close()


async def serve(port: int, jobs: int) -> None:
    jm = FakeJobManager(jobs, port=port)
    server = await asyncio.start_server(lambda r, w: _serve_connection(jm, r, w), "127.0.0.1", port, backlog=4096)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"READY {port}", flush=True)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=18081)
    parser.add_argument("--jobs", type=int, default=10)
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.jobs))


if __name__ == "__main__":
    main()
