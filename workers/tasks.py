"""The one place that joins Job rows to backends: the worker's Celery tasks and signals.

The worker runs with concurrency 1 and keeps the last backend loaded between jobs (loading
dots.ocr takes minutes), until the plan changes, an admin frees the GPU, or it sat idle
for OCRDASH_BACKEND_IDLE_UNLOAD seconds (the GPU is shared: give memory back); its
BackendHolder (workers/holder.py) does that. This is the only module of workers/ that imports
Django, Celery or the web app (pyproject.toml's import contracts).
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import threading
import time
from collections.abc import Iterator

from billiard.exceptions import WorkerLostError
from celery import shared_task
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from celery.signals import celeryd_after_setup, task_failure, worker_process_init, worker_ready, worker_shutdown
from django.conf import settings
from django.core.files.base import ContentFile
from django.db import close_old_connections
from django.utils import timezone
from PIL import Image

from core import backends, containers, documents, jobstate, pagenotes, readpage, textlayer
from core.dots.prompts import GROUNDING, QUESTION, TEXT_ONLY
from core.gpupeak import GpuPeak
from core.pdf import PdfRefused
from core.planner import Plan, PlanRefused, replan_after_oom
from core.prefetch import ahead
from core.queues import RUN_JOB_TASK, UNLOAD_BACKEND_TASK, worker_queue
from core.results import BackendError, JobCancelled, OutOfMemory
from ocr_app import backendconfig, delivery, events, files, forkguard, livestate, pageimages, recovery, retention
from ocr_app.models import BackendSettings, Job, Page
from workers.backends.pagereading import DONE, STARTED
from workers.holder import BackendHolder, Choice

log = logging.getLogger(__name__)

# Document pages rendered ahead of the page the backend takes next (on a CPU thread).
RENDER_AHEAD = 2
# The cancel flag is read from the database at most this often while a job runs.
CANCEL_POLL_SECONDS = 1.0
# The worker's main process: the pool processes' parent (set in each pool process as it starts;
# with the solo pool, jobs run in the main process itself).
MAIN_PID = os.getpid()


def record_and_publish(body: dict) -> None:
    """A backend state change (BackendHolder.publish): kept in Redis for pages that open later,
    and sent to every open page."""
    try:
        livestate.update_worker(body["worker"], backend_status=body)
    except Exception:
        log.warning("could not record the backend state in Redis", exc_info=True)
    events.publish_backend_status(body)


def worker_holder(**seams) -> BackendHolder:
    """A backend holder as this worker process makes it; `seams` replace its parts (tests give fake
    backends or a recorded GPU)."""
    parts = {
        "publish": record_and_publish,
        "gpu_index": lambda: settings.GPU_INDEX,
        # Read when a job ends, so a changed setting applies to the next idle time.
        "idle_seconds": lambda: settings.BACKEND_IDLE_UNLOAD,
        **seams,
    }
    return BackendHolder(**parts)


_holder: BackendHolder | None = None
_holder_lock = threading.Lock()


def holder() -> BackendHolder:
    """This worker process's one backend holder, made on first use."""
    global _holder
    with _holder_lock:
        if _holder is None:
            _holder = worker_holder()
        return _holder


@contextlib.contextmanager
def use_holder(replacement: BackendHolder) -> Iterator[BackendHolder]:
    """Run this process's tasks with `replacement` as the holder (tests); the old one comes back
    after, and the replacement's idle timer is stopped."""
    global _holder
    with _holder_lock:
        previous, _holder = _holder, replacement
    try:
        yield replacement
    finally:
        replacement.close()
        with _holder_lock:
            _holder = previous


def choose(job: Job, snapshot=None) -> Choice:
    """Plan for this job, or keep the loaded backend while the settings have not changed.

    A loaded dots.ocr backend is kept between jobs even if the free memory moved a little:
    restarting it costs minutes. It is planned afresh when the admin changes the settings,
    after it was unloaded (idle, freed, switched), and after CUDA ran out of memory.
    """
    cfg = BackendSettings.load()
    stamp = cfg.updated_at.isoformat() if cfg.updated_at else ""
    language = job.language or settings.OCRDASH_OCR_LANGUAGE
    kept = holder().kept(stamp)
    if kept is not None:
        return kept
    plan = backendconfig.plan_now(cfg, snapshot if snapshot is not None else holder().read_gpu())
    return _choice_of(plan, cfg, language, stamp)


# What a job runs on when every page it reads comes from its PDF's text layer: no backend is planned
# or loaded (a page whose text layer turns out empty plans one then).
NO_ENGINE = Choice(None, {"backend": ""}, ("no engine",), "")


def _needs_engine(job: Job) -> bool:
    if job.image_format != documents.PDF:
        return True
    text_task = job.mode == TEXT_ONLY
    kinds = Page.objects.filter(job=job).exclude(state=Page.SUCCEEDED).values_list("kind", flat=True)
    return not kinds or any(not textlayer.reads_text_layer(job.text_layer, kind, text_task) for kind in kinds)


def _choice_of(plan: Plan, cfg: BackendSettings, language: str, stamp: str) -> Choice:
    args = backendconfig.load_args(plan, cfg, language)
    if not backends.runs_dots(plan.backend):  # the CPU engine: one engine per language
        key = (plan.backend, args["language"])
    else:
        key = (stamp, plan.variant, plan.max_pixels, plan.oom_retried)
    return Choice(plan, args, key, stamp)


class _Progress:
    """Relays a backend's progress (e.g. a model download) to the job's page and the dashboard."""

    def __init__(self, job: Job):
        self.job = job
        self.last_sent = 0.0

    def __call__(self, done: int, total: int, message: str) -> None:
        now = time.monotonic()
        if now - self.last_sent < 0.5 and done < total:
            return
        self.last_sent = now
        fraction = done / total if total else 0.0
        # Only while it runs: a cancel ("Cancelled by …") must keep its own message.
        _this_attempt(self.job).update(message=message, progress=fraction)
        self.job.message, self.job.progress = message, fraction
        events.publish_job(self.job)
        holder().publish("loading", message, fraction)


class _CancelFlag:
    def __init__(self, job_id: int):
        self.job_id = job_id
        self.checked_at = 0.0
        self.cancelled = False

    def __call__(self) -> bool:
        now = time.monotonic()
        if not self.cancelled and now - self.checked_at >= CANCEL_POLL_SECONDS:
            self.checked_at = now
            self.cancelled = Job.objects.filter(pk=self.job_id, state=jobstate.CANCELLED).exists()
        return self.cancelled


def _ours(pid: int, role: str | None) -> bool:
    return role in containers.ROLES or pid == os.getpid()


def _this_attempt(job: Job):
    """The job's row while it is still running this attempt: a process taken for dead (and
    replaced by a newer attempt) must not write over the newer one."""
    return Job.objects.filter(pk=job.pk, state=jobstate.RUNNING, attempts=job.attempts)


def _start(job: Job, me: str, **fields) -> bool:
    """queued → running as a new attempt by this process."""
    return job.move_to(
        jobstate.RUNNING,
        if_attempt=job.attempts,
        attempts=job.attempts + 1,
        worker=me,
        worker_pid=os.getpid(),
        heartbeat_at=timezone.now(),
        **fields,
    )


# Not reject_on_worker_lost: when the pool process dies, Celery acknowledges the task and reports
# WorkerLostError to the main process, which queues the job again or fails it (on_task_failure).
@shared_task(name=RUN_JOB_TASK, bind=True, acks_late=True, reject_on_worker_lost=False)
def run_job(self, job_id: int, tried: list[str] | None = None, queued_at: str | None = None) -> str:
    """Run one job. `tried` lists the workers whose GPU could not fit it (see route_elsewhere);
    `queued_at` tells a task sent before a cancel-and-retry from the one sent after it."""
    try:
        job = Job.objects.select_related("owner").get(pk=job_id)
    except Job.DoesNotExist:
        log.warning("job %s is gone; nothing to do", job_id)
        return "missing"
    if queued_at and job.queued_at and job.queued_at.isoformat() != queued_at:
        return "stale"  # the job was queued again since; the newer task runs it at its new place
    held = holder()
    held.hostname = self.request.hostname or held.hostname
    me = held.hostname
    if job.state == jobstate.RUNNING:
        # The task came again (its worker died holding it, or it was sent twice): the job runs
        # on, unless the process that ran it is gone.
        cause = recovery.runner_gone(job, me, MAIN_PID)
        if cause is None:
            return "skipped"
        recovery.recover(job, cause)
        return "recovered"
    if job.state != jobstate.QUEUED:
        return "skipped"  # cancelled while waiting, or already done
    try:
        choice = choose(job) if _needs_engine(job) else NO_ENGINE
    except PlanRefused as refused:
        reasons = [*(tried_reasons(job)), f"{me}: {refused.headline}"]
        if route_elsewhere(job, me, tried or [], reasons):
            return "rerouted"
        if not _start(job, me):
            return "skipped"
        return _fail(job, " ".join([*reasons[:-1], *refused.reasons]))
    if not _start(job, me, backend=choice.args["backend"], plan=_plan_record(choice, job)):
        return "skipped"  # cancelled, or taken by another task, between the read and the move
    events.publish_job(job)
    events.publish_queue_positions()

    peak = GpuPeak(held.read_gpu, settings.GPU_INDEX, _ours)
    # A job run again after its worker process died says so when it ends.
    notes: list[str] = [f"Run again after {job.last_fault}."] if job.retries and job.last_fault else []
    try:
        with peak:
            choice, engine_peak = _run_pages(job, choice, notes)
    except JobCancelled:
        Page.objects.filter(job=job, state=Page.RUNNING).update(state=Page.PENDING, started_at=None)
        Job.objects.filter(pk=job.pk).update(current_page=None, worker_pid=None)
        job.refresh_from_db()
        events.publish_job(job)
        return "cancelled"
    except SoftTimeLimitExceeded:
        Page.objects.filter(job=job, state=Page.RUNNING).update(state=Page.PENDING, started_at=None)
        limit = settings.JOB_TIME_LIMIT
        return _fail(
            job, f"The job took longer than the limit of {limit} seconds and was stopped.", peak, current_page=None
        )
    except Exception as exc:  # the worker must go on with the next job, whatever happened
        log.exception("job %s failed", job_id)
        Page.objects.filter(job=job, state=Page.RUNNING).update(state=Page.PENDING, started_at=None)
        return _fail(
            job,
            f"The job could not be run ({type(exc).__name__}: {exc}). Your upload is kept; "
            "try again, and tell an administrator if it keeps failing.",
            peak,
            current_page=None,
        )
    finally:
        held.start_idle_timer()
    return _finish(job, choice, peak, engine_peak, notes)


def _run_pages(job: Job, choice: Choice, notes: list[str]) -> tuple[Choice, int | None]:
    """Read the pages that have not succeeded yet, several at once where the plan says so
    (`pages_at_once`): each page is stored and shown as soon as it ends, in whatever order they
    end. A page that fails is recorded and the others go on; a cancel aborts every page in flight.
    After CUDA runs out of memory the pages not read yet go on with the next plan
    (_next_choice_after_oom). Returns the choice the last pages ran on and the highest GPU peak a
    backend reported."""
    pages = _pages_of(job)
    by_number = {p.number: p for p in pages}
    total = len(pages)
    engine_peak: int | None = None
    doc_data: bytes | None = None
    if job.is_document:
        with job.upload.open("rb") as fh:
            doc_data = fh.read()
    if pageimages.first_frame_only(job):
        notes.append("Only the first frame of this animated GIF was read.")
    _read_text_layer_pages(job, pages, doc_data)
    region = job.region if job.mode == GROUNDING else None
    question = job.question if job.mode == QUESTION else None
    held = holder()
    while True:
        todo = [p.number for p in pages if p.state not in (Page.SUCCEEDED, Page.FAILED)]
        if not todo:
            return choice, engine_peak
        if Job.objects.filter(pk=job.pk, state=jobstate.CANCELLED).exists():
            raise JobCancelled()
        if choice is NO_ENGINE:  # a page the text layer did not read: it needs an engine after all
            try:
                choice = choose(job)
            except PlanRefused as refused:
                for number in todo:
                    _page_failed(by_number[number], " ".join([*notes, *refused.reasons]), time.monotonic())
                _publish_progress(job, pages, total)
                return choice, engine_peak
        started: dict[int, float] = {}
        source = _PageSource(job, [by_number[n] for n in todo], doc_data)
        try:
            backend = held.ensure(choice, _Progress(job))
            if job.message:
                job.message = ""
            for event in backend.read_pages(source, job.mode, _CancelFlag(job.pk), bbox=region, question=question):
                page = by_number[event.key]
                if event.kind == STARTED:
                    started[page.number] = time.monotonic()
                    _page_started(job, page, pages)
                    continue
                since = started.pop(page.number, time.monotonic())
                if event.kind == DONE:
                    _page_succeeded(job, page, event.result, choice, source.images.pop(page.number), since, total)
                    reported = (event.result.details or {}).get("peak_gpu_bytes")
                    if isinstance(reported, int):
                        engine_peak = max(engine_peak or 0, reported)
                else:
                    source.images.pop(page.number, None)
                    _page_failed(page, _page_error(event.error, notes), since)
                _publish_progress(job, pages, total)
        except (JobCancelled, SoftTimeLimitExceeded):
            raise
        except BackendError as exc:
            if not _is_out_of_memory(exc) or choice.plan is None:
                _fail_in_flight(job, pages, started, str(exc))
                continue
            _back_to_pending(job, pages, started)
            try:
                choice = _next_choice_after_oom(job, choice, notes)
            except PlanRefused as refused:
                for number in todo:
                    if by_number[number].state != Page.SUCCEEDED:
                        _page_failed(by_number[number], " ".join([*notes, *refused.reasons]), time.monotonic())
                _publish_progress(job, pages, total)
                return choice, engine_peak
        except Exception as exc:  # the other pages (and the worker) must go on, whatever happened
            log.exception("job %s failed on pages %s", job.pk, sorted(started))
            _fail_in_flight(
                job,
                pages,
                started,
                f"The OCR engine failed ({type(exc).__name__}: {exc}). Your upload is kept; "
                "try again, and tell an administrator if it keeps failing.",
            )
        finally:
            source.close()


class _PageSource:
    """The job's pages as the backend reads them: `(number, image)` in order, document pages rendered
    ahead on a CPU thread (core/prefetch.py) and stored here, in the worker's thread, as each is
    taken. A page that cannot be made comes as its exception. `images` keeps each page image
    until its result is stored (its size goes with the result)."""

    def __init__(self, job: Job, pages: list[Page], doc_data: bytes | None):
        self.job, self.images = job, {}
        self._document = job.is_document
        # Two pages ahead: the next batch's first pages are ready when a slot frees.
        renders = documents.render_each(job.image_format, doc_data, [p.number for p in pages], job.original_name)
        self._rendered = ahead(renders, RENDER_AHEAD)
        self._pages = self._each(pages)

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._pages)

    def _each(self, pages: list[Page]):
        for page in pages:
            # Asked of the database before each page (the backend's own check is rate-limited).
            if Job.objects.filter(pk=self.job.pk, state=jobstate.CANCELLED).exists():
                raise JobCancelled()
            try:
                image = self._image(page)
            except (BackendError, documents.PageRefused) as exc:
                yield page.number, exc
                continue
            except OSError as exc:
                yield page.number, BackendError(f"The page image could not be read: {exc}")
                continue
            self.images[page.number] = image
            yield page.number, image

    def _image(self, page: Page) -> Image.Image:
        if not self._document:
            image = pageimages.open_page_image(self.job, page.number)
            page.width, page.height = image.size
            return image
        _, rendered = next(self._rendered)
        if isinstance(rendered, BaseException):
            raise rendered
        image, dpi = rendered
        _store_rendered(page, image, dpi)
        return image

    def close(self) -> None:
        self._pages.close()
        self._rendered.close()


def _read_text_layer_pages(job: Job, pages: list[Page], doc_data: bytes | None) -> None:
    """The PDF pages this job reads from their own text layer (core/textlayer.py), read here in
    milliseconds: no backend is asked, or loaded, for them. A page whose layer gives no line goes
    to the backend with the others."""
    if job.image_format != documents.PDF or doc_data is None:
        return
    for page in pages:
        if page.state in (Page.SUCCEEDED, Page.FAILED):
            continue
        if not textlayer.reads_text_layer(job.text_layer, page.kind, job.mode == TEXT_ONLY):
            continue
        if Job.objects.filter(pk=job.pk, state=jobstate.CANCELLED).exists():
            raise JobCancelled()
        since = time.monotonic()
        try:
            image, dpi = documents.render_page(job.image_format, doc_data, page.number - 1, name=job.original_name)
            lines = textlayer.read_lines(doc_data, page.number - 1, image.size, name=job.original_name)
        except (documents.PageRefused, PdfRefused):
            continue  # the backend's pass meets the page again and says why it cannot be read
        if not lines:
            continue
        _store_rendered(page, image, dpi)
        result = textlayer.as_result(lines)
        parsed = readpage.from_lines(result.lines, result.text, job.mode, image.size)
        _page_started(job, page, pages)
        _page_succeeded(job, page, result, None, image, since, len(pages), (result, parsed))
        _publish_progress(job, pages, len(pages))


def _page_error(error: BaseException | None, notes: list[str]) -> str:
    if isinstance(error, PlanRefused):
        return " ".join([*notes, *error.reasons])
    return str(error)


def _fail_in_flight(job: Job, pages: list[Page], started: dict[int, float], message: str) -> None:
    """The pages in flight fail with `message`; with none in flight (the backend failed before a
    page started: it would fail again) every page not read yet fails."""
    now = time.monotonic()
    for page in pages:
        if page.number in started or (not started and page.state not in (Page.SUCCEEDED, Page.FAILED)):
            _page_failed(page, message, started.get(page.number, now))
    started.clear()
    _publish_progress(job, pages, len(pages))


def _back_to_pending(job: Job, pages: list[Page], started: dict[int, float]) -> None:
    for page in pages:
        if page.number in started:
            page.state, page.started_at = Page.PENDING, None
            page.save(update_fields=["state", "started_at"])
    started.clear()


def _pages_of(job: Job) -> list[Page]:
    """The job's pages in order; made here for a job that has none yet (made before pages)."""
    pages = list(Page.objects.filter(job=job).order_by("number"))
    if not pages:
        Page.objects.bulk_create(Page(job=job, number=n) for n in range(1, max(1, job.page_count) + 1))
        pages = list(Page.objects.filter(job=job).order_by("number"))
    return pages


def _store_rendered(page: Page, image: Image.Image, dpi) -> None:
    """A rendered document page's image, stored for the page view."""
    out = io.BytesIO()
    image.save(out, "PNG")
    # A new file each time: the old one may be another job's too (a reused result); it is deleted
    # only when no job names it any more.
    old = page.image.name
    page.image.save(f"page-{page.number:04d}.png", ContentFile(out.getvalue()), save=False)
    page.width, page.height, page.dpi = image.width, image.height, dpi
    page.save(update_fields=["image", "width", "height", "dpi"])
    if old and old != page.image.name:
        files.delete_unreferenced(old, storage=page.image.storage)


def _page_started(job: Job, page: Page, pages: list[Page]) -> None:
    page.state, page.started_at, page.finished_at, page.message = Page.RUNNING, timezone.now(), None, ""
    page.save(update_fields=["state", "started_at", "finished_at", "message"])
    _show_current(job, pages)


def _show_current(job: Job, pages: list[Page]) -> None:
    """The job's current page is the first one running (the others are counted in the events)."""
    running = [p.number for p in pages if p.state == Page.RUNNING]
    job.current_page = min(running) if running else None
    _this_attempt(job).update(current_page=job.current_page)
    events.publish_job(job)


def _page_failed(page: Page, message: str, started: float) -> None:
    page.state, page.message = Page.FAILED, message
    page.seconds, page.finished_at = round(time.monotonic() - started, 3), timezone.now()
    page.save(update_fields=["state", "message", "seconds", "finished_at"])


def _page_succeeded(
    job: Job,
    page: Page,
    result,
    choice: Choice | None,
    image: Image.Image,
    started: float,
    total: int,
    text_layer=None,
) -> None:
    """`text_layer`: (result, parsed page) of a page read from its PDF text layer; else the
    backend's answer is parsed here."""
    if text_layer is not None:
        result, parsed = text_layer
        page.source = textlayer.TEXT_LAYER
    else:
        parsed = readpage.parsed_page(result, choice.args["backend"], job.mode, image.size)
        page.source = textlayer.OCR
    data = result.as_json()
    data["image_size"] = list(image.size)
    parsed.page_number = page.number
    data["page"] = parsed.to_dict()
    message = " ".join(parsed.warnings)
    if not parsed.elements and not parsed.text.strip() and not parsed.warnings:
        message = "No text was found on this image." if total == 1 else "No text was found on this page."
    page.state, page.result, page.text, page.message = Page.SUCCEEDED, data, parsed.text, message
    page.seconds, page.finished_at = round(time.monotonic() - started, 3), timezone.now()
    page.width, page.height = image.size
    page.save(
        update_fields=["state", "result", "text", "message", "seconds", "finished_at", "width", "height", "source"]
    )


def _publish_progress(job: Job, pages: list[Page], total: int) -> None:
    done = sum(1 for p in pages if p.state in (Page.SUCCEEDED, Page.FAILED))
    job.progress = done / total if total else 1.0
    _this_attempt(job).update(progress=job.progress)
    _show_current(job, pages)


def _finish(job: Job, choice: Choice, peak: GpuPeak, engine_peak: int | None, notes: list[str]) -> str:
    pages = list(Page.objects.filter(job=job).order_by("number"))
    good = [p for p in pages if p.state == Page.SUCCEEDED]
    failed = [p for p in pages if p.state != Page.SUCCEEDED]
    gpu = {"gpu_free_at_start_bytes": peak.free_at_start, "peak_gpu_bytes": peak.peak(engine_peak)}
    if not good:
        if len(pages) == 1:
            message = failed[0].message
        else:
            message = f"Every page failed. Page {failed[0].number}: {failed[0].message}"
        return _fail(job, message, peak, current_page=None)
    text = "\n\n".join(p.text for p in good if p.text)
    layer_note = pagenotes.text_layer_note(len(pages), [p.number for p in good if p.source == textlayer.TEXT_LAYER])
    if layer_note:
        notes = [*notes, layer_note]
    if len(pages) == 1:
        message = " ".join([*notes, good[0].message]).strip()
        result = good[0].result
    else:
        failures = [(p.number, p.message) for p in failed]
        message = pagenotes.document_message(notes, len(pages), failures, [p.number for p in good if p.message])
        result = {
            "pages": [{"number": p.number, "state": p.state} for p in pages],
            "failed_pages": [p.number for p in failed],
        }
    moved = job.move_to(
        jobstate.SUCCEEDED,
        if_attempt=job.attempts,
        worker_pid=None,
        backend=choice.args["backend"],
        plan=_plan_record(choice, job),
        text=text,
        text_preview=text[:200],
        result=result,
        progress=1.0,
        current_page=None,
        message=message,
        **gpu,
    )
    log.info("job %s ran to the end (attempt %s): %s", job.pk, job.attempts, "succeeded" if moved else "not recorded")
    if not moved:
        job.refresh_from_db()  # cancelled while the engine ran (or taken for lost): keep that
    events.publish_job(job)
    return job.state


def tried_reasons(job: Job) -> list[str]:
    return list((job.plan or {}).get("refused_by", []))


def route_elsewhere(job: Job, me: str, tried: list[str], reasons: list[str]) -> bool:
    """One worker per GPU: a job this worker's GPU cannot fit goes to a live worker that has not
    tried it yet (its GPU may be larger or emptier). The job stays queued meanwhile."""
    tried = [*tried, me]
    try:
        others = [name for name in livestate.live_workers() if name not in tried]
    except Exception:
        others = []
    if not others:
        return False
    target = sorted(others)[0]
    Job.objects.filter(pk=job.pk).update(plan={"refused_by": reasons})
    job.plan = {"refused_by": reasons}
    kwargs = {"tried": tried, "queued_at": job.queued_at.isoformat() if job.queued_at else None}
    run_job.app.send_task(RUN_JOB_TASK, args=[job.pk], kwargs=kwargs, queue=worker_queue(target))
    log.info("job %s does not fit on %s; sent to %s", job.pk, me, target)
    return True


def _plan_record(choice: Choice, job: Job | None = None) -> dict:
    record = {"backend": choice.args["backend"]} if choice.plan is None else choice.plan.as_json()
    if job is not None and tried_reasons(job):
        record["refused_by"] = tried_reasons(job)  # the workers whose GPU could not fit it
    return record


def _is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, OutOfMemory) or bool(getattr(exc, "out_of_memory", False))


def _next_choice_after_oom(job: Job, choice: Choice, notes: list[str]) -> Choice:
    """CUDA ran out of memory under `choice`: unload, then plan again against the GPU as it is
    now (once smaller on the same backend, then the next in the plan's order; PlanRefused when
    nothing is left). The pages not read yet go on with it."""
    held = holder()
    held.unload("CUDA ran out of memory")
    next_plan = replan_after_oom(choice.plan, held.read_gpu())
    notes.append(f"{choice.plan.label} ran out of GPU memory; {next_plan.reasons[0]}")
    cfg = BackendSettings.load()
    choice = _choice_of(next_plan, cfg, job.language, choice.stamp)
    _this_attempt(job).update(message=notes[-1], backend=choice.args["backend"])
    job.message = notes[-1]
    events.publish_job(job)
    return choice


@shared_task(name=UNLOAD_BACKEND_TASK, bind=True)
def unload_backend(self, reason: str = "asked to free the GPU") -> dict:
    """Sent to one worker's own queue by the GPU memory manager."""
    held = holder()
    held.hostname = self.request.hostname or held.hostname
    unloaded = held.unload(reason)
    emptied = _empty_allocator_cache()
    if not unloaded:
        held.publish("unloaded", reason)
    return {"unloaded": unloaded, "emptied_cache": emptied, "at": time.time()}


def _empty_allocator_cache() -> bool:
    """Give cached CUDA blocks back to the driver, where torch is loaded at all."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return False
    torch.cuda.empty_cache()
    return True


@celeryd_after_setup.connect
def listen_on_own_queue(sender, instance, **kwargs) -> None:
    instance.app.amqp.queues.select_add(worker_queue(sender))


@celeryd_after_setup.connect
def guard_pool_forks(**kwargs) -> None:
    """In the main process, before its pool starts: no database connection crosses a fork."""
    forkguard.install()


@worker_process_init.connect
def watch_the_main_process(**kwargs) -> None:
    """In each pool process: exit when the worker's main process is gone. Orphaned, it would go on
    reading a job the other workers are about to run again (and hold GPU memory meanwhile)."""
    global MAIN_PID
    MAIN_PID = os.getppid()
    parent = MAIN_PID

    def watch():
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="ocrdash-orphan-watch", daemon=True).start()


@worker_ready.connect
def on_worker_ready(sender=None, **kwargs) -> None:
    hostname = getattr(sender, "hostname", "") or ""
    holder().hostname = hostname
    livestate.update_worker(hostname, pids=[os.getpid()], gpu_index=settings.GPU_INDEX)
    holder().publish("unloaded", "worker started")
    threading.Thread(target=_heartbeat, args=(hostname,), name="ocrdash-heartbeat", daemon=True).start()
    threading.Thread(target=_upkeep, args=(hostname,), name="ocrdash-upkeep", daemon=True).start()


@task_failure.connect
def on_task_failure(sender=None, task_id=None, exception=None, args=None, **kwargs) -> None:
    """In the worker's main process: a pool process died mid-job (WorkerLostError), or was killed at
    the hard time limit. Either way the job would stay "running": end it or queue it again now."""
    if getattr(sender, "name", "") != run_job.name or not args:
        return
    if not isinstance(exception, (WorkerLostError, TimeLimitExceeded)):
        return
    try:
        with forkguard.main_process_db():  # the pool process that replaces the dead one is forked next
            if isinstance(exception, TimeLimitExceeded):
                recovery.fail_after_hard_time_limit(int(args[0]), holder().hostname, settings.JOB_TIME_LIMIT)
            else:
                recovery.recover_after_worker_lost(int(args[0]), holder().hostname, str(exception))
    except Exception:  # the sweep (_upkeep) takes the job up within seconds
        log.exception("could not recover job %s after its process died", args[0])


@worker_shutdown.connect
def on_worker_shutdown(sender=None, **kwargs) -> None:
    """A worker that stops cleanly leaves the list at once: no job is routed to it any more. Its
    pool has stopped by now: a job still running here was cut short, and goes back in the queue
    (a stop is not the job's fault: its retries are not counted)."""
    hostname = getattr(sender, "hostname", "") or holder().hostname
    try:
        livestate.remove_worker(hostname)
    except Exception:
        log.debug("could not remove the worker's record", exc_info=True)
    try:
        with forkguard.main_process_db():
            for job in Job.objects.filter(state=jobstate.RUNNING, worker=hostname).select_related("owner"):
                recovery.recover(job, "the worker was stopped", counts=False)
    except Exception:
        log.warning("could not queue the jobs of the stopping worker again", exc_info=True)


def _heartbeat(hostname: str) -> None:
    """Keeps this worker's record fresh in Redis, so the dashboard and the job routing know it is
    alive even while it sits idle."""
    while True:
        time.sleep(livestate.HEARTBEAT_SECONDS)
        try:
            livestate.update_worker(hostname)
        except Exception:
            log.debug("heartbeat not recorded", exc_info=True)


def _upkeep(hostname: str) -> None:
    """The main process's rounds, from the start on (see upkeep_round)."""
    starting = True
    while True:
        upkeep_round(hostname, starting)
        starting = False
        time.sleep(settings.RECOVERY_SWEEP_SECONDS)


def upkeep_round(hostname: str, starting: bool = False) -> None:
    """Say that this worker's running jobs are alive, recover jobs whose process is gone
    (ocr_app/recovery.py: at the start also those a previous run of this worker left running), send
    queued jobs Redis lost (ocr_app/delivery.py), and apply the retention settings once an hour
    (ocr_app/retention.py). One worker at a time sends and prunes."""
    close_old_connections()  # a long-lived thread: drop a connection the database closed
    # Its connections are closed when the round ends: a pool process forked later must not inherit
    # them (ocr_app/forkguard.py).
    with forkguard.main_process_db():
        _step("recover jobs", recovery.sweep, hostname, MAIN_PID, starting)
        if _lock("resend", hostname, settings.RECOVERY_SWEEP_SECONDS):
            _step("send lost jobs", delivery.resend_lost)
        if retention.enabled() and _lock("prune", hostname, settings.PRUNE_EVERY_SECONDS):
            _step("apply retention", retention.prune)


def _step(what: str, fn, *args) -> None:
    try:
        fn(*args)
    except Exception:  # Redis or the database away: the next round tries again
        log.warning("could not %s", what, exc_info=True)


def _lock(name: str, hostname: str, seconds: int) -> bool:
    """True for the one worker that takes this round of `name` (a Redis key that expires)."""
    try:
        return bool(livestate.client().set(f"{livestate.PREFIX}upkeep:{name}", hostname, nx=True, ex=max(1, seconds)))
    except Exception:
        return False


def _fail(job: Job, message: str, peak: GpuPeak | None = None, **more) -> str:
    fields = {"message": message, "worker_pid": None, **more}
    if peak is not None:
        fields.update(gpu_free_at_start_bytes=peak.free_at_start, peak_gpu_bytes=peak.peak())
    if not job.move_to(jobstate.FAILED, if_attempt=job.attempts, **fields):
        job.refresh_from_db()
    events.publish_job(job)
    return jobstate.FAILED
