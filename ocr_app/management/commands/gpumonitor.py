"""The GPU monitor: samples NVML once a second, names the processes (Docker containers,
ocrdash's own worker and vLLM server), keeps the last ten minutes in Redis and sends a
`gpu.sample` event to every open page. Runs next to the GPU; the start command starts it.

`gpumonitor --check` is its health check (the compose file's): exit 0 when the latest sample
in Redis is at most --max-age seconds old, else 1 with the reason.
"""

from __future__ import annotations

import logging
import signal
import time

from django.core.management.base import BaseCommand, CommandError

from core.containers import ContainerNames, label_processes
from core.gpu import close_readers, read_snapshot, sample_to_event
from ocr_app import events, livestate

log = logging.getLogger(__name__)


class Monitor:
    def __init__(self, nvml=None, containers: ContainerNames | None = None):
        self.nvml = nvml
        self.containers = containers or ContainerNames()

    def sample_once(self) -> dict:
        snapshot = read_snapshot(self.nvml)
        try:
            own = livestate.own_pids()
        except Exception:  # Redis away: still publish what the GPU says
            own = {}
        if snapshot.devices:
            snapshot = label_processes(snapshot, self.containers, own)
        body = sample_to_event(snapshot)
        try:
            livestate.push_gpu_sample(body)
        except Exception:
            log.warning("could not store the GPU sample in Redis", exc_info=True)
        events.publish_gpu_sample(body)
        return body


class Command(BaseCommand):
    help = "Sample the GPU once a second and publish it to the dashboard (runs until stopped)."

    def add_arguments(self, parser):
        parser.add_argument("--interval", type=float, default=1.0, help="Seconds between samples.")
        parser.add_argument("--count", type=int, default=0, help="Stop after this many samples (0: never).")
        parser.add_argument(
            "--check",
            action="store_true",
            help="Do not sample: exit 0 if the latest sample in Redis is fresh, else 1 (a health check).",
        )
        parser.add_argument(
            "--max-age", type=float, default=30.0, help="With --check: the oldest sample that counts as fresh, in s."
        )

    def handle(self, *args, interval: float, count: int, check: bool = False, max_age: float = 30.0, **options):
        if check:
            return self.check_freshness(max_age)
        running = True

        def stop(signum, frame):
            nonlocal running
            running = False

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        monitor = Monitor()
        taken = 0
        next_tick = time.monotonic()
        try:
            while running and (count == 0 or taken < count):
                body = monitor.sample_once()
                if taken == 0:
                    self.stdout.write(body["error"] or f"GPU monitor: {len(body['devices'])} device(s) visible")
                taken += 1
                next_tick += interval
                # Sleep to the next tick, not a fixed interval: sampling time must not drift the chart.
                time.sleep(max(0.0, next_tick - time.monotonic()))
        finally:
            monitor.containers.close()
            close_readers()

    def check_freshness(self, max_age: float) -> None:
        try:
            sample = livestate.latest_gpu_sample()
        except Exception as exc:
            raise CommandError(f"Redis does not answer: {exc}") from None
        if not sample:
            raise CommandError("no GPU sample in Redis yet: is the GPU monitor running?")
        age = time.time() - float(sample.get("taken_at") or 0)
        if age > max_age:
            raise CommandError(f"the latest GPU sample is {age:.0f} s old (more than {max_age:g} s)")
        devices = len(sample.get("devices") or [])
        self.stdout.write(f"ok: GPU sample {age:.1f} s old, {devices} device(s); {sample.get('error') or 'no error'}")
