"""A stand-in for the Docker engine behind the Docker SDK (docker-py 7.x), for the vLLM backend.

It answers the SDK calls the backend makes, with the SDK's own types and errors:

- ``client.containers.run(image, command=…, detach=True, **kwargs)``: the keyword arguments go
  through the SDK's own ``docker.models.containers._create_container_args`` (an unknown keyword
  raises the SDK's TypeError; ports, volumes, device requests and shm size are turned into the
  engine's HostConfig there), are recorded in ``engine.run_calls`` and start a scripted container;
- ``client.containers.list(all=False, filters={"label": [...]})``, ``client.containers.get(id)``;
- ``container.logs(stream=True, follow=True, tail=…)`` (bytes chunks, blocking until the container
  writes more or stops; ``.close()`` ends it, as the SDK's CancellableStream) and ``container.logs(
  tail=N)`` (bytes); ``.status``, ``.reload()``, ``.stop(timeout=)``, ``.remove(force=)``, ``.attrs``,
  ``.labels``, ``.id``, ``.name``;
- ``client.images.get(name)`` (``ImageNotFound`` unless present) and ``client.api.pull(repo, tag=…,
  stream=True, decode=True)`` (progress dicts).

Scenarios for a started container (``FakeDockerEngine(scenario=…)``):

- ``healthy``: it logs vLLM's loading lines (the checkpoint shards progress bar among them, written
  with ``\\r`` as tqdm does and split mid-line as a socket delivers it), then starts an
  ``OpenAIServer`` double on the published host port with the served name and ``max_pixels`` of
  its command line, and logs "Starting vLLM API server";
- ``free_memory``: it logs the start, then vLLM's "Free memory on device cuda:0 (5.81/11.94 GiB) …
  is less than desired GPU memory utilization (0.85…)" error, and exits with code 1;
- ``silent``: it runs and never becomes healthy.

``docker_refused()`` raises what ``docker.from_env()`` raises when the socket is there but not
allowed (``DockerException``).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import docker.errors
from docker.models.containers import _create_container_args

from core.dots.resize import MAX_PIXELS
from tests.doubles.openai_server import OpenAIServer

API_VERSION = "1.44"

PREAMBLE = [
    "INFO 10-09 21:13:40 [__init__.py:216] Automatically detected platform cuda.",
    "(APIServer pid=1) INFO 10-09 21:13:43 [api_server.py:1839] vLLM API server version 0.11.0",
    "(APIServer pid=1) INFO 10-09 21:13:52 [model.py:547] Resolved architecture: DotsOCRForCausalLM",
    "(EngineCore_DP0 pid=253) INFO 10-09 21:14:01 [gpu_model_runner.py:2602] Starting to load model "
    "rednote-hilab/dots.ocr...",
]
SHARDS = [
    "Loading safetensors checkpoint shards:   0% Completed | 0/2 [00:00<?, ?it/s]",
    "Loading safetensors checkpoint shards:  50% Completed | 1/2 [00:01<00:01,  1.20s/it]",
    "Loading safetensors checkpoint shards: 100% Completed | 2/2 [00:02<00:00,  1.10s/it]",
]
READY = [
    "(EngineCore_DP0 pid=253) INFO 10-09 21:14:09 [default_loader.py:267] Loading weights took 2.31 seconds",
    "(EngineCore_DP0 pid=253) INFO 10-09 21:14:10 [gpu_model_runner.py:2653] Model loading took 5.7 GiB",
    "(EngineCore_DP0 pid=253) INFO 10-09 21:14:21 [kv_cache_utils.py:1087] GPU KV cache size: 27,264 tokens",
    "(APIServer pid=1) INFO 10-09 21:14:40 [api_server.py:1971] Starting vLLM API server 0 on "
    "http://0.0.0.0:8000",
    "(APIServer pid=1) INFO:     Application startup complete.",
]
FREE_MEMORY_ERROR = [
    "(EngineCore_DP0 pid=253) ERROR 10-09 21:14:02 [core.py:708] EngineCore failed to start.",
    "(EngineCore_DP0 pid=253) ERROR 10-09 21:14:02 [core.py:708] Traceback (most recent call last):",
    '(EngineCore_DP0 pid=253) ERROR 10-09 21:14:02 [core.py:708]   File "/usr/local/lib/python3.12/'
    'dist-packages/vllm/v1/worker/gpu_worker.py", line 189, in init_device',
    "(EngineCore_DP0 pid=253) ERROR 10-09 21:14:02 [core.py:708] ValueError: Free memory on device cuda:0 "
    "(5.81/11.94 GiB) on startup is less than desired GPU memory utilization (0.85, 10.15 GiB). Decrease "
    "GPU memory utilization or reduce GPU memory used by other processes.",
    "(APIServer pid=1) RuntimeError: Engine core initialization failed. See root cause above. Failed core "
    "proc(s): {}",
]


def docker_refused() -> Any:
    """What ``docker.from_env()`` raises for a socket this user may not open."""
    raise docker.errors.DockerException(
        "Error while fetching server API version: ('Connection aborted.', PermissionError(13, "
        "'Permission denied'))"
    )


def _option(command: list[str], flag: str) -> str | None:
    for i, arg in enumerate(command):
        if arg == flag and i + 1 < len(command):
            return command[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


class _LogStream:
    """Like the SDK's CancellableStream over ``GET /containers/{id}/logs?follow=1``."""

    def __init__(self, container: FakeContainer, start: int, follow: bool):
        self._container = container
        self._index = start
        self._follow = follow
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        c = self._container
        with c._cond:
            while True:
                if self._closed:
                    raise StopIteration
                if self._index < len(c._chunks):
                    self._index += 1
                    return c._chunks[self._index - 1]
                if not self._follow or c.status != "running":
                    raise StopIteration
                c._cond.wait(0.1)

    def close(self) -> None:
        with self._container._cond:
            self._closed = True
            self._container._cond.notify_all()


class FakeContainer:
    def __init__(
        self,
        engine: FakeDockerEngine,
        *,
        name: str,
        image: str,
        labels: dict[str, str],
        status: str = "running",
        create_args: dict[str, Any] | None = None,
    ):
        self.engine = engine
        self.id = uuid.uuid4().hex + uuid.uuid4().hex
        self.name = name
        self.image_name = image
        self.labels = dict(labels)
        self._status = status
        self.exit_code = 0
        self.create_args = create_args or {}
        self.removed = False
        self.stop_calls: list[Any] = []
        self.server: OpenAIServer | None = None
        self._chunks: list[bytes] = []
        self._lines: list[str] = []
        self._cond = threading.Condition()
        self.attrs: dict[str, Any] = {}
        self.reload()

    @property
    def short_id(self) -> str:
        return self.id[:12]

    @property
    def status(self) -> str:
        # The SDK reads it from attrs, refreshed by reload(); the double is always fresh.
        return self._status

    # -- what the scenario does ----------------------------------------------------------------

    def write(self, line: str, *, end: str = "\n", split: bool = True) -> None:
        data = (line + end).encode()
        with self._cond:
            self._lines.append(line)
            if split and len(data) > 8:  # a socket does not deliver whole lines
                cut = len(data) // 2
                self._chunks += [data[:cut], data[cut:]]
            else:
                self._chunks.append(data)
            self._cond.notify_all()

    def exit(self, code: int) -> None:
        with self._cond:
            self._status = "exited"
            self.exit_code = code
            self._cond.notify_all()
        if self.server is not None:
            self.server.stop()

    # -- the SDK's Container -------------------------------------------------------------------

    def reload(self) -> None:
        if self.removed:
            raise docker.errors.NotFound(f"No such container: {self.id}")
        host_config = self.create_args.get("host_config") or {}
        self.attrs = {
            "Id": self.id,
            "Name": "/" + self.name,
            "State": {
                "Status": self._status,
                "Running": self._status == "running",
                "ExitCode": self.exit_code,
                "OOMKilled": False,
            },
            "Config": {
                "Image": self.image_name,
                "Cmd": self.create_args.get("command"),
                "Entrypoint": self.create_args.get("entrypoint"),
                "Labels": dict(self.labels),
                "Env": self.create_args.get("environment"),
            },
            "HostConfig": dict(host_config),
            "NetworkSettings": {
                "Ports": {
                    port: [{"HostIp": b.get("HostIp", ""), "HostPort": b.get("HostPort", "")} for b in binds]
                    for port, binds in (host_config.get("PortBindings") or {}).items()
                }
            },
        }

    def logs(
        self,
        stdout: bool = True,
        stderr: bool = True,
        stream: bool = False,
        timestamps: bool = False,
        tail: str | int = "all",
        since: Any = None,
        follow: bool | None = None,
        until: Any = None,
    ) -> Any:
        if self.removed:
            raise docker.errors.NotFound(f"No such container: {self.id}")
        with self._cond:
            if stream:
                start = 0
                if tail != "all":
                    # by chunks here; precise enough for a tail of whole lines
                    start = max(0, len(self._chunks) - 2 * int(tail))
                return _LogStream(self, start, bool(follow))
            lines = self._lines if tail == "all" else self._lines[-int(tail) :] if int(tail) else []
            return "".join(line + "\n" for line in lines).encode()

    def stop(self, timeout: int | None = None) -> None:
        if self.removed:
            raise docker.errors.NotFound(f"No such container: {self.id}")
        self.stop_calls.append(timeout)
        self.engine.stopped.append(self.name)
        if self._status == "running":
            self.exit(0)

    def kill(self, signal: Any = None) -> None:
        self.stop()

    def remove(self, v: bool = False, link: bool = False, force: bool = False) -> None:
        if self.removed:
            raise docker.errors.NotFound(f"No such container: {self.id}")
        if self._status == "running" and not force:
            raise docker.errors.APIError(
                f"409 Client Error: Conflict (You cannot remove a running container {self.id}. Stop the "
                "container before attempting removal or force remove)"
            )
        if self._status == "running":
            self.exit(137)
        self.removed = True
        self.engine.removed.append(self.name)
        self.engine._containers.pop(self.id, None)


class _Containers:
    def __init__(self, engine: FakeDockerEngine):
        self.engine = engine

    def run(
        self,
        image: str,
        command: Any = None,
        stdout: bool = True,
        stderr: bool = False,
        remove: bool = False,
        **kwargs: Any,
    ) -> FakeContainer:
        engine = self.engine
        if not kwargs.get("detach"):
            raise AssertionError("the double only runs detached containers, as the backend does")
        # The SDK's own conversion: unknown keywords raise TypeError, bad ports/volumes raise here.
        create_args = _create_container_args(dict(kwargs, image=image, command=command, version=API_VERSION))
        engine.run_calls.append({"image": image, "command": command, **kwargs})
        if image not in engine.images_present:
            raise docker.errors.ImageNotFound(f"No such image: {image}")
        name = kwargs.get("name") or f"fake_{len(engine.run_calls)}"
        if any(c.name == name for c in engine._containers.values()):
            raise docker.errors.APIError(
                f'409 Client Error: Conflict ("The container name "/{name}" is already in use")'
            )
        if engine.run_error is not None:
            raise engine.run_error
        container = FakeContainer(
            engine, name=name, image=image, labels=kwargs.get("labels") or {}, create_args=create_args
        )
        engine._containers[container.id] = container
        threading.Thread(target=engine._script, args=(container, list(command or [])), daemon=True).start()
        return container

    def list(
        self,
        all: bool = False,
        before: Any = None,
        filters: dict[str, Any] | None = None,  # noqa: A002
        limit: int = -1,
        since: Any = None,
        sparse: bool = False,
        ignore_removed: bool = False,
    ) -> list[FakeContainer]:
        wanted = (filters or {}).get("label") or []
        if isinstance(wanted, str):
            wanted = [wanted]
        out = []
        for c in list(self.engine._containers.values()):
            if not all and c.status != "running":
                continue
            ok = True
            for item in wanted:
                key, eq, value = item.partition("=")
                if key not in c.labels or (eq and c.labels[key] != value):
                    ok = False
            if ok:
                out.append(c)
        return out

    def get(self, container_id: str) -> FakeContainer:
        for c in self.engine._containers.values():
            if container_id in (c.id, c.name) or c.id.startswith(container_id):
                return c
        raise docker.errors.NotFound(f"No such container: {container_id}")


class _Images:
    def __init__(self, engine: FakeDockerEngine):
        self.engine = engine

    def get(self, name: str) -> dict[str, Any]:
        if name not in self.engine.images_present:
            raise docker.errors.ImageNotFound(f"No such image: {name}")
        return {"Id": "sha256:" + uuid.uuid5(uuid.NAMESPACE_URL, name).hex, "RepoTags": [name]}


class _API:
    def __init__(self, engine: FakeDockerEngine):
        self.engine = engine
        self._version = API_VERSION

    def pull(
        self,
        repository: str,
        tag: str | None = None,
        stream: bool = False,
        auth_config: Any = None,
        decode: bool = False,
        platform: Any = None,
        all_tags: bool = False,
    ) -> Any:
        image = f"{repository}:{tag or 'latest'}"
        self.engine.pulls.append(image)

        def events() -> Iterator[dict[str, Any]]:
            yield {"status": f"Pulling from {repository}", "id": tag}
            for step in range(1, 4):
                for layer in ("a1b2", "c3d4"):
                    yield {
                        "status": "Downloading",
                        "id": layer,
                        "progressDetail": {"current": step * 1_000_000, "total": 3_000_000},
                    }
            yield {"status": f"Status: Downloaded newer image for {image}"}
            self.engine.images_present.add(image)

        if stream:
            gen = events()
            return gen if decode else (json.dumps(e).encode() for e in gen)
        for _ in events():
            pass
        return ""


class FakeDockerClient:
    def __init__(self, engine: FakeDockerEngine):
        self.engine = engine
        self.containers = _Containers(engine)
        self.images = _Images(engine)
        self.api = _API(engine)
        self.closed = False

    def close(self) -> None:
        self.closed = True


class FakeDockerEngine:
    """One engine; ``client()`` is what ``docker.from_env()`` would return."""

    def __init__(self, scenario: str = "healthy", *, line_delay: float = 0.01, images: tuple[str, ...] = ()):
        from workers.backends.vllm.launcher import VLLM_IMAGE

        self.scenario = scenario
        self.line_delay = line_delay
        self.images_present: set[str] = set(images) if images else {VLLM_IMAGE}
        self.run_calls: list[dict[str, Any]] = []
        self.stopped: list[str] = []
        self.removed: list[str] = []
        self.pulls: list[str] = []
        self.servers: list[OpenAIServer] = []
        #: Raised by the next containers.run() (e.g. an APIError about the GPU driver).
        self.run_error: Exception | None = None
        self._containers: dict[str, FakeContainer] = {}

    def client(self) -> FakeDockerClient:
        return FakeDockerClient(self)

    def add_container(
        self,
        name: str,
        labels: dict[str, str] | None = None,
        status: str = "running",
        image: str = "postgres:16",
    ) -> FakeContainer:
        """A container that was there before (someone else's, or an ocrdash leftover)."""
        c = FakeContainer(self, name=name, image=image, labels=labels or {}, status=status)
        self._containers[c.id] = c
        return c

    @property
    def containers(self) -> list[FakeContainer]:
        return list(self._containers.values())

    def close(self) -> None:
        for server in self.servers:
            server.stop()

    # -- the scripted container ----------------------------------------------------------------

    def _script(self, container: FakeContainer, command: list[str]) -> None:
        def say(line: str, end: str = "\n") -> bool:
            if container.status != "running":
                return False
            container.write(line, end=end)
            time.sleep(self.line_delay)
            return True

        for line in PREAMBLE:
            if not say(line):
                return
        if self.scenario == "free_memory":
            for line in FREE_MEMORY_ERROR:
                say(line)
            container.exit(1)
            return
        if self.scenario == "silent":
            return
        for line in SHARDS[:-1]:
            if not say(line, end="\r"):  # tqdm redraws its bar with carriage returns
                return
        say(SHARDS[-1])
        for line in READY[:-2]:
            if not say(line):
                return
        served = _option(command, "--served-model-name") or "dots.ocr"
        mm = json.loads(_option(command, "--mm-processor-kwargs") or "{}")
        max_len = _option(command, "--max-model-len")
        port = int(container.create_args["host_config"]["PortBindings"]["8000/tcp"][0]["HostPort"])
        server = OpenAIServer(
            served,
            int(mm.get("max_pixels") or MAX_PIXELS),
            port=port,
            max_model_len=int(max_len) if max_len else None,
        )
        if container.status != "running":
            return
        server.start()
        container.server = server
        self.servers.append(server)
        for line in READY[-2:]:
            say(line)
