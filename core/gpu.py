"""What the GPU looks like right now, read through NVML (the official `nvidia-ml-py` bindings).

Pure: no Django. `read_snapshot()` never raises for a missing driver or a lost GPU; the
snapshot then carries `error`, a sentence for the dashboard, and no devices.

Reading
-------
`NvmlReader` keeps NVML initialised between samples (initialising costs far more than a
sample) and shuts it down on `close()`. Per device it reads name, UUID, memory (the v2 call,
which does not count the driver's reserved memory as used, where the driver has it; else v1),
utilization, temperature, power draw and limit, CUDA compute capability, and the compute and
graphics processes (one entry per pid). An optional value the card does not report
(NVMLError_NotSupported, NVMLError_NoPermission, ...) is None, and `details["unavailable"]`
says which and why; the rest of the sample is still read.

- No library, no driver, or no device: no devices, `error == NO_GPU_MESSAGE`,
  `details["reason"]` holds NVML's words. The next read tries again.
- The GPU lost, or NVML in a bad state, during a read: no devices, `error == GPU_LOST_MESSAGE`;
  the reader shuts NVML down and initialises it afresh on the next read, so sampling recovers
  on its own when the driver comes back.

`read_snapshot(nvml=None)` reads through one long-lived reader (the real `pynvml` when None;
tests pass a double with the same interface); `close_readers()` ends its session.

The `gpu.sample` event
----------------------
`sample_to_event(snapshot)` gives the body of the websocket event `gpu.sample`, sent about
once a second; its shape is core/events.py `GpuSample` (bytes, percent, degrees C, watts; null
where the card does not say). `used + free` can be less than `total`: the difference is
`reserved` (or, with v1-only drivers, nothing: v1 counts reserved memory as used).
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core.events import GpuDeviceSample, GpuProcessSample, GpuSample

log = logging.getLogger(__name__)

GIB = 1024**3

NO_GPU_MESSAGE = "No NVIDIA GPU visible: jobs run on the CPU"
GPU_LOST_MESSAGE = "The NVIDIA GPU stopped answering: the monitor keeps trying to reach it"

# NVML marks a value it does not know with all bits set (NVML_VALUE_NOT_AVAILABLE_ulonglong).
_NOT_AVAILABLE_ULL = 2**64 - 1

# After these, the NVML session is no good: shut it down and initialise again on the next read.
_SESSION_ERRORS = (
    "NVMLError_GpuIsLost",
    "NVMLError_Unknown",
    "NVMLError_Uninitialized",
    "NVMLError_DriverNotLoaded",
    "NVMLError_LibRmVersionMismatch",
    "NVMLError_ResetRequired",
)


@dataclass(frozen=True)
class GpuProcess:
    pid: int
    name: str
    # None when the driver does not say (e.g. under WSL or without permission).
    used_bytes: int | None
    # Filled in later by container matching (Docker), when there is an engine.
    container: str | None = None
    # "worker" / "vllm" when the process is ocrdash's own, else None.
    role: str | None = None
    # The 64-hex id of the container, found from the process (its cgroup); what a stop uses.
    container_id: str | None = None


@dataclass(frozen=True)
class GpuDevice:
    index: int
    uuid: str
    name: str
    total_bytes: int
    used_bytes: int
    free_bytes: int
    utilization_percent: int | None = None
    temperature_c: int | None = None
    power_watts: float | None = None
    power_limit_watts: float | None = None
    # CUDA compute capability, e.g. (8, 9); decides e.g. whether fp8 weights are possible.
    compute_capability: tuple[int, int] | None = None
    processes: tuple[GpuProcess, ...] = ()
    # Memory the driver keeps for itself (NVML memory v2); None where only v1 is available.
    reserved_bytes: int | None = None


@dataclass(frozen=True)
class GpuSnapshot:
    taken_at: float
    devices: tuple[GpuDevice, ...] = ()
    driver_version: str | None = None
    # Why there are no devices, in words for the dashboard; None when all is well.
    error: str | None = None
    details: dict = field(default_factory=dict)

    @property
    def has_gpu(self) -> bool:
        return bool(self.devices)

    def as_json(self) -> dict:
        return asdict(self)


def _text(value: Any) -> str:
    # Older bindings return bytes, current ones str.
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


class _Device:
    """What does not change while NVML stays initialised: the handle, name, UUID, capability."""

    __slots__ = ("index", "handle", "name", "uuid", "capability", "memory_v2")

    def __init__(self, index: int, handle: Any):
        self.index = index
        self.handle = handle
        self.name: str | None = None
        self.uuid: str | None = None
        self.capability: tuple[int, int] | None = None
        # None: not tried yet; False: the driver lacks it, use v1.
        self.memory_v2: bool | None = None


class NvmlReader:
    """Reads GPU snapshots through one NVML session kept open between reads.

    `nvml` is the `pynvml` module (imported on first use when None) or anything with the
    same interface. Thread-safe; `read()` never raises.
    """

    def __init__(
        self,
        nvml: Any = None,
        *,
        proc_root: str | Path = "/proc",
        clock: Callable[[], float] = time.time,
    ):
        self._nvml = nvml
        self._import_error: str | None = None
        self._proc_root = Path(proc_root)
        self._clock = clock
        self._lock = threading.Lock()
        self._started = False
        self._devices: list[_Device] | None = None
        self._driver_version: str | None = None
        self._names: dict[int, str] = {}
        self._last_failure: str | None = None

    # -- public -----------------------------------------------------------------------------

    def read(self) -> GpuSnapshot:
        with self._lock:
            taken_at = self._clock()
            try:
                return self._read(taken_at)
            except Exception as exc:  # the sampler must outlive anything NVML does
                reason = _describe(exc)
                if reason != self._last_failure:  # once per kind of failure, not once a second
                    log.exception("reading the GPU failed")
                self._last_failure = reason
                self._stop()
                return GpuSnapshot(taken_at, error=GPU_LOST_MESSAGE, details={"reason": reason})

    def close(self) -> None:
        with self._lock:
            self._stop()

    def __enter__(self) -> NvmlReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- session ----------------------------------------------------------------------------

    def _module(self) -> Any:
        if self._nvml is None and self._import_error is None:
            try:
                import pynvml
            except ImportError as exc:
                self._import_error = f"nvidia-ml-py is not installed ({exc})"
            else:
                self._nvml = pynvml
        return self._nvml

    def _stop(self) -> None:
        if self._started:
            try:
                self._nvml.nvmlShutdown()
            except Exception as exc:
                log.debug("nvmlShutdown: %s", exc)
        self._started = False
        self._devices = None
        self._driver_version = None
        self._names.clear()

    def _is_session_error(self, exc: BaseException) -> bool:
        classes = tuple(c for c in (getattr(self._nvml, n, None) for n in _SESSION_ERRORS) if c)
        return isinstance(exc, classes)

    def _load_devices(self, nvml: Any) -> None:
        try:
            self._driver_version = _text(nvml.nvmlSystemGetDriverVersion())
        except nvml.NVMLError as exc:
            if self._is_session_error(exc):
                raise
            self._driver_version = None
        count = nvml.nvmlDeviceGetCount()
        self._devices = [_Device(i, nvml.nvmlDeviceGetHandleByIndex(i)) for i in range(count)]

    # -- one read ---------------------------------------------------------------------------

    def _no_gpu(self, taken_at: float, reason: str, driver: str | None = None) -> GpuSnapshot:
        return GpuSnapshot(taken_at, driver_version=driver, error=NO_GPU_MESSAGE, details={"reason": reason})

    def _read(self, taken_at: float) -> GpuSnapshot:
        nvml = self._module()
        if nvml is None:
            return self._no_gpu(taken_at, self._import_error or "nvidia-ml-py is not installed")
        notes: list[str] = []
        devices: list[GpuDevice] = []
        try:
            if not self._started:
                try:
                    nvml.nvmlInit()
                except nvml.NVMLError as exc:  # LibraryNotFound, DriverNotLoaded, NoPermission, ...
                    return self._no_gpu(taken_at, str(exc))
                self._started = True
                self._load_devices(nvml)
            for device in self._devices or ():
                try:
                    devices.append(self._read_device(nvml, device, notes))
                except nvml.NVMLError as exc:
                    if self._is_session_error(exc):
                        raise
                    notes.append(f"GPU {device.index}: {exc}")
        except nvml.NVMLError as exc:
            driver = self._driver_version
            self._stop()
            if self._is_session_error(exc):
                return GpuSnapshot(
                    taken_at, driver_version=driver, error=GPU_LOST_MESSAGE, details={"reason": str(exc)}
                )
            return self._no_gpu(taken_at, str(exc), driver)

        if not self._devices:
            driver = self._driver_version
            self._stop()  # a GPU that appears later is only seen by a fresh session
            return self._no_gpu(taken_at, "NVML sees no NVIDIA device", driver)
        if not devices:
            return self._no_gpu(taken_at, "; ".join(notes), self._driver_version)
        live = {p.pid for d in devices for p in d.processes}
        for pid in [p for p in self._names if p not in live]:
            del self._names[pid]
        details = {"unavailable": notes} if notes else {}
        return GpuSnapshot(taken_at, tuple(devices), self._driver_version, None, details)

    def _optional(self, notes: list[str], label: str, fn: Callable[..., Any], *args: Any) -> Any:
        """fn(*args), or None (noted) when the card does not offer it; session errors go up."""
        try:
            return fn(*args)
        except self._nvml.NVMLError as exc:
            if self._is_session_error(exc):
                raise
            notes.append(f"{label}: {exc}")
        except Exception as exc:  # e.g. NVMLLibraryMismatchError, a binding older than the driver
            notes.append(f"{label}: {_describe(exc)}")
        return None

    def _read_device(self, nvml: Any, device: _Device, notes: list[str]) -> GpuDevice:
        h = device.handle
        label = f"GPU {device.index}"
        if device.name is None:
            name = self._optional(notes, f"{label} name", nvml.nvmlDeviceGetName, h)
            device.name = _text(name) if name is not None else None
        if device.uuid is None:
            uuid = self._optional(notes, f"{label} uuid", nvml.nvmlDeviceGetUUID, h)
            device.uuid = _text(uuid) if uuid is not None else None
        if device.capability is None:
            cc = self._optional(
                notes, f"{label} compute_capability", nvml.nvmlDeviceGetCudaComputeCapability, h
            )
            device.capability = (int(cc[0]), int(cc[1])) if cc is not None else None

        total, used, free, reserved = self._memory(nvml, device)
        util = self._optional(notes, f"{label} utilization_percent", nvml.nvmlDeviceGetUtilizationRates, h)
        temp = self._optional(
            notes, f"{label} temperature_c", nvml.nvmlDeviceGetTemperature, h, nvml.NVML_TEMPERATURE_GPU
        )
        power = self._optional(notes, f"{label} power_watts", nvml.nvmlDeviceGetPowerUsage, h)
        limit = self._optional(notes, f"{label} power_limit_watts", nvml.nvmlDeviceGetEnforcedPowerLimit, h)
        return GpuDevice(
            index=device.index,
            uuid=device.uuid or "",
            name=device.name or f"NVIDIA GPU {device.index}",
            total_bytes=int(total),
            used_bytes=int(used),
            free_bytes=int(free),
            utilization_percent=int(util.gpu) if util is not None else None,
            temperature_c=int(temp) if temp is not None else None,
            power_watts=power / 1000 if power is not None else None,
            power_limit_watts=limit / 1000 if limit is not None else None,
            compute_capability=device.capability,
            processes=self._processes(nvml, device, notes),
            reserved_bytes=reserved,
        )

    def _memory(self, nvml: Any, device: _Device) -> tuple[int, int, int, int | None]:
        version = getattr(nvml, "nvmlMemory_v2", None)
        if version is not None and device.memory_v2 is not False:
            try:
                m = nvml.nvmlDeviceGetMemoryInfo(device.handle, version=version)
            except nvml.NVMLError as exc:
                if self._is_session_error(exc):
                    raise
                device.memory_v2 = False  # e.g. NVMLError_FunctionNotFound on an older driver
            else:
                device.memory_v2 = True
                return m.total, m.used, m.free, m.reserved
        m = nvml.nvmlDeviceGetMemoryInfo(device.handle)
        return m.total, m.used, m.free, None

    def _running(self, nvml: Any, name: str, handle: Any) -> list:
        mismatch = getattr(nvml, "NVMLLibraryMismatchError", ())
        try:
            return getattr(nvml, name)(handle)
        except mismatch:
            # The binding asked for a newer call than this driver has: use the older one.
            return getattr(nvml, name + "_v2")(handle)

    def _processes(self, nvml: Any, device: _Device, notes: list[str]) -> tuple[GpuProcess, ...]:
        found: dict[int, GpuProcess] = {}
        for kind in ("Compute", "Graphics"):
            fn_name = f"nvmlDeviceGet{kind}RunningProcesses"
            entries = self._optional(
                notes,
                f"GPU {device.index} {kind.lower()} processes",
                self._running,
                nvml,
                fn_name,
                device.handle,
            )
            for entry in entries or ():
                pid = int(entry.pid)
                used = entry.usedGpuMemory
                used = None if used is None or used == _NOT_AVAILABLE_ULL else int(used)
                known = found.get(pid)
                if known is not None:
                    if known.used_bytes is None and used is not None:
                        found[pid] = GpuProcess(pid, known.name, used)
                    continue
                found[pid] = GpuProcess(pid, self._process_name(nvml, pid), used)
        return tuple(found.values())

    def _process_name(self, nvml: Any, pid: int) -> str:
        name = self._names.get(pid)
        if name is not None:
            return name
        try:
            name = _text(nvml.nvmlSystemGetProcessName(pid)).strip()
        except Exception:  # NVMLError_NotFound / NoPermission: another pid namespace, or gone
            name = ""
        if not name:
            try:
                name = (self._proc_root / str(pid) / "comm").read_text().strip()
            except OSError:
                name = ""
        name = name or f"pid {pid}"
        self._names[pid] = name
        return name


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# -- module-level reading -------------------------------------------------------------------

_shared_lock = threading.Lock()
_shared: tuple[Any, NvmlReader] | None = None  # (the nvml it reads through, the reader)


def read_snapshot(nvml: Any = None) -> GpuSnapshot:
    """One snapshot through a long-lived reader (real `pynvml` when `nvml` is None).

    The NVML session stays open between calls; calling with another `nvml` than last time
    closes the old session and opens one for the new module.
    """
    global _shared
    with _shared_lock:
        if _shared is None or _shared[0] is not nvml:
            if _shared is not None:
                _shared[1].close()
            _shared = (nvml, NvmlReader(nvml))
        reader = _shared[1]
    return reader.read()


def close_readers() -> None:
    """Shut down the NVML session `read_snapshot` keeps (also run at exit)."""
    global _shared
    with _shared_lock:
        shared, _shared = _shared, None
    if shared is not None:
        shared[1].close()


atexit.register(close_readers)


# -- using a snapshot -----------------------------------------------------------------------


def free_memory_of(snapshot: GpuSnapshot, index: int = 0) -> int:
    """Free bytes on GPU `index`; 0 when the snapshot has no such GPU."""
    for device in snapshot.devices:
        if device.index == index:
            return device.free_bytes
    return 0


def _process_event(process: GpuProcess) -> GpuProcessSample:
    return {
        "pid": process.pid,
        "name": process.name,
        "used_bytes": process.used_bytes,
        "container": process.container,
        "role": process.role,
    }


def _device_event(device: GpuDevice) -> GpuDeviceSample:
    cc = device.compute_capability
    return {
        "index": device.index,
        "uuid": device.uuid,
        "name": device.name,
        "total": device.total_bytes,
        "used": device.used_bytes,
        "free": device.free_bytes,
        "reserved": device.reserved_bytes,
        "utilization": device.utilization_percent,
        "temperature": device.temperature_c,
        "power": round(device.power_watts, 2) if device.power_watts is not None else None,
        "power_limit": round(device.power_limit_watts, 2) if device.power_limit_watts is not None else None,
        "compute_capability": f"{cc[0]}.{cc[1]}" if cc else None,
        "processes": [_process_event(p) for p in device.processes],
    }


def gib(n: int | float | None) -> str:
    """Bytes as the dashboard and the `gpu` command write them: "5.81 GiB"; "—" when unknown."""
    return "—" if n is None else f"{n / GIB:.2f} GiB"


def sample_to_event(snapshot: GpuSnapshot) -> GpuSample:
    """The body of the `gpu.sample` websocket event (core/events.py `GpuSample`)."""
    return {
        "taken_at": round(snapshot.taken_at, 3),
        "driver_version": snapshot.driver_version,
        "error": snapshot.error,
        "devices": [_device_event(d) for d in snapshot.devices],
    }
