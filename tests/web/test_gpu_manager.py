"""The GPU monitor's samples, and the GPU memory manager (status, free, stop a container),
against recorded NVML values and a double of the Docker SDK client."""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import replace

import pytest
from django.core.management import CommandError, call_command

from core.containers import ContainerNames
from core.gpu import GpuDevice, GpuProcess, GpuSnapshot, NvmlReader
from ocr_app import gpumanager, livestate
from ocr_app.management.commands.gpumonitor import Monitor
from ocr_app.models import GpuAction
from tests.doubles.fake_pynvml import FakeNvml

GIB = 1024**3


@pytest.fixture(autouse=True)
def clean_live_state(redis_client):
    for key in redis_client.scan_iter("ocrdash:*"):
        redis_client.delete(key)


@pytest.fixture
def recorded_card(monkeypatch):
    """The seed situation: an RTX 3060 with 5.81 GiB free, as the manager reads it."""
    reader = NvmlReader(FakeNvml("rtx3060_shared"))
    monkeypatch.setattr(gpumanager, "read_snapshot", lambda nvml=None: reader.read())
    return reader


def fake_id(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


class FakeContainer:
    def __init__(self, name, labels=None, container_id=None):
        self.id = container_id or fake_id(name)
        self.name = name
        self.labels = labels or {}
        self.stopped = False
        self.removed = False

    @property
    def status(self):
        return "exited" if self.stopped else "running"

    def stop(self, timeout=10):
        self.stopped = True

    def remove(self, force=False):
        self.removed = True


class FakeDocker:
    """The calls of docker.DockerClient the manager makes, over a fixed set of containers."""

    def __init__(self, *containers):
        self.all = {c.name: c for c in containers}
        self.containers = self

    def list(self, filters=None, **kwargs):
        labels = (filters or {}).get("label", [])
        wanted = dict(f.split("=", 1) for f in ([labels] if isinstance(labels, str) else labels))
        return [c for c in self.all.values() if all(c.labels.get(k) == v for k, v in wanted.items())]

    def get(self, id_or_name):
        """As the engine resolves it: a full id first, then a name."""
        import docker

        for c in self.all.values():
            if c.id == id_or_name:
                return c
        if id_or_name not in self.all:
            raise docker.errors.NotFound(f"No such container: {id_or_name}")
        return self.all[id_or_name]


def snapshot_with(used_by: dict[str, int], total=12 * GIB, ids: dict[str, str] | None = None) -> GpuSnapshot:
    def in_container(name: str) -> bool:
        return name.startswith("c-") or name in (ids or {})

    processes = tuple(
        GpuProcess(pid=1000 + i, name=name, used_bytes=used, container=name if in_container(name) else None,
                   role="vllm" if name == "c-ocrdash-vllm" else ("worker" if name == "worker" else None),
                   container_id=(ids or {}).get(name, fake_id(name)) if in_container(name) else None)
        for i, (name, used) in enumerate(used_by.items())
    )
    used = sum(used_by.values())
    device = GpuDevice(index=0, uuid="GPU-x", name="NVIDIA GeForce RTX 3060", total_bytes=total,
                       used_bytes=used, free_bytes=total - used, processes=processes)
    return GpuSnapshot(taken_at=time.time(), devices=(device,))


def test_the_monitor_stores_each_sample_and_publishes_it(recorded_card, redis_client):
    monitor = Monitor(nvml=FakeNvml("rtx3060_shared"), containers=ContainerNames(client_factory=FakeDocker))

    body = monitor.sample_once()

    assert body["error"] is None
    device = body["devices"][0]
    assert device["name"] == "NVIDIA GeForce RTX 3060"
    assert round(device["free"] / GIB, 2) == 5.81
    assert livestate.latest_gpu_sample()["devices"][0]["free"] == device["free"]
    history = livestate.gpu_history()
    assert len(history) == 1 and history[0]["devices"][0]["used"] == device["used"]


def test_the_monitor_marks_the_worker_process_as_ocrdash_own(redis_client):
    nvml = FakeNvml("rtx3060_shared")
    worker_pid = NvmlReader(nvml).read().devices[0].processes[0].pid
    livestate.update_worker("gpu@host", pids=[worker_pid])

    body = Monitor(nvml=nvml, containers=ContainerNames(client_factory=FakeDocker)).sample_once()

    roles = {p["pid"]: p["role"] for p in body["devices"][0]["processes"]}
    assert roles[worker_pid] == "worker"
    assert list(roles.values()).count("worker") == 1


def test_without_a_gpu_the_sample_says_so_plainly(redis_client):
    from tests.doubles.fake_pynvml import NVML_ERROR_LIBRARY_NOT_FOUND

    nvml = FakeNvml("rtx3060_shared", init_error=NVML_ERROR_LIBRARY_NOT_FOUND)
    body = Monitor(nvml=nvml, containers=ContainerNames(client_factory=FakeDocker)).sample_once()

    assert body["devices"] == []
    assert body["error"] == "No NVIDIA GPU visible: jobs run on the CPU"


def test_the_history_keeps_ten_minutes_and_drops_older_samples(redis_client):
    now = time.time()
    for age in (900, 601, 300, 1):
        livestate.push_gpu_sample({"taken_at": now - age, "devices": [
            {"index": 0, "used": age, "total": 10, "utilization": 1}]})

    history = livestate.gpu_history()

    assert [p["devices"][0]["used"] for p in history] == [300, 1]


def test_status_prints_devices_processes_and_the_seed_numbers(recorded_card, capsys):
    call_command("gpu", "status")
    out = capsys.readouterr().out

    assert "NVIDIA GeForce RTX 3060" in out
    assert "5.81 GiB free of 12.00 GiB" in out
    assert "VLLM::EngineCore" in out


def test_status_as_json_has_the_event_shape(recorded_card, capsys):
    import json

    call_command("gpu", "status", "--json")
    body = json.loads(capsys.readouterr().out)

    assert body["devices"][0]["total"] == 12884901888
    assert {"pid", "name", "used_bytes", "container", "role"} <= set(body["devices"][0]["processes"][0])


@pytest.mark.django_db
def test_free_on_the_command_line_needs_an_admin(make_user):
    make_user("bob")
    with pytest.raises(CommandError, match="bob may not free GPU memory: only admins"):
        call_command("gpu", "free", "--user", "bob")
    with pytest.raises(CommandError, match="Say who you are"):
        call_command("gpu", "free")
    assert not GpuAction.objects.exists()


@pytest.mark.django_db
def test_free_unloads_the_worker_stops_our_vllm_only_and_logs_what_it_freed(make_user):
    admin = make_user("root", is_staff=True)
    livestate.update_worker("gpu@host", pids=[1], backend_status={"state": "ready", "backend": "transformers"})
    ours = FakeContainer("c-ocrdash-vllm", {"ocrdash.role": "vllm", "ocrdash.managed": "true"})
    theirs = FakeContainer("c-jupyter", {})
    docker = FakeDocker(ours, theirs)
    before = snapshot_with({"worker": 3 * GIB, "c-ocrdash-vllm": 4 * GIB, "c-jupyter": 2 * GIB})
    after = snapshot_with({"c-jupyter": 2 * GIB})
    snapshots = iter([before, after])
    sent = []

    def send(name, **kwargs):
        sent.append((name, kwargs["queue"]))
        # The worker answers as the real one does: its backend state becomes "unloaded".
        threading.Timer(0.2, livestate.update_worker, args=("gpu@host",),
                        kwargs={"backend_status": {"state": "unloaded"}}).start()

    action = gpumanager.free(admin, "cli", snapshot_fn=lambda: next(snapshots),
                             docker_factory=lambda: docker, send_task=send, wait_seconds=5)

    assert sent == [("workers.tasks.unload_backend", "ocrdash.worker.gpu@host")]
    assert ours.stopped and ours.removed
    assert not theirs.stopped
    assert action.freed_bytes == 7 * GIB and action.ok
    assert action.username == "root" and action.via == "cli"
    assert [s["ok"] for s in action.steps] == [True, True]


@pytest.mark.django_db
def test_free_without_a_docker_engine_still_unloads_and_says_so(make_user):
    admin = make_user("root", is_staff=True)

    def no_engine():
        import docker

        raise docker.errors.DockerException("Error while fetching server API version")

    snap = snapshot_with({"other": GIB})
    action = gpumanager.free(admin, "web", snapshot_fn=lambda: snap, docker_factory=no_engine,
                             send_task=lambda *a, **k: None, wait_seconds=0.1)

    assert "no Docker engine here" in action.steps[-1]["outcome"]
    assert action.freed_bytes == 0


@pytest.mark.django_db
def test_stopping_another_container_needs_a_superuser_and_its_exact_name(make_user):
    staff = make_user("staff", is_staff=True)
    boss = make_user("boss", is_staff=True, is_superuser=True)
    jupyter = FakeContainer("c-jupyter")
    docker = FakeDocker(jupyter, FakeContainer("c-idle"))
    before = snapshot_with({"c-jupyter": 5 * GIB})
    after = replace(before, devices=(replace(before.devices[0], used_bytes=0, processes=()),))

    with pytest.raises(gpumanager.NotAllowed, match="only superusers"):
        gpumanager.stop_container(staff, "c-jupyter", "web", snapshot_fn=lambda: before,
                                  docker_factory=lambda: docker)
    with pytest.raises(ValueError, match="'c-idle' holds no GPU memory now; containers that do: c-jupyter"):
        gpumanager.stop_container(boss, "c-idle", "web", snapshot_fn=lambda: before, docker_factory=lambda: docker)
    assert not jupyter.stopped

    snapshots = iter([before, after])
    action = gpumanager.stop_container(boss, "c-jupyter", "web", snapshot_fn=lambda: next(snapshots),
                                       docker_factory=lambda: docker)
    assert jupyter.stopped
    assert action.freed_bytes == 5 * GIB and action.target == "c-jupyter" and action.username == "boss"


@pytest.mark.django_db
def test_a_container_is_stopped_by_the_id_found_from_its_gpu_process_not_by_the_name_typed(make_user):
    # Someone names a container after the id of another one (64 hex): Docker takes a 64-hex name
    # as an id first, so stopping "by name" would stop the other container.
    boss = make_user("boss", is_staff=True, is_superuser=True)
    bystander = FakeContainer("c-database")
    impostor_name = bystander.id
    holder = FakeContainer(impostor_name, container_id=fake_id("the real holder"))
    docker = FakeDocker(bystander, holder)
    before = snapshot_with({impostor_name: 5 * GIB}, ids={impostor_name: holder.id})

    action = gpumanager.stop_container(boss, impostor_name, "web", snapshot_fn=lambda: before,
                                       docker_factory=lambda: docker)

    assert holder.stopped and not bystander.stopped
    assert action.ok and holder.id[:12] in action.steps[0]["what"]


@pytest.mark.django_db
def test_a_container_renamed_since_the_sample_is_not_stopped(make_user):
    boss = make_user("boss", is_staff=True, is_superuser=True)
    renamed = FakeContainer("c-someone-else", container_id=fake_id("c-jupyter"))
    docker = FakeDocker(renamed)

    action = gpumanager.stop_container(boss, "c-jupyter", "web", snapshot_fn=lambda: snapshot_with({"c-jupyter": GIB}),
                                       docker_factory=lambda: docker)

    assert not renamed.stopped and not action.ok
    assert "is now called 'c-someone-else'" in action.steps[0]["outcome"]


@pytest.mark.django_db
def test_stop_container_on_the_command_line_refuses_a_plain_admin(make_user):
    make_user("staff", is_staff=True)
    with pytest.raises(CommandError, match="only superusers may, by name"):
        call_command("gpu", "stop-container", "c-jupyter", "--user", "staff")


@pytest.mark.django_db
def test_the_free_page_is_for_admins_only(client, make_user):
    make_user("bob")
    client.login(username="bob", password="secret-pass-123")
    response = client.get("/admin/ocr_app/gpuaction/free/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert client.post("/admin/ocr_app/gpuaction/free/").status_code == 302
    assert not GpuAction.objects.exists()


@pytest.mark.django_db
def test_the_free_page_lists_what_will_happen_before_anything_is_done(client, make_user, recorded_card):
    make_user("root", is_staff=True, is_superuser=True)
    client.login(username="root", password="secret-pass-123")
    livestate.update_worker("gpu@host", pids=[1], backend_status={"state": "ready", "backend": "transformers"})

    page = client.get("/admin/ocr_app/gpuaction/free/").content.decode()

    assert "Ask worker gpu@host to unload its model (transformers, ready)" in page
    assert "not stop any other container, and never kill a process" in page
    assert "NVIDIA GeForce RTX 3060" in page
    assert not GpuAction.objects.exists()


@pytest.mark.django_db
def test_confirming_on_the_free_page_frees_and_logs_the_admin(client, make_user, monkeypatch, recorded_card):
    root = make_user("root", is_staff=True, is_superuser=True)
    client.login(username="root", password="secret-pass-123")
    calls = []

    def fake_free(user, via, **kwargs):
        calls.append((user, via))
        return GpuAction.objects.create(user=user, username=user.username, via=via, action="free",
                                        freed_bytes=3 * GIB, steps=[])

    monkeypatch.setattr(gpumanager, "free", fake_free)
    response = client.post("/admin/ocr_app/gpuaction/free/", follow=True)

    assert calls == [(root, "web")]
    assert "Freed 3.00 GiB of GPU memory." in response.content.decode()


@pytest.mark.django_db
def test_the_backend_settings_page_shows_the_plan_for_the_gpu_now(client, make_user, redis_client):
    make_user("root", is_staff=True, is_superuser=True)
    client.login(username="root", password="secret-pass-123")
    livestate.push_gpu_sample({"taken_at": time.time(), "error": None, "devices": [
        {"index": 0, "name": "NVIDIA GeForce RTX 3060", "total": 12820000000, "used": 6580000000,
         "free": 6238502912, "compute_capability": "8.6", "utilization": 0, "processes": []}]})

    page = client.get("/admin/ocr_app/backendsettings/", follow=True).content.decode()

    assert "Plan on the GPU now" in page
    assert "5.81 GiB free" in page
    assert "Measured by the GPU monitor just now." in page


@pytest.mark.django_db
def test_a_forced_backend_that_cannot_fit_shows_refused_with_the_reason(client, make_user, redis_client):
    from ocr_app.models import BackendSettings

    make_user("root", is_staff=True, is_superuser=True)
    client.login(username="root", password="secret-pass-123")
    cfg = BackendSettings.load()
    cfg.backend = "vllm"
    cfg.save()
    livestate.push_gpu_sample({"taken_at": time.time(), "error": None, "devices": [
        {"index": 0, "name": "small card", "total": 4 * GIB, "used": 3 * GIB, "free": GIB,
         "compute_capability": "8.6", "utilization": 0, "processes": []}]})

    page = client.get("/admin/ocr_app/backendsettings/1/change/").content.decode()

    assert "Refused:" in page
    assert "cannot start here" in page


@pytest.mark.django_db
def test_non_staff_cannot_change_the_backend(client, make_user):
    make_user("bob")
    client.login(username="bob", password="secret-pass-123")
    response = client.post("/admin/ocr_app/backendsettings/1/change/", {"backend": "cpu"})
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
