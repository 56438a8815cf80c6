"""Fixtures for the web tests: private media folder, logged-in clients, jobs, uploads, events."""

from __future__ import annotations

import asyncio
import contextlib
import io
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from channels import DEFAULT_CHANNEL_LAYER
from channels.layers import channel_layers
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from PIL import Image

from ocr_app import backendconfig, events
from ocr_app.models import Job
from tests.doubles.fake_backend import FakeBackends
from workers.holder import BackendHolder


@pytest.fixture(autouse=True)
def forget_made_up_workers(redis_client):
    """Workers these tests invent must not look alive to the real workers of other tests."""
    yield
    from ocr_app import livestate

    for name in list(livestate.workers()):
        if name != "gpu@test":
            livestate.remove_worker(name)


@pytest.fixture(autouse=True)
def media_root(settings, tmp_path):
    """Each test stores uploads in its own folder, so "nothing stored" can be checked."""
    settings.MEDIA_ROOT = tmp_path / "media"
    # WhiteNoise warns on every new client when the collected-static folder is missing.
    Path(settings.STATIC_ROOT).mkdir(parents=True, exist_ok=True)
    return settings.MEDIA_ROOT


def stored_files(media_root) -> list:
    return sorted(p for p in media_root.rglob("*") if p.is_file()) if media_root.exists() else []


@pytest.fixture
def alice(make_user):
    return make_user("alice")


@pytest.fixture
def bob(make_user):
    return make_user("bob")


@pytest.fixture
def alice_client(client, alice):
    client.force_login(alice)
    return client


@pytest.fixture
def sent_tasks(monkeypatch):
    """Every send_task call that would go to Celery, recorded instead of sent."""
    from dashboard.celery import app

    calls = []

    def record(name, args=None, kwargs=None, **options):
        calls.append({"name": name, "args": args, "kwargs": kwargs, **options})

    monkeypatch.setattr(app, "send_task", record)
    return calls


def image_bytes(fmt: str = "PNG", size: tuple[int, int] = (64, 48), mode: str = "RGB") -> bytes:
    img = Image.new(mode, size, "white")
    out = io.BytesIO()
    img.save(out, fmt)
    return out.getvalue()


def upload_file(name: str, data: bytes, content_type: str = "application/octet-stream"):
    return SimpleUploadedFile(name, data, content_type=content_type)


@pytest.fixture
def post_upload(alice_client):
    """POST /upload/ as alice, asking for JSON; returns the response."""

    def post(*files, language: str = "", mode: str = "", json: bool = True, client=None):
        headers = {"Accept": "application/json"} if json else {}
        data = {"files": list(files)}
        if language:
            data["language"] = language
        if mode:
            data["mode"] = mode
        return (client or alice_client).post("/upload/", data, headers=headers)

    return post


@pytest.fixture
def make_job(alice):
    """A Job row; with_file=True also stores a small PNG as its upload and thumbnail."""
    counter = {"n": 0}

    def make(owner=None, name=None, with_file=False, **fields):
        counter["n"] += 1
        data = image_bytes("PNG", (40, 30))
        job = Job(
            owner=owner or alice,
            original_name=name or f"scan-{counter['n']}.png",
            image_format=fields.pop("image_format", "PNG"),
            size_bytes=len(data),
            width=40,
            height=30,
            sha256=uuid.uuid4().hex * 2,
            **fields,
        )
        if with_file:
            job.upload.save(job.original_name, ContentFile(data), save=False)
            job.thumbnail.save("thumb.jpg", ContentFile(image_bytes("JPEG", (20, 15))), save=False)
        job.save()
        return job

    return make


@dataclass
class FakeWorker:
    """The worker's task module running in this process on fake backends."""

    fakes: FakeBackends
    holder: BackendHolder


@pytest.fixture
def fake_worker(redis_client):
    """Call it to run the worker's tasks (`tasks.run_job.apply`) in this process with a backend
    holder whose backends are fakes (tests/doubles/fake_backend.py): fake_worker(gpu=None,
    **behaviour) -> FakeWorker. `gpu` names a recorded card (tests/data/nvml) for the planner;
    without it the machine's own GPU is read (none here). `behaviour` is FakeBackends's."""
    from core.gpu import NvmlReader
    from tests.doubles.fake_pynvml import FakeNvml
    from workers import tasks

    started = contextlib.ExitStack()

    def start(gpu: str | None = None, **behaviour) -> FakeWorker:
        fakes = FakeBackends(**behaviour)
        seams = {"create": fakes.create}
        if gpu:
            seams["read_gpu"] = NvmlReader(FakeNvml(gpu)).read
        holder = started.enter_context(tasks.use_holder(tasks.worker_holder(**seams)))
        return FakeWorker(fakes, holder)

    with started:
        yield start
    # Workers these tests made up must not look alive to the real worker of the integration tests.
    for key in redis_client.scan_iter("ocrdash:*"):
        redis_client.delete(key)


@pytest.fixture
def dots_installed(monkeypatch):
    """dots.ocr installed and downloaded in this worker, and vLLM turned off: what the planner asks."""
    monkeypatch.setattr(backendconfig, "in_process_unavailable", lambda cfg: None)
    monkeypatch.setattr(backendconfig, "vllm_unavailable", lambda cfg: "vLLM is turned off in the backend settings")


@pytest.fixture
def make_jobs(alice):
    """Many job rows at once, created_at one minute apart (the last one newest)."""

    def make(count: int, owners=None, **fields):
        owners = owners or [alice]
        start = timezone.now() - timedelta(minutes=count)
        jobs = [
            Job(
                owner=owners[i % len(owners)],
                original_name=f"page-{i:03d}.png",
                image_format="PNG",
                size_bytes=100,
                width=10,
                height=10,
                sha256=f"{i:064x}",
                created_at=start + timedelta(minutes=i),
                **fields,
            )
            for i in range(count)
        ]
        return Job.objects.bulk_create(jobs)

    return make


class EventListener:
    """A channel in the events group on the real Redis channel layer."""

    def __init__(self):
        # A layer of its own: the shared one may be receiving in another test's event loop.
        self.layer = channel_layers.make_backend(DEFAULT_CHANNEL_LAYER)
        # A plain (not process-local) name: each receive may run in its own event loop.
        self.channel = f"webtest.{uuid.uuid4().hex}"

    def join(self):
        async_to_sync(self.layer.group_add)(events.GROUP, self.channel)

    def leave(self):
        async_to_sync(self.layer.group_discard)(events.GROUP, self.channel)

    def receive(self, timeout: float = 5.0) -> dict:
        async def get():
            return await asyncio.wait_for(self.layer.receive(self.channel), timeout)

        return async_to_sync(get)()

    def next_job_event(self, job_id: int, timeout: float = 5.0) -> dict:
        """The next job.status event about this job (others are skipped)."""
        while True:
            message = self.receive(timeout)
            event = message["event"]
            if event["type"] == "job.status" and event["job"]["id"] == job_id:
                return event


@pytest.fixture
def event_listener(redis_server):
    listener = EventListener()
    listener.join()
    yield listener
    listener.leave()
