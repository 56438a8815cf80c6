"""What the GPU looks like right now, read through NVML (the official `nvidia-ml-py` bindings).

Pure: no Django. `read_snapshot()` never raises for a missing driver or a lost GPU; the
snapshot then carries `error`, a sentence for the dashboard, and no devices.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

GIB = 1024**3


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
