"""A synthetic impression/click source whose ground truth is known, for the end-to-end demo.

**Model.** ``users`` users and ``items`` items get latent values from a seeded RNG: a user affinity and an
item quality, both standard normal. A user's experiment bucket is fixed by the user id alone (``"treatment"``
when the CRC-32 of the id is odd, else ``"control"``). An impression of item ``i`` to user ``u`` is clicked
with the hidden probability ``sigmoid(bias[bucket(u)] + affinity[u] + quality[i])``; the two biases are
calibrated so that, with users and items drawn uniformly, control's expected CTR is ``base_ctr`` and
treatment's is ``base_ctr * (1 + treatment_lift)``. A model on (user, item) features can learn it: the
hidden probabilities rank the realised clicks with an AUC near 0.8.

**Stream.** Event-time hour ``h`` is ``[start_ms + h * 1h, start_ms + (h + 1) * 1h)``. It holds exactly
``impressions_per_hour`` on-time impressions (uniform in the hour) and their clicks, each within
``attribution_ms`` after its impression (so the last clicks of an hour carry times of the next one; a click
counts in the hour of its impression). A record with event time ``ts`` arrives at event time
``ts + U[0, max_out_of_order_ms]`` of an accelerated clock: wall-clock offset ``(arrival - start_ms) /
(1000 * speedup)`` seconds. Hence, over any concatenation of hours, every on-time record is at most
``max_out_of_order_ms`` behind the highest event time sent before it (clicks may overtake their own
impression, as on two real topics). Besides, each hour holds ``late_per_hour`` *late* impressions, each at
least ``3 * lateness_ms`` behind the highest event time already sent (so a watermark of ``max - lateness``
has passed them; they have no clicks), and ``malformed_per_hour`` malformed records on either topic
(truncated JSON, non-JSON bytes, ``"ts": "yesterday"``, no ``imp_id`` or no ``ts``). Records are UTF-8 JSON,
key = user id; a consumer must drop records that :func:`parse_record` rejects. Everything is a pure function
of ``(seed, hour)``: the same config gives byte-identical records.

:func:`watermark_pushers` gives heartbeat records (user and ``imp_id`` prefixed ``hb-``) to send after a run's
last hour so that watermarks pass it; they fall in the hour after the run, which never closes, and are in no
ledger. Only :func:`run_source` does I/O (confluent-kafka, imported there).
"""

from __future__ import annotations

import functools
import heapq
import itertools
import json
import math
import random
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from airflow_rtml.exceptions import KafkaPublishError

HOUR_MS = 3_600_000
BUCKETS = ("control", "treatment")
_FIELDS = {"impression": ("imp_id", "user", "item", "bucket", "ts"), "click": ("imp_id", "user", "item", "ts")}


@dataclass(frozen=True)
class DemoConfig:
    """The demo source's knobs; every count is per event-time hour. See the module docstring for the model."""

    seed: int = 7
    users: int = 500
    items: int = 200
    start_ms: int = 1767225600000  # 2026-01-01T00:00:00Z, event time of the first hour
    impressions_per_hour: int = 6000
    base_ctr: float = 0.08  # control's expected CTR
    treatment_lift: float = 0.5  # treatment CTR = control CTR * (1 + lift) in expectation
    attribution_ms: int = 10 * 60_000  # a click comes within this after its impression (event time)
    max_out_of_order_ms: int = 20_000  # bounded disorder of arrival vs event time
    late_per_hour: int = 20
    lateness_ms: int = 60_000  # the consumers' allowed out-of-orderness; late events arrive >= 3 * this behind
    malformed_per_hour: int = 15
    speedup: float = 60.0  # event-time seconds per wall-clock second
    drop_clicks_hours: tuple[int, ...] = ()  # an injected anomaly: in these hours, drop_clicks_fraction of the
    drop_clicks_fraction: float = 0.5  # clicks is never sent (the ledger counts only what was sent)
    impressions_topic: str = "rtml.demo.impressions"
    clicks_topic: str = "rtml.demo.clicks"

    def __post_init__(self):
        disorder, lateness = self.max_out_of_order_ms, self.lateness_ms
        if not 0 <= disorder < lateness or 6 * lateness + disorder >= HOUR_MS:
            raise ValueError("Need 0 <= max_out_of_order_ms < lateness_ms and 6 * lateness_ms + max_out_of_order_ms"
                             " < 1 hour, so that on-time records are on time and late ones fit in their hour.")
        treatment_ctr = self.base_ctr * (1 + self.treatment_lift)
        if not 0 <= self.drop_clicks_fraction <= 1:
            raise ValueError("Need 0 <= drop_clicks_fraction <= 1.")
        if not 0 < treatment_ctr < 1 or not 0 < self.base_ctr or self.speedup <= 0 or min(self.users, self.items) < 2:
            raise ValueError("Need 0 < base_ctr, base_ctr * (1 + treatment_lift) < 1, speedup > 0 and at least "
                             "2 users and 2 items.")

    def wall_offset(self, arrival_ms: float) -> float:
        """Wall-clock seconds since the demo's start at which event time ``arrival_ms`` is reached."""
        return (arrival_ms - self.start_ms) / (1000.0 * self.speedup)


@dataclass(frozen=True)
class Emission:
    """One record to send at ``wall_offset_s``; ``kind`` is impression, click, late, malformed or heartbeat."""

    topic: str
    key: bytes
    value: bytes
    event_ts: int | None  # None for malformed records
    wall_offset_s: float
    kind: str


@dataclass
class HourLedger:
    """The ground truth of one event-time hour: on-time impressions and their clicks per bucket, late, malformed."""

    hour_index: int
    start_ms: int
    end_ms: int
    impressions: dict[str, int]
    clicks: dict[str, int]
    malformed: int
    late: int
    malformed_by_topic: dict[str, int] = field(default_factory=dict)
    dropped_clicks: int = 0  # clicks an injected anomaly withheld (DemoConfig.drop_clicks_hours): not in ``clicks``

    def true_ctr(self, bucket: str) -> float:
        return self.clicks[bucket] / self.impressions[bucket] if self.impressions[bucket] else 0.0


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def bucket_of(user: str) -> str:
    """The experiment bucket of a user: a function of the id alone, so a user never changes bucket."""
    return BUCKETS[zlib.crc32(user.encode()) % 2]


@dataclass(frozen=True)
class HiddenModel:
    """The latent click model of a config: ``p(user, item)`` is the true click probability."""

    users: tuple[str, ...]
    items: tuple[str, ...]
    affinity: dict[str, float]
    quality: dict[str, float]
    bias: dict[str, float]

    def p(self, user: str, item: str) -> float:
        return _sigmoid(self.bias[bucket_of(user)] + self.affinity[user] + self.quality[item])


@functools.lru_cache(maxsize=16)
def hidden_model(cfg: DemoConfig) -> HiddenModel:
    """Draw the latent values of ``cfg.seed`` and calibrate each bucket's bias by Newton's method."""
    rng = random.Random(f"{cfg.seed}:model")
    users = tuple(f"u{n:0{max(3, len(str(cfg.users - 1)))}d}" for n in range(cfg.users))
    items = tuple(f"i{n:0{max(3, len(str(cfg.items - 1)))}d}" for n in range(cfg.items))
    affinity, quality = {u: rng.gauss(0, 1) for u in users}, {i: rng.gauss(0, 1) for i in items}
    bias = {}
    for bucket, target in zip(BUCKETS, (cfg.base_ctr, cfg.base_ctr * (1 + cfg.treatment_lift))):
        logits = [affinity[u] + quality[i] for u in users if bucket_of(u) == bucket for i in items]
        b = math.log(target / (1 - target))
        if not logits:  # no user in this bucket
            continue
        for _ in range(50):  # Newton on an increasing, smooth function of b, from the target's logit: ~5 steps
            ps = [_sigmoid(b + x) for x in logits]
            step = (sum(ps) - target * len(ps)) / sum(p * (1 - p) for p in ps)
            b -= step
            if abs(step) < 1e-12:
                break
        bias[bucket] = b
    return HiddenModel(users, items, affinity, quality, bias)


def parse_record(value: bytes, kind: str) -> dict | None:
    """The record if ``value`` is a well-formed ``kind`` ("impression" or "click"), else None."""
    try:
        rec = json.loads(value)
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(rec, dict) or any(f not in rec for f in _FIELDS[kind]):
        return None
    ok = all(isinstance(rec[f], str) for f in ("imp_id", "user", "item")) and type(rec["ts"]) is int
    return rec if ok and (kind == "click" or rec["bucket"] in BUCKETS) else None


def _emission(topic: str, rec: dict, wall_offset_s: float, kind: str, value: bytes | None = None) -> Emission:
    """An Emission of ``rec`` (its JSON, unless a malformed ``value`` is given), keyed by its user."""
    value = json.dumps(rec, separators=(",", ":")).encode() if value is None else value
    return Emission(topic, rec["user"].encode(), value, None if kind == "malformed" else rec["ts"], wall_offset_s, kind)


def _malformed(rec: dict, variant: int, rng: random.Random) -> bytes:
    text = json.dumps(rec, separators=(",", ":"))
    if variant == 0:
        return text[: len(text) // 2].encode()  # truncated JSON
    if variant == 1:
        return b"\xff\xfe<not json>"
    if variant == 2:
        return json.dumps({**rec, "ts": "yesterday"}).encode()
    missing = rng.choice(("imp_id", "ts"))  # what any consumer of either kind needs (the join key, the event time)
    return json.dumps({k: v for k, v in rec.items() if k != missing}).encode()


def generate_hour(cfg: DemoConfig, hour_index: int) -> tuple[list[Emission], HourLedger]:
    """The records of event-time hour ``hour_index``, sorted by ``wall_offset_s``, and the hour's ground truth.

    Deterministic per ``(cfg, hour_index)``. Concatenating hours and sorting by ``wall_offset_s`` (stably)
    gives a valid stream: the guarantees of the module docstring hold across hour boundaries.
    """
    model, rng = hidden_model(cfg), random.Random(f"{cfg.seed}:hour:{hour_index}")
    start = cfg.start_ms + hour_index * HOUR_MS
    ledger = HourLedger(hour_index, start, start + HOUR_MS, dict.fromkeys(BUCKETS, 0), dict.fromkeys(BUCKETS, 0),
                        cfg.malformed_per_hour, cfg.late_per_hour, {cfg.impressions_topic: 0, cfg.clicks_topic: 0})
    out: list[Emission] = []
    # The anomaly draws from its own generator, so every other record is the same as without it.
    drop = random.Random(f"{cfg.seed}:drop:{hour_index}") if hour_index in cfg.drop_clicks_hours else None

    def arrive(ts: int) -> float:  # the wall offset of an arrival up to max_out_of_order_ms after event time ts
        return cfg.wall_offset(ts + rng.uniform(0, cfg.max_out_of_order_ms))

    for n, ts in enumerate(sorted(rng.randrange(start, start + HOUR_MS) for _ in range(cfg.impressions_per_hour))):
        user, item = rng.choice(model.users), rng.choice(model.items)
        imp = {"imp_id": f"h{hour_index}-{n:06d}", "user": user, "item": item, "bucket": bucket_of(user), "ts": ts}
        out.append(_emission(cfg.impressions_topic, imp, arrive(ts), "impression"))
        ledger.impressions[imp["bucket"]] += 1
        if rng.random() < model.p(user, item):
            click = {"imp_id": imp["imp_id"], "user": user, "item": item,
                     "ts": ts + int(rng.triangular(1, cfg.attribution_ms, 1))}  # in [1, attribution_ms], early-heavy
            arrival = arrive(click["ts"])
            if drop is not None and drop.random() < cfg.drop_clicks_fraction:
                ledger.dropped_clicks += 1
                continue
            out.append(_emission(cfg.clicks_topic, click, arrival, "click"))
            ledger.clicks[imp["bucket"]] += 1
    out.sort(key=lambda e: e.wall_offset_s)
    # Late impressions: each sent right after an on-time impression k, 3..6 lateness behind the max sent so far.
    max_so_far = list(itertools.accumulate((e.event_ts for e in out), max))
    earliest = start + 6 * cfg.lateness_ms + cfg.max_out_of_order_ms
    slots = [k for k, e in enumerate(out) if e.kind == "impression" and earliest <= e.event_ts]
    for n, k in enumerate(sorted(rng.sample(slots, cfg.late_per_hour))):
        user = rng.choice(model.users)
        ts = max_so_far[k] - 3 * cfg.lateness_ms - rng.randrange(3 * cfg.lateness_ms)
        late = {"imp_id": f"h{hour_index}-late{n:03d}", "user": user, "item": rng.choice(model.items),
                "bucket": bucket_of(user), "ts": ts}
        out.append(_emission(cfg.impressions_topic, late, math.nextafter(out[k].wall_offset_s, math.inf), "late"))
    for n in range(cfg.malformed_per_hour):
        topic, user = rng.choice((cfg.impressions_topic, cfg.clicks_topic)), rng.choice(model.users)
        rec = {"imp_id": f"h{hour_index}-bad{n:03d}", "user": user, "item": rng.choice(model.items),
               "bucket": bucket_of(user), "ts": rng.randrange(start, start + HOUR_MS)}
        if topic == cfg.clicks_topic:
            del rec["bucket"]
        value = _malformed(rec, n % 4, rng)
        out.append(_emission(topic, rec, cfg.wall_offset(rng.uniform(start, start + HOUR_MS)), "malformed", value))
        ledger.malformed_by_topic[topic] += 1
    out.sort(key=lambda e: e.wall_offset_s)
    return out, ledger


def _heartbeat_users(max_partitions: int = 16) -> list[str]:
    """Few ids whose keys reach every partition of a topic with <= max_partitions partitions under
    librdkafka's default partitioner (CRC-32 of the key modulo the partition count)."""
    users: list[str] = []
    candidates = (f"hb-{n:03d}" for n in itertools.count())
    for parts in range(1, max_partitions + 1):
        for r in range(parts):
            if not any(zlib.crc32(u.encode()) % parts == r for u in users):
                users.append(next(c for c in candidates if zlib.crc32(c.encode()) % parts == r))
    return users


def watermark_pushers(cfg: DemoConfig, hour_index: int) -> list[Emission]:
    """Heartbeats sent after hour ``hour_index`` so that watermarks can pass it and its clicks' window.

    One impression (bucket control) and one click per heartbeat user, on every partition of topics with up to
    16 partitions (default partitioner), at event time ``end + attribution_ms + 2 * lateness_ms``: a watermark
    ``max - lateness_ms`` then passes ``end - 1 + attribution_ms``. They land in the next hour, which a run
    ending here never closes; they are not in any ledger. Send them only after a run's last hour.
    """
    ts = cfg.start_ms + (hour_index + 1) * HOUR_MS + cfg.attribution_ms + 2 * cfg.lateness_ms
    out = []
    for n, user in enumerate(_heartbeat_users()):
        imp = {"imp_id": f"hb-h{hour_index}-{n:02d}", "user": user, "item": "hb", "bucket": "control", "ts": ts}
        out.append(_emission(cfg.impressions_topic, imp, cfg.wall_offset(ts), "heartbeat"))
        click = {"imp_id": imp["imp_id"], "user": user, "item": "hb", "ts": ts + 1}
        out.append(_emission(cfg.clicks_topic, click, cfg.wall_offset(ts + 1), "heartbeat"))
    return sorted(out, key=lambda e: e.wall_offset_s)


def _schedule(cfg: DemoConfig, hours: int) -> Iterator[tuple[Emission, HourLedger | None]]:
    """Hours ``0..hours-1`` then the pushers, in wall order (stable: as if concatenated and sorted), with the
    hour's ledger on its last record. An hour is generated only when the stream reaches its earliest possible
    record (``wall_offset(start)``), so about two hours are in memory."""
    pending: list[tuple[float, int, int, Emission]] = []
    left: dict[int, int] = {}
    ledgers: dict[int, HourLedger] = {}

    def drain(boundary: float) -> Iterator[tuple[Emission, HourLedger | None]]:
        while pending and pending[0][0] < boundary:
            _, h, _, e = heapq.heappop(pending)
            left[h] -= 1
            yield e, (ledgers.get(h) if left[h] == 0 else None)

    for h in range(hours + 1):
        if h < hours:
            yield from drain(cfg.wall_offset(cfg.start_ms + h * HOUR_MS))
            emissions, ledgers[h] = generate_hour(cfg, h)
        else:
            emissions = watermark_pushers(cfg, hours - 1)
        left[h] = len(emissions)
        for seq, e in enumerate(emissions):
            heapq.heappush(pending, (e.wall_offset_s, h, seq, e))
    yield from drain(math.inf)


def _describe(ledger: HourLedger) -> str:
    start = time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(ledger.start_ms / 1000))
    per_bucket = ", ".join(f"{b} {ledger.clicks[b]}/{ledger.impressions[b]} (CTR {ledger.true_ctr(b):.4f})"
                           for b in BUCKETS)
    return f"hour {ledger.hour_index} [{start} +1h) sent: clicks/impressions {per_bucket}; " \
           f"late {ledger.late}, malformed {ledger.malformed}" + \
           (f"; ANOMALY: {ledger.dropped_clicks} clicks withheld" if ledger.dropped_clicks else "")


def run_source(cfg: DemoConfig, hours: int, *, bootstrap: str = "127.0.0.1:9092", pace: bool = True,
               progress: Callable[[str], None] | None = None,
               stop: threading.Event | None = None) -> list[HourLedger]:
    """Produce hours ``0..hours-1``, then the watermark pushers, to Kafka; return the ledgers of the hours sent.

    Blocking. With ``pace``, each record is sent at ``wall_offset_s`` seconds after the call (a run lasts about
    ``hours * 3600 / speedup`` seconds plus the last clicks' tail); without, as fast as possible, in the same
    order. The idempotent producer keeps each partition's order and writes each record once per call; calling
    again re-sends the identical records (duplicates downstream). Setting ``stop`` ends the run early: the
    ledgers returned are those of the hours whose records were all sent, and ``progress`` got one line per such
    hour. Raises :class:`~airflow_rtml.exceptions.KafkaPublishError` when records are not acknowledged within
    60 s of the end (they may still have been written).
    """
    from confluent_kafka import Producer

    if hours < 1:
        raise ValueError(f"hours must be >= 1, got {hours}.")
    errors: list = []
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    stop = stop or threading.Event()
    t0, done = time.monotonic(), []
    for e, ledger in _schedule(cfg, hours):
        if pace:
            stop.wait(max(0.0, t0 + e.wall_offset_s - time.monotonic()))
        if stop.is_set():
            break
        while True:
            try:
                producer.produce(e.topic, e.value, e.key, on_delivery=lambda err, _: err and errors.append(err))
                break
            except BufferError:  # the local queue is full: let deliveries drain it
                producer.poll(0.1)
        producer.poll(0)
        if ledger is not None:
            done.append(ledger)
            if progress:
                progress(_describe(ledger))
    unacknowledged = producer.flush(60)
    if unacknowledged or errors:
        raise KafkaPublishError(
            f"{unacknowledged} demo records were not acknowledged and {len(errors)} failed on {bootstrap} "
            f"(first error: {errors[0] if errors else None}). To fix this, check that Kafka is up and reachable.")
    return sorted(done, key=lambda ledger: ledger.hour_index)


def ledger_summary(ledgers: Sequence[HourLedger]) -> dict:
    """Totals over ``ledgers``: impressions, clicks and CTR per bucket, the realised lift, the winner bucket."""
    impressions = {b: sum(led.impressions[b] for led in ledgers) for b in BUCKETS}
    clicks = {b: sum(led.clicks[b] for led in ledgers) for b in BUCKETS}
    ctr = {b: clicks[b] / impressions[b] if impressions[b] else 0.0 for b in BUCKETS}
    by_topic: dict[str, int] = {}
    for led in ledgers:
        for topic, n in led.malformed_by_topic.items():
            by_topic[topic] = by_topic.get(topic, 0) + n
    return {"hours": [led.hour_index for led in ledgers], "impressions": impressions, "clicks": clicks,
            "ctr": ctr, "lift": ctr["treatment"] / ctr["control"] - 1 if ctr["control"] else None,
            "winner": max(BUCKETS, key=ctr.__getitem__), "late": sum(led.late for led in ledgers),
            "malformed": sum(led.malformed for led in ledgers), "malformed_by_topic": by_topic}


def auc(labels: Sequence[int], scores: Sequence[float]) -> float:
    """Area under the ROC curve of ``scores`` for binary ``labels`` (Mann-Whitney; tied scores count half)."""
    if len(labels) != len(scores):
        raise ValueError("labels and scores differ in length.")
    pairs = sorted(zip(scores, labels))
    pos = sum(1 for _, y in pairs if y)
    neg = len(pairs) - pos
    if not pos or not neg:
        raise ValueError("auc needs at least one positive and one negative label.")
    rank_sum, i = 0.0, 0
    while i < len(pairs):
        j = i
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:
            j += 1
        rank_sum += sum(1 for _, y in pairs[i:j] if y) * (i + 1 + j) / 2  # the tie group's mean 1-based rank
        i = j
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)
