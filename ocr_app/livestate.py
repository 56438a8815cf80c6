"""Short-lived shared state kept in Redis, next to the queue: what the dashboard shows about
the GPU and the workers right now, and the last minutes of GPU samples.

Nothing here is precious: after a Redis restart the monitor and workers fill it again
within seconds. The database stays the record of jobs.
"""

from __future__ import annotations

import json
import time
from functools import lru_cache
from pathlib import Path

import redis
from django.conf import settings

from core.containers import ROLE_WORKER

PREFIX = "ocrdash:"
GPU_HISTORY = PREFIX + "gpu:history"
GPU_LATEST = PREFIX + "gpu:latest"
WORKERS = PREFIX + "workers"
# 10 minutes at one sample a second.
HISTORY_LENGTH = 600
# Each worker touches its record this often; one silent for three beats is taken for gone.
HEARTBEAT_SECONDS = 15
WORKER_STALE_SECONDS = 3 * HEARTBEAT_SECONDS


@lru_cache(maxsize=4)
def _client(url: str) -> redis.Redis:
    return redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)


def client() -> redis.Redis:
    return _client(settings.CELERY_BROKER_URL)


def push_gpu_sample(sample: dict) -> None:
    body = json.dumps(sample, separators=(",", ":"))
    pipe = client().pipeline()
    pipe.set(GPU_LATEST, body)
    pipe.rpush(GPU_HISTORY, body)
    pipe.ltrim(GPU_HISTORY, -HISTORY_LENGTH, -1)
    pipe.execute()


def latest_gpu_sample() -> dict | None:
    raw = client().get(GPU_LATEST)
    return json.loads(raw) if raw else None


def gpu_history(seconds: int = HISTORY_LENGTH) -> list[dict]:
    """Samples of the last `seconds`, oldest first, reduced to what the chart draws."""
    since = time.time() - seconds
    points = []
    for raw in client().lrange(GPU_HISTORY, -HISTORY_LENGTH, -1):
        sample = json.loads(raw)
        if sample.get("taken_at", 0) < since:
            continue
        points.append(
            {
                "t": sample["taken_at"],
                "devices": [
                    {"index": d["index"], "used": d["used"], "total": d["total"], "utilization": d["utilization"]}
                    for d in sample.get("devices", [])
                ],
            }
        )
    return points


def update_worker(hostname: str, **fields) -> dict:
    """Merge `fields` into the worker's record (pids, GPU index, backend state...)."""
    key = hostname or "worker"
    current = workers().get(key, {})
    current.update(fields, hostname=key, seen_at=time.time())
    client().hset(WORKERS, key, json.dumps(current))
    return current


def remove_worker(hostname: str) -> None:
    client().hdel(WORKERS, hostname)


def workers() -> dict[str, dict]:
    raw = client().hgetall(WORKERS)
    return {k.decode(): json.loads(v) for k, v in raw.items()}


def live_workers() -> dict[str, dict]:
    now = time.time()
    return {k: v for k, v in workers().items() if now - v.get("seen_at", 0) < WORKER_STALE_SECONDS}


def own_pids(proc_root: str = "/proc") -> dict[int, str]:
    """pid → role for every process of ocrdash that may hold GPU memory: each worker
    and its pool processes (children, found in /proc: the monitor runs on the same host)."""
    roots = {int(pid) for record in live_workers().values() for pid in record.get("pids", [])}
    return {pid: ROLE_WORKER for pid in roots | descendants(roots, proc_root)}


def descendants(roots: set[int], proc_root: str = "/proc") -> set[int]:
    parents: dict[int, int] = {}
    for entry in Path(proc_root).iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The name may hold spaces and parentheses: the ppid is the second field after the last ")".
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found: set[int] = set()
    frontier = set(roots)
    while frontier:
        frontier = {pid for pid, ppid in parents.items() if ppid in frontier} - found
        found |= frontier
    return found
