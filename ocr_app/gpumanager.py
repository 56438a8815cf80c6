"""The GPU memory manager: the safe version of the old "full cleanup".

`free` gives back what ocrdash itself holds: it asks each worker to unload its model and
empty the allocator cache, and stops ocrdash's own vLLM container. Another container is
stopped only when a superuser names it, and only if it holds GPU memory. Processes outside
containers are never touched. Every action is written to the GpuAction log with who did it
and how much memory it freed, measured before and after.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from core.containers import ROLE_VLLM, ROLE_WORKER, ContainerNames, label_processes, stop_managed_containers
from core.gpu import GpuSnapshot, read_snapshot
from core.queues import UNLOAD_BACKEND_TASK, worker_queue
from ocr_app import livestate
from ocr_app.models import GpuAction

log = logging.getLogger(__name__)

UNLOAD_WAIT_SECONDS = 60.0
SETTLE_SECONDS = 1.0


class NotAllowed(PermissionError):
    pass


@dataclass
class Step:
    what: str
    expected_bytes: int | None = None
    outcome: str = ""
    ok: bool | None = None


def _docker():
    import docker

    return docker.from_env(timeout=10)


def labelled_snapshot(nvml=None, names: ContainerNames | None = None) -> GpuSnapshot:
    snapshot = read_snapshot(nvml)
    if not snapshot.devices:
        return snapshot
    try:
        own = livestate.own_pids()
    except Exception:
        own = {}
    return label_processes(snapshot, names if names is not None else ContainerNames(), own)


def used_bytes(snapshot: GpuSnapshot) -> int:
    return sum(d.used_bytes for d in snapshot.devices)


def memory_of(snapshot: GpuSnapshot, role: str | None = None, container: str | None = None) -> int:
    total = 0
    for device in snapshot.devices:
        for process in device.processes:
            if (role and process.role == role) or (container and process.container == container):
                total += process.used_bytes or 0
    return total


def check_staff(user, what: str) -> None:
    if user is None or not user.is_active or not user.is_staff:
        name = getattr(user, "username", None) or "nobody"
        raise NotAllowed(f"{name} may not {what}: only admins (staff) may.")


def free_plan(snapshot: GpuSnapshot, workers: dict[str, dict]) -> list[Step]:
    """What `free` will do, with the memory each step should give back; shown before confirming."""
    steps = []
    worker_memory = memory_of(snapshot, role=ROLE_WORKER)
    for name, record in sorted(workers.items()):
        status = record.get("backend_status") or {}
        held = status.get("backend") or "no model"
        steps.append(
            Step(
                f"Ask worker {name} to unload its model ({held}, {status.get('state', 'unknown')}) "
                "and empty its allocator cache",
                worker_memory if len(workers) == 1 else None,
            )
        )
    vllm = sorted({p.container for d in snapshot.devices for p in d.processes if p.role == ROLE_VLLM and p.container})
    for container in vllm:
        steps.append(Step(f"Stop ocrdash's vLLM container {container}", memory_of(snapshot, container=container)))
    if not vllm:
        steps.append(Step("Stop ocrdash's vLLM container, if one runs", None))
    return steps


def free(
    user,
    via: str,
    *,
    snapshot_fn: Callable[[], GpuSnapshot] = labelled_snapshot,
    docker_factory: Callable[[], Any] = _docker,
    send_task: Callable[..., Any] | None = None,
    wait_seconds: float = UNLOAD_WAIT_SECONDS,
) -> GpuAction:
    check_staff(user, "free GPU memory")
    before = snapshot_fn()
    workers = livestate.live_workers()
    steps = free_plan(before, workers)
    asked_at = time.time()
    send = send_task or _send_task
    for step, name in zip(steps, sorted(workers), strict=False):
        try:
            send(UNLOAD_BACKEND_TASK, kwargs={"reason": f"freed by {user.username}"},
                 queue=worker_queue(name))
            step.outcome, step.ok = _wait_unloaded(name, asked_at, wait_seconds)
        except Exception as exc:
            step.outcome, step.ok = f"could not reach the worker: {exc}", False
    container_steps = steps[len(workers):]
    container_steps[0].outcome, container_steps[0].ok = _stop_managed(docker_factory)
    for extra in container_steps[1:]:
        extra.outcome, extra.ok = "stopped with the first", container_steps[0].ok
    time.sleep(SETTLE_SECONDS)  # the driver frees memory a moment after a process lets go
    after = snapshot_fn()
    freed = max(0, used_bytes(before) - used_bytes(after)) if before.devices and after.devices else None
    return GpuAction.objects.create(
        user=user,
        username=user.username,
        via=via,
        action=GpuAction.FREE,
        ok=all(s.ok is not False for s in steps),
        freed_bytes=freed,
        steps=[asdict(s) for s in steps],
    )


def stop_container(
    user,
    name: str,
    via: str,
    *,
    snapshot_fn: Callable[[], GpuSnapshot] = labelled_snapshot,
    docker_factory: Callable[[], Any] = _docker,
) -> GpuAction:
    if user is None or not user.is_active or not user.is_superuser:
        raise NotAllowed(
            f"{getattr(user, 'username', None) or 'nobody'} may not stop other containers: "
            "only superusers may, by name."
        )
    if not name:
        raise ValueError("Name the container to stop.")
    before = snapshot_fn()
    holding = memory_of(before, container=name)
    holders = {p.container for d in before.devices for p in d.processes if p.container}
    if name not in holders:
        raise ValueError(
            f"Container {name!r} holds no GPU memory now"
            + (f"; containers that do: {', '.join(sorted(holders))}." if holders else ".")
            + " Only containers holding GPU memory can be stopped here."
        )
    container_id = container_id_of(before, name)
    step = Step(f"Stop container {name} ({container_id[:12]})", holding)
    try:
        # By the id found from the GPU process, never by the name typed: Docker takes a name
        # that looks like an id (64 hex) as an id first, and a name may have been reused since.
        container = docker_factory().containers.get(container_id)
        if container.name.lstrip("/") != name:
            raise RuntimeError(f"container {container_id[:12]} is now called {container.name!r}, not {name!r}")
        container.stop(timeout=30)
        step.outcome, step.ok = "stopped", True
    except Exception as exc:
        step.outcome, step.ok = f"could not stop it: {exc}", False
    time.sleep(SETTLE_SECONDS)
    after = snapshot_fn()
    return GpuAction.objects.create(
        user=user,
        username=user.username,
        via=via,
        action=GpuAction.STOP_CONTAINER,
        target=name,
        ok=bool(step.ok),
        freed_bytes=max(0, used_bytes(before) - used_bytes(after)) if after.devices else None,
        steps=[asdict(step)],
    )


def container_id_of(snapshot: GpuSnapshot, name: str) -> str:
    """The id of the one container called `name` among those holding GPU memory (ValueError if the
    processes do not name exactly one)."""
    ids = {p.container_id for d in snapshot.devices for p in d.processes if p.container == name and p.container_id}
    if len(ids) != 1:
        raise ValueError(
            f"Container {name!r} cannot be told apart from its processes ({len(ids)} container ids); "
            "nothing was stopped."
        )
    return ids.pop()


def _send_task(name: str, **kwargs) -> None:
    from dashboard.celery import app

    app.send_task(name, **kwargs)


def _wait_unloaded(worker: str, asked_at: float, seconds: float) -> tuple[str, bool]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        record = livestate.workers().get(worker, {})
        status = record.get("backend_status") or {}
        if status.get("state") == "unloaded" and record.get("seen_at", 0) >= asked_at:
            return "unloaded", True
        time.sleep(0.2)
    return (
        f"no answer within {seconds:.0f} s (a running job finishes first); it unloads when it gets to it",
        False,
    )


def _stop_managed(docker_factory: Callable[[], Any]) -> tuple[str, bool | None]:
    try:
        removed = stop_managed_containers(docker_factory())
    except Exception as exc:
        return f"no Docker engine here ({exc}); nothing to stop", None
    return ("stopped " + ", ".join(removed), True) if removed else ("none runs", None)


