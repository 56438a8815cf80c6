"""The events every open page receives over the websocket (/ws/events/), typed once.

Three kinds, each a JSON object with a `type`:

- `job.status`: {"type": "job.status", "job": JobStatus}. Sent by the web process (a new job, a
  cancel, a retry) and by the worker (each state change and page), through ocr_app/events.py;
  `job_payload` there builds the JobStatus. The same JobStatus is the body of
  `GET /jobs/<id>/status.json`, of the upload page's JSON answer and of the pages' embedded jobs.
- `gpu.sample`: {"type": "gpu.sample", **GpuSample}, about once a second from the GPU monitor
  (core/gpu.py `sample_to_event`).
- `backend.status`: {"type": "backend.status", **BackendStatus} from a worker whose backend changes
  state (workers/holder.py), or **BackendSettingsNotice when an admin changed the backend settings
  (ocr_app/admin.py; no worker: `worker` is "").

`problems(payload, Shape)` lists how a payload differs from its shape (a missing or an extra key,
a value of the wrong type); the tests hold every publisher, the consumer, the JavaScript that reads
these events and the examples in docs/architecture.md to these shapes.
"""

from __future__ import annotations

import types
from typing import Any, Literal, TypedDict, Union, get_args, get_origin, get_type_hints, is_typeddict

from core.jobstate import JobState

BackendState = Literal["unloaded", "loading", "ready", "failed"]
BACKEND_STATES: tuple[str, ...] = get_args(BackendState)
ProcessRole = Literal["worker", "vllm"]  # core/containers.py ROLES

JOB_STATUS = "job.status"
GPU_SAMPLE = "gpu.sample"
BACKEND_STATUS = "backend.status"
EVENT_TYPES = (JOB_STATUS, GPU_SAMPLE, BACKEND_STATUS)


class JobStatus(TypedDict):
    """A job as every page shows it."""

    id: int
    state: JobState
    progress: float  # the share of pages done, 0 to 1
    queue_position: int | None  # 1 = next; null unless queued
    message: str  # what happened, in words ("" when nothing to say)
    backend: str  # the backend that ran it, or was asked for while queued ("" until chosen)
    language: str  # the CPU engine's language
    owner: str
    name: str  # the file's name
    text_preview: str  # the first 200 characters of the text
    waited_seconds: float | None  # in the queue
    ran_seconds: float | None
    url: str  # the job's page
    mode: str  # core.dots.prompts.MODES
    page: int | None  # the page being read (1-based); null unless running
    pages: int  # the job's page count (1 for an image)
    pages_done: int  # pages ended (read or failed)
    pages_running: int  # pages being read now (several at once on vLLM and batched transformers)
    eta_seconds: float | None  # time left for the pages not done, at the rate measured; null unless running
    reused_from: int | None  # the job whose result it took instead of running


class JobStatusEvent(TypedDict):
    type: Literal["job.status"]
    job: JobStatus


class BackendStatus(TypedDict):
    """A worker's backend: what it holds and in which state."""

    worker: str  # the worker's Celery name
    gpu_index: int  # NVML index of its GPU
    state: BackendState
    backend: str  # the backend loaded or last loaded ("" before the first)
    detail: str  # e.g. "Downloading … 40%", or why it failed or was unloaded
    progress: float | None  # of a load, 0 to 1; null when unknown
    memory_bytes: int  # GPU memory it holds once ready (0 otherwise)
    plan: dict[str, Any] | None  # the load arguments: the planner's plan and where the model is


class BackendSettingsNotice(TypedDict):
    """The admin changed the backend settings: every page says so (no worker is meant)."""

    worker: Literal[""]
    state: Literal["settings"]
    backend: str  # the backend now set ("auto" or a name)
    detail: str
    progress: None
    memory_bytes: int
    plan: None


class BackendStatusEvent(BackendStatus):
    type: Literal["backend.status"]


class BackendSettingsEvent(BackendSettingsNotice):
    type: Literal["backend.status"]


class GpuProcessSample(TypedDict):
    pid: int  # on the host
    name: str
    used_bytes: int | None  # null when the driver does not say
    container: str | None  # its Docker container's name, when there is an engine to ask
    role: ProcessRole | None  # ocrdash's own worker or vLLM server, else null


class GpuDeviceSample(TypedDict):
    index: int  # NVML's
    uuid: str
    name: str
    total: int  # bytes
    used: int
    free: int
    reserved: int | None  # bytes the driver keeps back; null when unknown
    utilization: int | None  # percent of time a kernel ran
    temperature: int | None  # degrees C
    power: float | None  # watts
    power_limit: float | None
    compute_capability: str | None  # "8.6"
    processes: list[GpuProcessSample]


class GpuSample(TypedDict):
    taken_at: float  # Unix seconds
    driver_version: str | None  # null when NVML could not be read
    error: str | None  # why there are no devices, in words for the dashboard
    devices: list[GpuDeviceSample]


class GpuSampleEvent(GpuSample):
    type: Literal["gpu.sample"]


def problems(payload: Any, shape: Any, where: str = "") -> list[str]:
    """How `payload` differs from `shape` (a TypedDict, or a type hint such as `int | None`), one
    sentence each; [] when it fits. A float field takes an int (JSON does not tell them apart)."""
    where = where or getattr(shape, "__name__", str(shape))
    if is_typeddict(shape):
        if not isinstance(payload, dict):
            return [f"{where} is {type(payload).__name__}, not an object"]
        hints = get_type_hints(shape)
        found = [f"{where} lacks {key!r}" for key in hints if key not in payload]
        found += [f"{where} has {key!r}, which it does not declare" for key in payload if key not in hints]
        for key, hint in hints.items():
            if key in payload:
                found += problems(payload[key], hint, f"{where}.{key}")
        return found
    origin = get_origin(shape)
    if origin in (Union, types.UnionType):
        options = get_args(shape)
        if any(not problems(payload, option, where) for option in options):
            return []
        return [f"{where} = {payload!r} is none of {', '.join(_name(o) for o in options)}"]
    if origin is Literal:
        return [] if payload in get_args(shape) else [f"{where} = {payload!r} is not one of {get_args(shape)}"]
    if origin is list:
        if not isinstance(payload, list):
            return [f"{where} is {type(payload).__name__}, not a list"]
        (item,) = get_args(shape)
        return [p for i, value in enumerate(payload) for p in problems(value, item, f"{where}[{i}]")]
    if origin is dict or shape is dict:
        return [] if isinstance(payload, dict) else [f"{where} is {type(payload).__name__}, not an object"]
    if shape is Any:
        return []
    if shape is type(None) or shape is None:
        return [] if payload is None else [f"{where} = {payload!r} is not null"]
    if shape is float:
        ok = isinstance(payload, (int, float)) and not isinstance(payload, bool)
    elif shape is int:
        ok = isinstance(payload, int) and not isinstance(payload, bool)
    else:
        ok = isinstance(payload, shape)
    return [] if ok else [f"{where} = {payload!r} is {type(payload).__name__}, not {_name(shape)}"]


def _name(hint: Any) -> str:
    return "null" if hint is type(None) else getattr(hint, "__name__", None) or repr(hint)
