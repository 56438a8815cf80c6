"""Which Docker container a GPU process runs in, and which processes are ocrdash's own.

Pure apart from the Docker SDK (`docker`). NVML gives host pids; `container_of_pid` reads
`<proc_root>/<pid>/cgroup` and finds the 64-hex container id in it:

    cgroup v1               12:memory:/docker/<id>
    cgroup v2 (systemd)     0::/system.slice/docker-<id>.scope
    containerd / k8s        0::/kubepods.slice/.../cri-containerd-<id>.scope

A sampler that runs in a container itself needs the host's pid namespace (`pid: host`) or the
host's /proc mounted somewhere (pass that as `proc_root`).

`ContainerNames` turns ids into names through the Docker engine. `find_managed_container` and
`stop_managed_containers` find and stop the containers ocrdash started itself (its vLLM server):
the worker when it starts one, the GPU memory manager when an admin frees the GPU. Without an engine (no socket,
daemon stopped, no permission) it answers with nothing and keeps the reason in `.reason`; it
asks the engine again at most once a minute. `label_processes` puts container names and
ocrdash roles on a snapshot's processes.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from core.gpu import GpuSnapshot

log = logging.getLogger(__name__)

# The label ocrdash puts on the containers it starts; its value is the role.
ROLE_LABEL = "ocrdash.role"
# Its values, kept on running containers: the worker, and the vLLM server ocrdash starts.
ROLE_WORKER = "worker"
ROLE_VLLM = "vllm"
ROLES = frozenset({ROLE_WORKER, ROLE_VLLM})
# How the dashboard names them.
ROLE_LABELS = {ROLE_WORKER: "ocrdash worker", ROLE_VLLM: "ocrdash vLLM"}
# On the containers ocrdash starts itself (its managed vLLM server): only those are ever stopped
# or removed by ocrdash; CONFIG_LABEL holds the hash of the launch, so a worker that restarted
# can adopt one that still runs the same configuration.
MANAGED_LABEL = "ocrdash.managed"
CONFIG_LABEL = "ocrdash.config"
DEFAULT_STOP_TIMEOUT = 30

# A 64-hex id as a whole path part, or inside a systemd scope name (docker-<id>.scope,
# cri-containerd-<id>.scope, libpod-<id>.scope, crio-<id>.scope).
_ID_IN_PATH = re.compile(r"(?:^|/)(?:[a-z][a-z-]*-)?([0-9a-f]{64})(?:\.scope)?(?=/|$)")


def container_id_in_cgroup(text: str) -> str | None:
    """The container id named by the text of a /proc/<pid>/cgroup file, else None."""
    for line in text.splitlines():
        # hierarchy-ID:controller-list:cgroup-path (the path may itself hold colons)
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        match = _ID_IN_PATH.search(parts[2].strip())
        if match:
            return match.group(1)
    return None


def container_of_pid(pid: int, proc_root: str | Path = "/proc") -> str | None:
    """The 64-hex id of the container `pid` runs in; None for a host process or a pid that is gone."""
    try:
        text = (Path(proc_root) / str(pid) / "cgroup").read_text()
    except OSError:  # gone, another pid namespace, or not allowed
        return None
    return container_id_in_cgroup(text)


@dataclass(frozen=True)
class Container:
    id: str
    name: str
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def role(self) -> str | None:
        role = self.labels.get(ROLE_LABEL)
        return role if role in ROLES else None


def _docker_client() -> Any:
    import docker

    # Short timeout: a hung daemon must not stall the sampler for the SDK's default minute.
    return docker.from_env(timeout=5)


class ContainerNames:
    """Container names (and labels) by id, from the Docker engine, cached.

    `client_factory` makes a Docker SDK client (`docker.from_env` by default). Running
    containers are listed again only when an id is asked for that is not known yet, and an id
    the engine does not know (e.g. a Kubernetes container) is asked about again after
    `retry_seconds`, as is an engine that could not be reached.
    """

    def __init__(
        self,
        client_factory: Callable[[], Any] | None = None,
        *,
        retry_seconds: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._factory = client_factory or _docker_client
        self._retry = retry_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._client: Any = None
        self._failed_at: float | None = None
        self._known: dict[str, Container] = {}
        self._unknown: dict[str, float] = {}  # id -> when the engine last did not know it
        self.reason: str | None = None

    def containers_for(self, ids: Iterable[str | None]) -> dict[str, Container]:
        wanted = {i for i in ids if i}
        if not wanted:
            return {}
        with self._lock:
            now = self._clock()
            ask = [
                i
                for i in wanted
                if i not in self._known and now - self._unknown.get(i, -self._retry) >= self._retry
            ]
            if ask:
                self._refresh(ask, now)
            return {i: self._known[i] for i in wanted if i in self._known}

    def names_for(self, ids: Iterable[str | None]) -> dict[str, str]:
        """{container id: container name} for the ids the engine knows; {} without an engine."""
        return {i: c.name for i, c in self.containers_for(ids).items()}

    def close(self) -> None:
        with self._lock:
            self._drop_client()

    # -- engine -----------------------------------------------------------------------------

    def _drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception as exc:
                log.debug("closing the Docker client: %s", exc)

    def _fail(self, exc: BaseException, now: float) -> None:
        reason = (
            f"Docker engine not reachable: {exc}" if str(exc) else f"Docker engine not reachable: {exc!r}"
        )
        if reason != self.reason:
            log.info("%s (container names stay empty; asking again in %.0f s)", reason, self._retry)
        self.reason = reason
        self._failed_at = now
        self._drop_client()

    def _refresh(self, ask: list[str], now: float) -> None:
        if self._client is None:
            if self._failed_at is not None and now - self._failed_at < self._retry:
                return
            try:
                self._client = self._factory()
            except Exception as exc:  # DockerException (no socket, no permission), ImportError, ...
                self._fail(exc, now)
                return
        try:
            running = self._client.containers.list(all=False, ignore_removed=True)
            known = {c.id: Container(c.id, c.name, dict(c.labels or {})) for c in running}
        except Exception as exc:  # the engine went away, or answered with an error
            self._fail(exc, now)
            return
        self._known = known
        self._failed_at = None
        self.reason = None
        for i in ask:
            if i not in known:
                self._unknown[i] = now
        for i in [i for i in self._unknown if i in known or now - self._unknown[i] > 10 * self._retry]:
            del self._unknown[i]


def label_processes(
    snapshot: GpuSnapshot,
    names: ContainerNames | None,
    own_labels: Mapping[int, str] | None = None,
    *,
    proc_root: str | Path = "/proc",
) -> GpuSnapshot:
    """A copy of `snapshot` whose processes carry their container name and ocrdash role.

    `own_labels` maps this machine's own pids to their role, e.g. {worker_pid: "worker"}
    (it wins over labels). A container labelled `ocrdash.role=vllm` (or `worker`) gives its
    processes that role. With `names` None, or no engine, `container` stays None.
    """
    own = dict(own_labels or {})
    pids = {p.pid for d in snapshot.devices for p in d.processes}
    if not pids:
        return snapshot
    ids = {pid: container_of_pid(pid, proc_root) for pid in pids}
    containers = names.containers_for(ids.values()) if names is not None else {}
    devices = []
    for device in snapshot.devices:
        processes = []
        for process in device.processes:
            container = containers.get(ids[process.pid] or "")
            role = own.get(process.pid) or (container.role if container else None) or process.role
            processes.append(
                replace(
                    process,
                    container=container.name if container else process.container,
                    container_id=container.id if container else process.container_id,
                    role=role,
                )
            )
        devices.append(replace(device, processes=tuple(processes)))
    return replace(snapshot, devices=tuple(devices))


# -- ocrdash's own containers -------------------------------------------------------------------


def _labels_filter(config_hash: str | None = None) -> list[str]:
    labels = [f"{ROLE_LABEL}={ROLE_VLLM}", f"{MANAGED_LABEL}=true"]
    if config_hash:
        labels.append(f"{CONFIG_LABEL}={config_hash}")
    return labels


def is_managed(container: Any) -> bool:
    labels = getattr(container, "labels", None) or {}
    return labels.get(ROLE_LABEL) == ROLE_VLLM and labels.get(MANAGED_LABEL) == "true"


def find_managed_container(client: Any, config_hash: str | None = None) -> Any | None:
    """A running vLLM container that ocrdash started (with this launch, when `config_hash` is given)."""
    for container in client.containers.list(filters={"label": _labels_filter(config_hash)}):
        if is_managed(container) and getattr(container, "status", "running") == "running":
            return container
    return None


def stop_managed_containers(client: Any, keep: Any = None, timeout: int = DEFAULT_STOP_TIMEOUT) -> list[str]:
    """Stop and remove every vLLM container ocrdash started (running or not), except `keep`.
    Containers without both of ocrdash's labels are never touched. Returns the names removed."""
    import docker.errors

    keep_id = getattr(keep, "id", None)
    removed = []
    for container in client.containers.list(all=True, filters={"label": _labels_filter()}):
        if not is_managed(container) or container.id == keep_id:
            continue
        try:
            if container.status in ("running", "restarting", "paused"):
                container.stop(timeout=timeout)
            container.remove(force=True)
            removed.append(container.name)
        except docker.errors.NotFound:
            continue
        except docker.errors.APIError as exc:
            log.warning("could not remove the leftover vLLM container %s: %s", container.name, exc)
    return removed
