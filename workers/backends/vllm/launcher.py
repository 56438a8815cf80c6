"""The vLLM server ocrdash runs itself: the ``vllm/vllm-openai`` container, started through the
Docker SDK with the plan's flags, watched while it loads (progress and the log tail for the
dashboard, known start failures explained in words), adopted again by a worker that restarted, and
stopped and removed when the backend unloads.

Every container it starts carries the labels ``ocrdash.role=vllm`` and ``ocrdash.managed=true``
(core/containers.py); nothing without them is ever stopped. ``ocrdash.config=<sha256 of the
launch>`` lets a worker that restarted adopt a container that is still running with the same
launch instead of loading the model again, so `Launch.config_hash` of a given plan never changes.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import logging
import os
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from core import catalog
from core.containers import (
    CONFIG_LABEL,
    DEFAULT_STOP_TIMEOUT,
    MANAGED_LABEL,
    ROLE_LABEL,
    ROLE_VLLM,
    find_managed_container,
    is_managed,
    stop_managed_containers,
)
from core.dots.resize import MIN_PIXELS
from core.results import BackendError, ProgressCallback
from workers.backends.vllm.client import SERVED_MODEL_NAME, VllmClient, snippet

log = logging.getLogger(__name__)

# The release dots.ocr's README names ("Since vLLM version 0.11.0, Dots OCR has been officially
# integrated into vLLM … e.g. vllm/vllm-openai:v0.11.0"): the model class is in vLLM itself, so no
# entrypoint patching; its V1 engine checks free memory at start as the planner assumes; and it
# ships a transformers 4.x, which dots.ocr's remote processor code needs (5.x breaks it).
VLLM_IMAGE = "vllm/vllm-openai:v0.11.0"
DEFAULT_MODEL = "rednote-hilab/dots.ocr"
CONTAINER_PORT = 8000
CONTAINER_HF_CACHE = "/root/.cache/huggingface"
CONTAINER_MODEL_DIR = "/model"

PORT_LABEL = "ocrdash.port"

DEFAULT_START_TIMEOUT = 1800.0
DEFAULT_POLL_SECONDS = 1.0
LOG_TAIL_LINES = 20

_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_SHARDS_RE = re.compile(r"Loading safetensors checkpoint shards:\s*(\d+)%\s*Completed\s*\|\s*(\d+)/(\d+)")
# "(EngineCore_DP0 pid=253) INFO 10-09 21:14:07 [core.py:1100] " and the like.
_LOG_PREFIX_RE = re.compile(
    r"^(?:\([\w\s-]+pid=\d+\)\s*)?(?:(?:DEBUG|INFO|WARNING|ERROR|CRITICAL)\s+\d\d-\d\d\s+[\d:.]+\s+(?:\[[^\]]*\]\s*)?)?"
)
_ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _docker_client() -> Any:
    import docker

    return docker.from_env(timeout=30)


# -- startup errors ------------------------------------------------------------------------------

# (pattern in the log, what it means for the person looking at the dashboard)
_STARTUP_ERRORS: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(r"Free memory on device.*less than desired GPU memory utilization", re.S),
        "Another program took GPU memory after the plan was made: vLLM found less free memory than the "
        "planned share of the card. Free some GPU memory (see the GPU page) and start again; the planner "
        "then picks a configuration for what is free now.",
    ),
    (
        re.compile(
            r"larger than the maximum number of tokens that can be stored in KV cache"
            r"|To serve at least one request with the models's max seq len"
            r"|No available memory for the cache blocks",
            re.I,
        ),
        "The memory left for vLLM's KV cache cannot hold one page and its answer (max_model_len). "
        "Lower the largest image size or the answer budget, or free GPU memory.",
    ),
    (
        re.compile(r"CUDA out of memory|OutOfMemoryError|CUDA error: out of memory", re.I),
        "The GPU ran out of memory while vLLM loaded the model or measured its needs (another program "
        "may have grown meanwhile). A smaller image size or another backend fits in less memory.",
    ),
    (
        re.compile(r"Bfloat16 is only supported on GPUs with compute capability", re.I),
        "This GPU cannot run bfloat16; the plan must use --dtype half (float16).",
    ),
    (
        re.compile(
            r"No CUDA GPUs are available|Failed to infer device type"
            r"|CUDA driver version is insufficient|Found no NVIDIA driver",
            re.I,
        ),
        "The container does not see a usable NVIDIA GPU: check the driver and the NVIDIA Container Toolkit "
        "on the host.",
    ),
    (
        re.compile(r"RevisionNotFoundError|Invalid rev id|revision .* not found", re.I),
        "The pinned model revision does not exist on the Hugging Face hub; check the revision setting.",
    ),
    (
        re.compile(r"RepositoryNotFoundError|Repository Not Found|GatedRepoError|401 Client Error", re.I),
        "The model repository cannot be read from the Hugging Face hub (wrong name, or it needs a token).",
    ),
    (
        re.compile(
            r"LocalEntryNotFoundError|We couldn't connect to 'https://huggingface.co'"
            r"|offline mode is enabled|Cannot find an appropriate cached snapshot",
            re.I,
        ),
        "The model files are not in the cache and could not be downloaded. Get them with "
        "`python manage.py fetch_model` (on a machine with internet), into the cache folder the "
        "container mounts.",
    ),
    (
        re.compile(r"unrecognized arguments|error: argument", re.I),
        "This vLLM image does not understand one of the launch flags; use the pinned image "
        f"{VLLM_IMAGE} or a version that has the flags.",
    ),
)


def explain_startup_failure(log_text: str) -> str | None:
    """A plain explanation for the known ways a vLLM start fails, from its log; None if unknown."""
    for pattern, meaning in _STARTUP_ERRORS:
        if pattern.search(log_text):
            return meaning
    return None


def _clean_line(line: str) -> str:
    return _ANSI_RE.sub("", line).strip()


def _short_line(line: str) -> str:
    """A log line without the process/level/time prefix, for the dashboard."""
    return _LOG_PREFIX_RE.sub("", _clean_line(line), count=1).strip()


def parse_progress(line: str) -> tuple[int, int, str] | None:
    """(done, total, message) for the loading lines worth a progress bar, else None."""
    m = _SHARDS_RE.search(line)
    if m:
        done, total = int(m.group(2)), int(m.group(3))
        return done, total, f"Loading the model weights: {done}/{total} checkpoint shards"
    return None


# -- Docker --------------------------------------------------------------------------------------


def docker_unavailable(exc: BaseException) -> BackendError:
    return BackendError(
        f"Docker is not available here ({snippet(str(exc) or type(exc).__name__, 300)}): set "
        "OCRDASH_VLLM_URL to an external vLLM server or give the worker access to the Docker socket"
    )


def _has_flag(args: list[str], flag: str) -> bool:
    return any(a == flag or a.startswith(flag + "=") for a in args)


def launch_flags(plan: dict[str, Any]) -> list[str]:
    """The memory flags of the plan: its ``vllm_args`` when it has them, else built from its keys."""
    args = plan.get("vllm_args")
    if args:
        return [str(a) for a in args]
    out: list[str] = []

    def add(flag: str, key: str) -> None:
        if plan.get(key) is not None:
            out.extend([flag, str(plan[key])])

    add("--gpu-memory-utilization", "gpu_memory_utilization")
    add("--max-model-len", "max_model_len")
    add("--max-num-seqs", "max_num_seqs")
    add("--max-num-batched-tokens", "max_num_batched_tokens")
    add("--dtype", "dtype")
    out += ["--limit-mm-per-prompt", json.dumps({"image": 1})]
    mm = plan.get("mm_processor_kwargs")
    if not mm and plan.get("max_pixels"):
        mm = {"min_pixels": int(plan.get("min_pixels") or MIN_PIXELS), "max_pixels": int(plan["max_pixels"])}
    if mm:
        out += ["--mm-processor-kwargs", json.dumps(mm)]
    if plan.get("quantization"):
        out += ["--quantization", str(plan["quantization"])]
    if plan.get("enforce_eager"):
        out.append("--enforce-eager")
    return out


@dataclass(frozen=True)
class Launch:
    """Everything that decides what a managed container runs; its hash names the configuration."""

    image: str
    command: list[str]
    device_index: int
    cache_dir: str
    model_dir: str | None  # a local model folder mounted read-only, else None
    environment: dict[str, str]

    @property
    def config_hash(self) -> str:
        data = {
            "image": self.image,
            "command": self.command,
            "device": self.device_index,
            "cache_dir": self.cache_dir,
            "model_dir": self.model_dir,
            "environment": sorted(k for k in self.environment if k != "HF_TOKEN"),
        }
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def build_launch(plan: dict[str, Any]) -> Launch:
    """The container launch for a managed server (raises BackendError for a plan it cannot run)."""
    model = str(plan.get("model") or DEFAULT_MODEL)
    entry = catalog.for_setting(model)  # its image and flags (core/catalog.py)
    revision = plan.get("revision") or plan.get("model_revision")
    model_dir = None
    if os.path.isdir(model):
        model_dir = os.path.abspath(model)
        model_arg = CONTAINER_MODEL_DIR
    else:
        if not revision:
            raise BackendError(
                f"No revision is pinned for {model}. dots.ocr runs its repository's own code "
                "(--trust-remote-code), so ocrdash starts it only at a fixed commit: set the model revision "
                "(a 40-character commit hash) in the backend settings."
            )
        if not _COMMIT_RE.match(str(revision)):
            raise BackendError(
                f"The model revision {revision!r} is not a commit hash. A branch or tag can change under "
                "you while --trust-remote-code runs its code: pin the 40-character commit hash."
            )
        model_arg = model
    cache_dir = os.path.abspath(os.path.expanduser(str(plan.get("cache_dir") or "~/.cache/huggingface")))
    flags = launch_flags(plan)
    # vLLM's `serve` takes the model as its first argument (`--model` is deprecated there).
    command = [model_arg]
    if model_dir is None:
        command += ["--revision", str(revision)]
    command += [
        "--host", "0.0.0.0",
        "--port", str(CONTAINER_PORT),
        "--served-model-name", str(plan.get("vllm_model_name") or SERVED_MODEL_NAME),
        *entry.vllm_flags,
    ]  # fmt: skip
    command += flags
    if not _has_flag(command, "--mm-processor-kwargs") and plan.get("max_pixels"):
        command += ["--mm-processor-kwargs", json.dumps({"max_pixels": int(plan["max_pixels"])})]
    environment = {}
    if plan.get("allow_download") is False:
        environment["HF_HUB_OFFLINE"] = "1"
    if plan.get("hf_token"):
        environment["HF_TOKEN"] = str(plan["hf_token"])
    return Launch(
        image=str(plan.get("vllm_image") or entry.vllm_image or VLLM_IMAGE),
        command=command,
        device_index=int(plan.get("device_index") or 0),
        cache_dir=cache_dir,
        model_dir=model_dir,
        environment=environment,
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _LogFollower:
    """Reads a container's log stream in a thread and keeps the last lines."""

    def __init__(self, container: Any, tail: int | str = "all", keep: int = 200):
        self.lines: deque[str] = deque(maxlen=keep)
        self.lock = threading.Lock()
        self.count = 0
        self._stream = container.logs(stream=True, follow=True, tail=tail)
        self._thread = threading.Thread(target=self._run, name="vllm-log", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pending = ""
        try:
            for chunk in self._stream:
                text = decoder.decode(chunk) if isinstance(chunk, bytes) else str(chunk)
                pending += text
                # tqdm redraws with "\r"; Docker keeps them, so both end a line here.
                *complete, pending = re.split(r"\r\n|\r|\n", pending)
                self._add(complete)
        except Exception as exc:  # the stream ends with the container, or when closed
            log.debug("vLLM log stream ended: %s", exc)
        self._add([pending])

    def _add(self, lines: Iterable[str]) -> None:
        with self.lock:
            for line in lines:
                line = _clean_line(line)
                if line:
                    self.lines.append(line)
                    self.count += 1

    def snapshot(self) -> tuple[int, list[str]]:
        with self.lock:
            return self.count, list(self.lines)

    def close(self, wait: float = 0.0) -> None:
        try:
            self._stream.close()
        except Exception as exc:
            log.debug("closing the vLLM log stream: %s", exc)
        if wait:
            self._thread.join(wait)


# -- the managed server ----------------------------------------------------------------------------


class ManagedServer:
    """The vLLM container ocrdash runs for a plan: started (or adopted), watched until it answers,
    asked why it stopped, and stopped and removed. Only containers with ocrdash's labels are touched."""

    def __init__(
        self,
        docker_client_factory: Callable[[], Any] | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._docker_factory = docker_client_factory or _docker_client
        self._sleep = sleep
        self._clock = clock
        self._docker: Any = None
        self._logs: _LogFollower | None = None
        self._stop_after = DEFAULT_STOP_TIMEOUT
        #: The running container, once started or adopted.
        self.container: Any = None
        self.launch: Launch | None = None
        #: The last lines of its log, for the dashboard.
        self.log_tail: list[str] = []

    def start(self, plan: dict[str, Any], report: ProgressCallback) -> str:
        """Start the container for `plan` (or adopt the one running the same launch), wait until it
        answers /health; its base URL. Leftover containers of other launches are removed first (they
        hold GPU memory); a container that fails to start is removed again."""
        import docker.errors
        import docker.types

        launch = build_launch(plan)
        client = self._docker_client()
        config_hash = launch.config_hash
        self._stop_after = _stop_timeout(plan)
        try:
            adopted = find_managed_container(client, config_hash)
            stop_managed_containers(client, keep=adopted, timeout=self._stop_after)
        except docker.errors.DockerException as exc:
            raise docker_unavailable(exc) from exc

        if adopted is not None:
            port = _published_port(adopted)
            container = adopted
            report(0, 0, f"Reusing the running vLLM container {adopted.name}")
            tail: int | str = 50
        else:
            self._ensure_image(client, launch.image, plan, report)
            port = int(plan.get("vllm_port") or _free_port())
            os.makedirs(launch.cache_dir, exist_ok=True)
            volumes = {launch.cache_dir: {"bind": CONTAINER_HF_CACHE, "mode": "rw"}}
            if launch.model_dir:
                volumes[launch.model_dir] = {"bind": CONTAINER_MODEL_DIR, "mode": "ro"}
            labels = {
                ROLE_LABEL: ROLE_VLLM,
                MANAGED_LABEL: "true",
                CONFIG_LABEL: config_hash,
                PORT_LABEL: str(port),
            }
            report(0, 0, f"Starting the vLLM container ({launch.image}) on GPU {launch.device_index}")
            try:
                container = client.containers.run(
                    launch.image,
                    command=launch.command,
                    entrypoint=["vllm", "serve"],
                    detach=True,
                    name=f"ocrdash-vllm-{config_hash[:12]}",
                    labels=labels,
                    device_requests=[
                        docker.types.DeviceRequest(device_ids=[str(launch.device_index)], capabilities=[["gpu"]])
                    ],
                    volumes=volumes,
                    ports={f"{CONTAINER_PORT}/tcp": ("127.0.0.1", port)},
                    shm_size=str(plan.get("vllm_shm_size") or "2g"),
                    environment=launch.environment,
                )
            except docker.errors.ImageNotFound as exc:
                raise BackendError(
                    f"The vLLM image {launch.image} is not on this machine and could not be "
                    f"found: {exc.explanation or exc}"
                ) from exc
            except docker.errors.APIError as exc:
                raise BackendError(_run_error(exc, launch.image)) from exc
            except docker.errors.DockerException as exc:
                raise docker_unavailable(exc) from exc
            tail = "all"

        self.container = container
        self.launch = launch
        self._logs = _LogFollower(container, tail=tail)
        url = f"http://127.0.0.1:{port}"
        try:
            self._wait_until_healthy(container, VllmClient(url, api_key=plan.get("vllm_api_key") or None), plan, report)
        except BaseException:
            self.stop()
            raise
        return url

    def _docker_client(self) -> Any:
        if self._docker is None:
            try:
                self._docker = self._docker_factory()
            except Exception as exc:  # DockerException: no socket, no permission, no daemon; ImportError
                raise docker_unavailable(exc) from exc
        return self._docker

    def _ensure_image(self, client: Any, image: str, plan: dict[str, Any], report: ProgressCallback) -> None:
        import docker.errors

        try:
            client.images.get(image)
            return
        except docker.errors.ImageNotFound:
            pass
        except docker.errors.DockerException as exc:
            raise docker_unavailable(exc) from exc
        if plan.get("vllm_pull") is False:
            raise BackendError(f"The vLLM image {image} is not on this machine. Get it with: docker pull {image}")
        repo, _, tag = image.rpartition(":")
        if not repo or "/" in tag:
            repo, tag = image, "latest"
        report(0, 0, f"Downloading the vLLM image {image} (several GB, once)")
        layers: dict[str, tuple[int, int]] = {}
        last = 0.0
        try:
            for event in client.api.pull(repo, tag=tag, stream=True, decode=True):
                if not isinstance(event, dict):
                    continue
                if event.get("error"):
                    raise BackendError(f"Downloading the vLLM image {image} failed: {event['error']}")
                detail = event.get("progressDetail") or {}
                if event.get("id") and detail.get("total"):
                    layers[event["id"]] = (int(detail.get("current") or 0), int(detail["total"]))
                now = self._clock()
                if layers and now - last >= 1.0:
                    last = now
                    done = sum(c for c, _ in layers.values())
                    total = sum(t for _, t in layers.values())
                    sizes = f"{done / 1e9:.1f} of {total / 1e9:.1f} GB"
                    report(done, total, f"Downloading the vLLM image {image}: {sizes}")
        except docker.errors.APIError as exc:
            why = exc.explanation or exc
            raise BackendError(f"Downloading the vLLM image {image} failed: {why}") from exc
        except docker.errors.DockerException as exc:
            raise docker_unavailable(exc) from exc

    def _wait_until_healthy(
        self, container: Any, client: VllmClient, plan: dict[str, Any], report: ProgressCallback
    ) -> None:
        import docker.errors

        assert self._logs is not None
        wait = float(plan.get("vllm_start_timeout") or DEFAULT_START_TIMEOUT)
        poll = float(plan.get("vllm_poll_seconds") or DEFAULT_POLL_SECONDS)
        deadline = self._clock() + wait
        seen = 0
        last_message = ""

        def report_fresh() -> None:
            nonlocal seen, last_message
            count, lines = self._logs.snapshot()
            self.log_tail = lines[-LOG_TAIL_LINES:]
            if count <= seen:
                return
            fresh = lines[-min(count - seen, len(lines)) :]
            seen = count
            # Every line is reported in order: a step of the shards bar as done/total, others as text.
            for line in fresh:
                message = parse_progress(line) or (0, 0, _short_line(line) or line)
                if message[2] != last_message:
                    last_message = message[2]
                    report(*message)

        while True:
            report_fresh()
            if client.health():
                self._sleep(min(poll, 0.1))  # let the log reader hand over what came with readiness
                report_fresh()
                return
            try:
                container.reload()
                status = container.status
            except docker.errors.NotFound:
                raise BackendError(
                    f"The vLLM container {container.name} was removed while it started (by someone else?)."
                ) from None
            except docker.errors.DockerException as exc:
                raise docker_unavailable(exc) from exc
            if status in ("exited", "dead"):
                raise self._startup_failed(container)
            if self._clock() >= deadline:
                tail = "\n".join(self.log_tail)
                raise BackendError(
                    f"vLLM did not become ready within {wait:g} s (container {container.name}). Its last log "
                    f"lines:\n{tail}"
                )
            self._sleep(poll)

    def _startup_failed(self, container: Any) -> BackendError:
        assert self._logs is not None
        self._logs.close(wait=2.0)
        try:
            text = container.logs(stdout=True, stderr=True, tail=200)
            text = text.decode("utf-8", errors="replace") if isinstance(text, bytes) else str(text)
            lines = [_clean_line(x) for x in re.split(r"\r\n|\r|\n", text)]
            lines = [x for x in lines if x]
        except Exception:
            lines = self._logs.snapshot()[1]
        self.log_tail = lines[-LOG_TAIL_LINES:]
        state = (getattr(container, "attrs", None) or {}).get("State") or {}
        code = state.get("ExitCode")
        explanation = explain_startup_failure("\n".join(lines))
        if explanation is None and state.get("OOMKilled"):
            explanation = "The container ran out of host memory (RAM) and was killed."
        head = f"vLLM stopped while starting (container {container.name}, exit code {code})."
        if explanation:
            head += " " + explanation
        return BackendError(head + "\nIts last log lines:\n" + "\n".join(self.log_tail))

    def stop(self) -> None:
        """Stop and remove the container (only if it carries our labels)."""
        container, self.container, self.launch = self.container, None, None
        if self._logs is not None:
            self._logs.close()
            self._logs = None
        if container is None or not is_managed(container):
            return
        import docker.errors

        try:
            container.reload()
            if container.status in ("running", "restarting", "paused", "created"):
                container.stop(timeout=self._stop_after)
            container.remove(force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.DockerException as exc:
            log.warning("could not remove the vLLM container %s: %s", getattr(container, "name", "?"), exc)

    def exited(self) -> tuple[str, str] | None:
        """(its status, the end of its log) when the container is no longer running (or was removed);
        None while it runs, or when Docker cannot say."""
        import docker.errors

        container = self.container
        if container is None:
            return None
        try:
            container.reload()
            status = container.status
            text = container.logs(stdout=True, stderr=True, tail=200) if status != "running" else b""
        except docker.errors.NotFound:
            status, text = "removed", b""
        except docker.errors.DockerException:
            return None
        if status == "running":
            return None
        text = text.decode("utf-8", errors="replace") if isinstance(text, bytes) else str(text)
        lines = [x for x in (_clean_line(x) for x in re.split(r"\r\n|\r|\n", text)) if x]
        self.log_tail = lines[-LOG_TAIL_LINES:]
        return status, text


def _published_port(container: Any) -> int:
    """The host port of a managed container's server: its label, else what Docker reports."""
    label = (getattr(container, "labels", None) or {}).get(PORT_LABEL)
    if label and str(label).isdigit():
        return int(label)
    ports = ((getattr(container, "attrs", None) or {}).get("NetworkSettings") or {}).get("Ports") or {}
    for binding in ports.get(f"{CONTAINER_PORT}/tcp") or []:
        if str(binding.get("HostPort") or "").isdigit():
            return int(binding["HostPort"])
    raise BackendError(f"The running vLLM container {getattr(container, 'name', '?')} publishes no port.")


def _stop_timeout(plan: dict[str, Any]) -> int:
    return int(plan.get("vllm_stop_timeout") or DEFAULT_STOP_TIMEOUT)


def _run_error(exc: Any, image: str) -> str:
    text = str(getattr(exc, "explanation", None) or exc)
    low = text.lower()
    if "could not select device driver" in low or "nvidia-container" in low or "unknown runtime" in low:
        return (
            f"Docker cannot give the vLLM container a GPU ({snippet(text)}). Install the NVIDIA Container "
            "Toolkit on the host and restart Docker, or set OCRDASH_VLLM_URL to an external vLLM server."
        )
    if "port is already allocated" in low or "address already in use" in low:
        return f"The port for the vLLM container is taken ({snippet(text)}); choose another vLLM port."
    if "conflict" in low and "name" in low:
        return f"A container with the vLLM container's name already exists ({snippet(text)})."
    return f"Docker could not start the vLLM container from {image}: {snippet(text, 400)}"
