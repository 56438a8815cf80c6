"""The backend this worker process keeps loaded between jobs, and its state as the dashboard shows it.

Loading dots.ocr takes minutes, so the worker keeps the last backend loaded until a job needs
another one (the plan changed), an admin frees the GPU, or it sat idle for
OCRDASH_BACKEND_IDLE_UNLOAD seconds (the GPU is shared: memory is given back).

Everything the holder uses from outside comes in through its constructor: how a backend is built,
how this worker reads its GPU, where its state is published, which GPU it is, how long it may sit
idle. workers/tasks.py makes the worker's one holder with the real ones (`tasks.holder()`); tests
make theirs with doubles and swap it in with `tasks.use_holder(...)`. No Django or Celery here.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core import backends
from core.gpu import read_snapshot
from core.planner import Plan
from workers.backends import create_backend
from workers.backends.base import OcrBackend

# The worker's log lines keep the name operators filter them by (docs/operations.md, "Logs").
log = logging.getLogger("workers.tasks")


@dataclass(frozen=True)
class Choice:
    """What a job runs on: the planner's Plan, what the backend's load() receives, the key that
    says whether the loaded backend can be reused, and the backend settings' stamp
    (BackendSettings.updated_at) it was chosen under."""

    plan: Plan | None
    args: dict[str, Any]
    key: tuple
    stamp: str


def _nowhere(body: dict[str, Any]) -> None:
    """Publishes nothing: a holder without a dashboard."""


class BackendHolder:
    """The backend this worker keeps loaded: `ensure` loads what a job's Choice needs (or keeps
    what is loaded), `unload` gives it back, and each change of state is published."""

    def __init__(
        self,
        *,
        create: Callable[[str], OcrBackend] = create_backend,
        read_gpu: Callable[[], Any] = read_snapshot,
        publish: Callable[[dict[str, Any]], None] = _nowhere,
        gpu_index: Callable[[], int] = lambda: 0,
        idle_seconds: Callable[[], float] = lambda: 0,
        timer: Callable[..., threading.Timer] = threading.Timer,
    ) -> None:
        self._create = create
        #: How this worker reads its GPU now (NVML): the planner's input, and the peak meter's.
        self.read_gpu = read_gpu
        self._publish = publish
        self._gpu_index = gpu_index
        self._idle_seconds = idle_seconds
        self._timer = timer
        self._idle_timer: threading.Timer | None = None
        self.lock = threading.RLock()
        #: The worker's name, as Celery knows it.
        self.hostname = ""
        self.backend: OcrBackend | None = None
        #: The Choice the backend was loaded for; None once unloaded. Set only by ensure().
        self.held: Choice | None = None
        #: What the backend was last loaded with: the dashboard shows it, also once unloaded.
        self.args: dict[str, Any] | None = None

    def kept(self, stamp: str) -> Choice | None:
        """The loaded dots.ocr backend's Choice while the settings are still those it was chosen
        under: restarting dots.ocr costs minutes, so a small change in free memory does not."""
        held, backend = self.held, self.backend
        if held is None or held.plan is None or held.stamp != stamp or backend is None or not backend.loaded:
            return None
        return held if backends.runs_dots(held.plan.backend) else None

    def ensure(self, choice: Choice, progress) -> OcrBackend:
        """The backend loaded as `choice` says: the one held when its key is the same, else
        (re)loaded, the previous one unloaded first when it is another backend."""
        with self.lock:
            self._cancel_idle_timer()
            held = self.held
            if self.backend is not None and held is not None and held.key == choice.key and self.backend.loaded:
                self.held = choice
                return self.backend
            name = choice.args["backend"]
            if self.backend is not None and self.args and self.args.get("backend") != name:
                self.unload("switching backend")
            if self.backend is None:
                self.backend = self._create(name)
            self.held, self.args = choice, choice.args
            self.publish("loading", f"Loading {name}")
            try:
                self.backend.load(choice.args, progress=progress)
            except Exception as exc:
                self.publish("failed", str(exc))
                raise
            self.publish("ready")
            return self.backend

    def unload(self, reason: str) -> bool:
        """Give the backend's memory back; False when nothing was loaded."""
        with self.lock:
            self._cancel_idle_timer()
            if self.backend is None:
                return False
            log.info("unloading %s: %s", self.backend.name, reason)
            self.backend.unload()
            self.backend, self.held = None, None
            self.publish("unloaded", reason)
            return True

    def publish(self, state: str, detail: str = "", progress: float | None = None) -> None:
        """Tell the dashboard this worker's backend state (a core.events.BackendStatus)."""
        args = self.args
        self._publish(
            {
                "worker": self.hostname,
                "gpu_index": self._gpu_index(),
                "state": state,
                "backend": (args or {}).get("backend", ""),
                "detail": detail,
                "progress": progress,
                "memory_bytes": self.backend.memory_estimate() if self.backend and state == "ready" else 0,
                "plan": args,
            }
        )

    def start_idle_timer(self) -> None:
        """Unload after the idle time, unless a job comes first (ensure() stops the timer)."""
        seconds = self._idle_seconds()
        if seconds <= 0 or self.backend is None:
            return
        with self.lock:
            self._cancel_idle_timer()
            self._idle_timer = self._timer(seconds, self.unload, args=(f"idle for {seconds} s",))
            self._idle_timer.daemon = True
            self._idle_timer.start()

    def close(self) -> None:
        """Stop the idle timer; the backend stays as it is."""
        with self.lock:
            self._cancel_idle_timer()

    def _cancel_idle_timer(self) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
