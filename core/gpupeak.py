"""Measures the GPU memory a job used, by sampling NVML while it runs.

Pure: no Django. Three sources, best first, because drivers differ in what they report:
1. per-process memory of ocrdash's own processes (the worker, its vLLM server);
2. what the backend itself measured (torch's peak allocation), given by the caller;
3. the rise in the device's used memory since the job started (WSL and some drivers
   report no per-process memory): a lower bound when others free memory meanwhile.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from core.gpu import GpuSnapshot


class GpuPeak:
    def __init__(
        self,
        read: Callable[[], GpuSnapshot],
        device_index: int,
        is_ours: Callable[[int, str | None], bool],
        interval: float = 0.25,
    ):
        self.read = read
        self.index = device_index
        self.is_ours = is_ours
        self.interval = interval
        self.free_at_start: int | None = None
        self.used_at_start: int | None = None
        self.peak_ours: int | None = None
        self.peak_used: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> GpuPeak:
        device = self._device(self.read())
        if device is not None:
            self.free_at_start = device.free_bytes
            self.used_at_start = device.used_bytes
            self._take(device)
            self._thread = threading.Thread(target=self._run, name="gpu-peak", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._take(self._device(self.read()))

    def _device(self, snapshot: GpuSnapshot):
        for device in snapshot.devices:
            if device.index == self.index:
                return device
        return None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._take(self._device(self.read()))
            except Exception:  # a lost sample must never fail the job
                continue

    def _take(self, device) -> None:
        if device is None:
            return
        self.peak_used = max(self.peak_used or 0, device.used_bytes)
        known = [p.used_bytes for p in device.processes if p.used_bytes is not None and self.is_ours(p.pid, p.role)]
        if known:
            self.peak_ours = max(self.peak_ours or 0, sum(known))

    def peak(self, backend_reported: int | None = None) -> int | None:
        if self.peak_ours:
            return self.peak_ours
        if backend_reported:
            return backend_reported
        if self.peak_used is not None and self.used_at_start is not None:
            return max(0, self.peak_used - self.used_at_start)
        return None
