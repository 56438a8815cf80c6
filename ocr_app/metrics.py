"""What GET /metrics holds (ocr_app/views/monitoring.py serves it, and says who may read it).

Everything is read when Prometheus scrapes, by one collector (`OcrdashCollector`):

- the database, in five queries: jobs by state and backend with the queue (one GROUP BY),
  the three histograms (one query each), the out-of-memory fallbacks;
- Redis: the GPU monitor's latest sample, the live workers, the broker queues.

The histograms are built from the finished jobs in the database, over all of them, not
observed in the worker: the worker has no HTTP server of its own, the database already holds
every job's times, and counting over all jobs keeps each bucket a counter that only grows
(deleting jobs makes them shrink), so `rate()` and `histogram_quantile()` work as usual. Seconds per
page is the run time of a succeeded job over its page count (an image is one page, a PDF has
`page_count`); `_pages()` is the one place that says so.

OOM fallbacks are counted from what workers/tasks.py writes into the job's message each time
CUDA ran out of memory and the worker retried smaller or fell back (OOM_NOTE). A retried job's
message is cleared, so its earlier fallbacks leave the count.

There is no metric for result reuse (a job that took an earlier job's result, `reused_from`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator

from django.db.models import Case, Count, F, FloatField, Func, IntegerField, Min, Sum, Value, When
from django.db.models.functions import Cast, Coalesce, Greatest, Length, Replace
from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from core import jobstate
from core.backends import AUTO
from core.containers import ROLE_VLLM, ROLE_WORKER, ROLES
from core.events import BACKEND_STATES
from core.queues import GPU_QUEUE, priority_keys, worker_queue
from ocr_app import livestate
from ocr_app.models import Job

log = logging.getLogger(__name__)

# What workers/tasks.py (_run_with_fallback) writes into a job's message for each out-of-memory retry.
OOM_NOTE = "ran out of GPU memory"
RUN_BUCKETS = (1, 2, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600)
WAIT_BUCKETS = (1, 5, 10, 30, 60, 300, 600, 1800, 3600, 7200, 21600, 86400)
PAGE_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800)
# An older GPU sample means the monitor stopped: its figures are left out (the age is still given).
GPU_SAMPLE_STALE_SECONDS = 30
# Job.backend "" is "the server's choice", not made yet (queued) or never made (refused).
NO_BACKEND = AUTO


def _backend(name: str | None) -> str:
    return name or NO_BACKEND


# -- the collector -------------------------------------------------------------------------------


class OcrdashCollector:
    """Reads the database and Redis at scrape time. A part that does not answer is left out and
    `ocrdash_up{part=...}` says 0; the scrape itself still succeeds."""

    def __init__(self, now=time.time):
        self.now = now

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("ocrdash_up", "1 when ocrdash could read this part at this scrape.", labels=["part"])
        for part, read in (("database", self.database), ("redis", self.redis)):
            try:
                families = list(read())
            except Exception:
                log.warning("metrics: could not read the %s", part, exc_info=True)
                up.add_metric([part], 0)
                continue
            up.add_metric([part], 1)
            yield from families
        yield up

    # -- the database ------------------------------------------------------------------------------

    def database(self) -> Iterable[Metric]:
        yield from self.jobs_and_queue()
        run = Seconds(F("finished_at"), F("started_at"))
        started = Job.objects.filter(started_at__isnull=False)
        yield histogram(
            "ocrdash_job_run_seconds",
            "Seconds from start to end of every job that ran, by the backend that ran it and how it ended.",
            started.filter(finished_at__isnull=False, state__in=jobstate.ENDED),
            run,
            RUN_BUCKETS,
            ["backend", "state"],
        )
        yield histogram(
            "ocrdash_job_wait_seconds",
            "Seconds every job that started waited in the queue, by backend.",
            started,
            Seconds(F("started_at"), Coalesce("queued_at", "created_at")),
            WAIT_BUCKETS,
            ["backend"],
        )
        yield histogram(
            "ocrdash_job_seconds_per_page",
            "Seconds per page of every succeeded job, by backend (an image is one page).",
            started.filter(finished_at__isnull=False, state=jobstate.SUCCEEDED),
            run / _pages(),
            PAGE_BUCKETS,
            ["backend"],
        )
        yield self.oom_fallbacks()

    def jobs_and_queue(self) -> Iterable[Metric]:
        rows = list(Job.objects.order_by().values("state", "backend").annotate(n=Count("pk"), oldest=Min("queued_at")))
        counts: dict[tuple[str, str], int] = {}
        for row in rows:
            key = (row["state"], _backend(row["backend"]))
            counts[key] = counts.get(key, 0) + row["n"]
        backends = sorted({backend for _, backend in counts} or {NO_BACKEND})
        jobs = GaugeMetricFamily(
            "ocrdash_jobs", "Jobs in the database now, by state and backend.", labels=["state", "backend"]
        )
        for state in jobstate.STATES:
            for backend in backends:
                jobs.add_metric([state, backend], counts.get((state, backend), 0))
        yield jobs

        queued = [row for row in rows if row["state"] == jobstate.QUEUED]
        yield GaugeMetricFamily(
            "ocrdash_queue_length", "Jobs waiting for a worker.", value=sum(row["n"] for row in queued)
        )
        oldest = min((row["oldest"] for row in queued if row["oldest"] is not None), default=None)
        waited = (timezone.now() - oldest).total_seconds() if oldest else 0.0
        yield GaugeMetricFamily(
            "ocrdash_queue_oldest_seconds",
            "How long the longest-waiting queued job has waited (0: none waits).",
            value=max(0.0, waited),
        )

    def oom_fallbacks(self) -> Metric:
        occurrences = (Length("message") - Length(Replace("message", Value(OOM_NOTE), Value("")))) / len(OOM_NOTE)
        rows = (
            Job.objects.filter(message__contains=OOM_NOTE)
            .order_by()
            .values("backend", "state")
            .annotate(n=Sum(occurrences))
        )
        family = CounterMetricFamily(
            "ocrdash_oom_fallbacks",
            "Times CUDA ran out of memory during a job and the worker retried smaller or fell back, "
            "by the backend the job ended on and its state.",
            labels=["backend", "state"],
        )
        for row in rows:
            family.add_metric([_backend(row["backend"]), row["state"]], row["n"] or 0)
        return family

    # -- Redis -------------------------------------------------------------------------------------

    def redis(self) -> Iterable[Metric]:
        yield from self.gpu(livestate.latest_gpu_sample())
        workers = livestate.live_workers()
        yield from self.workers(workers)
        client = livestate.client()
        queues = [GPU_QUEUE, *(worker_queue(name) for name in sorted(workers))]
        lengths = client.pipeline()
        for queue in queues:
            for key in priority_keys(queue):  # a queue is one Redis list per priority
                lengths.llen(key)
        family = GaugeMetricFamily(
            "ocrdash_broker_messages",
            "Task messages waiting in a Celery queue in Redis (gpu: the shared queue; one per worker).",
            labels=["queue"],
        )
        counts = lengths.execute()
        steps = len(priority_keys(GPU_QUEUE))
        for n, queue in enumerate(queues):
            family.add_metric([queue], sum(counts[n * steps:(n + 1) * steps]))
        yield family

    def gpu(self, sample: dict | None) -> Iterable[Metric]:
        if not sample:
            return
        age = max(0.0, self.now() - float(sample.get("taken_at") or 0))
        yield GaugeMetricFamily("ocrdash_gpu_sample_age_seconds", "Age of the GPU monitor's latest sample.", value=age)
        if age > GPU_SAMPLE_STALE_SECONDS:
            return
        devices = sample.get("devices") or []
        yield GaugeMetricFamily(
            "ocrdash_gpu_devices", "GPUs the monitor sees (0 with no driver or no GPU).", value=len(devices)
        )
        labels = ["gpu", "name", "uuid"]
        memory = {
            key: GaugeMetricFamily(f"ocrdash_gpu_memory_{key}_bytes", f"GPU memory {key}, in bytes.", labels=labels)
            for key in ("total", "used", "free")
        }
        optional = {
            "utilization": GaugeMetricFamily(
                "ocrdash_gpu_utilization_percent", "Percent of time a kernel ran on the GPU.", labels=labels
            ),
            "temperature": GaugeMetricFamily("ocrdash_gpu_temperature_celsius", "GPU temperature.", labels=labels),
            "power": GaugeMetricFamily("ocrdash_gpu_power_watts", "GPU power draw.", labels=labels),
        }
        by_role = GaugeMetricFamily(
            "ocrdash_gpu_process_memory_bytes",
            "GPU memory held by processes: ocrdash's worker, its vLLM server, or other programs.",
            labels=["gpu", "role"],
        )
        for device in devices:
            values = [str(device.get("index")), str(device.get("name") or ""), str(device.get("uuid") or "")]
            for key, family in memory.items():
                if device.get(key) is not None:
                    family.add_metric(values, device[key])
            for key, family in optional.items():
                if device.get(key) is not None:
                    family.add_metric(values, device[key])
            held = {ROLE_WORKER: 0, ROLE_VLLM: 0, "other": 0}
            for process in device.get("processes") or []:
                role = process.get("role") if process.get("role") in ROLES else "other"
                held[role] += process.get("used_bytes") or 0
            for role, used in held.items():
                by_role.add_metric([str(device.get("index")), role], used)
        yield from memory.values()
        yield from optional.values()
        yield by_role

    def workers(self, workers: dict[str, dict]) -> Iterable[Metric]:
        now = self.now()
        up = GaugeMetricFamily(
            "ocrdash_worker_up", "Workers heard from in the last two minutes.", labels=["worker", "gpu"]
        )
        seen = GaugeMetricFamily(
            "ocrdash_worker_last_seen_seconds", "Seconds since the worker last reported.", labels=["worker"]
        )
        loaded = GaugeMetricFamily(
            "ocrdash_worker_backend_loaded",
            "1 when the worker holds its backend loaded and ready, 0 when unloaded (or loading, failed).",
            labels=["worker", "backend"],
        )
        state = GaugeMetricFamily(
            "ocrdash_worker_backend_state",
            "The worker's backend state: 1 for the current one.",
            labels=["worker", "state"],
        )
        held = GaugeMetricFamily(
            "ocrdash_worker_backend_memory_bytes",
            "Memory the loaded backend is estimated to hold.",
            labels=["worker", "backend"],
        )
        for name, record in sorted(workers.items()):
            status = record.get("backend_status") or {}
            current = status.get("state") or "unloaded"
            backend = status.get("backend") or "none"
            gpu = record.get("gpu_index")
            up.add_metric([name, "" if gpu is None else str(gpu)], 1)
            seen.add_metric([name], max(0.0, now - float(record.get("seen_at") or now)))
            loaded.add_metric([name, backend], 1 if current == "ready" else 0)
            for possible in BACKEND_STATES:
                state.add_metric([name, possible], 1 if possible == current else 0)
            held.add_metric([name, backend], status.get("memory_bytes") or 0)
        yield from (up, seen, loaded, state, held)


def _pages():
    """Pages per job, as a database expression: one image is one page, a PDF its page count."""
    return Cast(Greatest(F("page_count"), Value(1)), FloatField())


class Seconds(Func):
    """Seconds from `start` to `end` (datetimes), as a float computed by the database itself:
    Django's own datetime subtraction runs a Python function per row on SQLite."""

    output_field = FloatField()

    def __init__(self, end, start):
        super().__init__(end, start)

    def as_sqlite(self, compiler, connection, **extra):
        template = "((julianday(%(expressions)s)) * 86400.0)"
        return self.as_sql(compiler, connection, template=template, arg_joiner=") - julianday(", **extra)

    def as_postgresql(self, compiler, connection, **extra):
        # date_part gives double precision; EXTRACT gives numeric since PostgreSQL 14, much slower.
        template = "date_part('epoch', %(expressions)s)"
        return self.as_sql(compiler, connection, template=template, arg_joiner=" - ", **extra)


def histogram(name, doc, queryset, seconds, buckets, labels) -> HistogramMetricFamily:
    """A cumulative histogram of `seconds` (an expression) over `queryset`, by `labels`: one query
    that counts the rows per bucket (each row's bucket is found once), summed up here."""
    bucket = Case(
        *(When(value__lte=bound, then=Value(i)) for i, bound in enumerate(buckets)),
        default=Value(len(buckets)),
        output_field=IntegerField(),
    )
    rows = (
        queryset.order_by()
        .alias(value=seconds)
        .annotate(bucket=bucket)
        .values(*labels, "bucket")
        .annotate(n=Count("pk"), total=Sum("value"))
    )
    groups: dict[tuple[str, ...], tuple[list[int], list[float]]] = {}
    for row in rows:
        key = tuple(_backend(row[label]) if label == "backend" else str(row[label]) for label in labels)
        counts, total = groups.setdefault(key, ([0] * (len(buckets) + 1), [0.0]))
        counts[row["bucket"]] += row["n"]
        total[0] += float(row["total"] or 0)
    family = HistogramMetricFamily(name, doc, labels=labels)
    for key, (counts, total) in sorted(groups.items()):
        running, steps = 0, []
        for bound, count in zip([*map(floatToGoString, buckets), "+Inf"], counts, strict=True):
            running += count
            steps.append((bound, running))
        family.add_metric(list(key), steps, total[0])
    return family
