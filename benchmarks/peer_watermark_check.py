"""The response check a user writes today for ``HttpEventTrigger`` on Flink's watermark endpoint (the peer in
``waiter_density.py``).

``HttpEventTrigger`` passes the check only the response (a ``requests.Response``), so the threshold lives in the
module; the trigger reloads this module (in a thread) on every poll. The benchmark's threshold is far in the
future: the wait never fires during the measurement.
"""

from __future__ import annotations

THRESHOLD_MS = 4_102_444_800_000  # 2100-01-01T00:00:00Z
LONG_MIN = -9223372036854775808


async def watermark_reached(response) -> bool:
    """True once the minimum ``currentInputWatermark`` over the vertex's subtasks is >= ``THRESHOLD_MS``."""
    values = [int(float(m["value"])) for m in response.json() if m["id"].endswith(".currentInputWatermark")]
    if not values or min(values) == LONG_MIN:
        return False
    return min(values) >= THRESHOLD_MS
