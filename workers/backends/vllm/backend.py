"""dots.ocr served by vLLM's OpenAI-compatible server: the backend the worker holds.

It talks to the server through `client.VllmClient` and, when ocrdash runs the server itself, starts
and stops it through `launcher.ManagedServer`. Two ways to run it:

- **external**: ``plan["vllm_url"]`` names a server someone else runs (``OCRDASH_VLLM_URL``).
  ocrdash only talks to it: ``load()`` waits for ``/health`` and checks ``/v1/models``.
- **managed**: no URL. ocrdash starts the ``vllm/vllm-openai`` container through the Docker SDK
  with the plan's flags, waits for ``/health`` while it reports the loading progress and the log
  tail, and stops and removes the container in ``unload()``. Every container it starts carries
  the labels ``ocrdash.role=vllm`` and ``ocrdash.managed=true``; nothing without them is ever
  stopped. ``ocrdash.config=<sha256 of the launch>`` lets a worker that restarted adopt a
  container that is still running with the same launch instead of loading the model again.

Requests follow dots.ocr's own client and are streamed, so that a cancelled job closes the
connection and vLLM aborts it (client.py says how).

Plan keys read (all optional unless said):

=========================== ============================================================
``vllm_url``                external server (base URL, with or without ``/v1``)
``vllm_api_key``            bearer token for it
``vllm_model_name``         served model name (default ``dots.ocr``)
``vllm_timeout``            seconds without a byte from the server before a request fails (600)
``vllm_health_timeout``     external: seconds ``load()`` waits for ``/health`` (30)
``vllm_start_timeout``      managed: seconds to wait for a started container (1800)
``vllm_poll_seconds``       how often health and the container are checked (1.0)
``vllm_image``              container image (default ``VLLM_IMAGE``)
``vllm_port``               host port to publish on 127.0.0.1 (default: a free one)
``vllm_shm_size``           container /dev/shm (``2g``)
``vllm_stop_timeout``       seconds ``stop()`` waits before it kills (30)
``vllm_pull``               pull the image when it is missing (True)
``model``                   hub id or local folder (default ``rednote-hilab/dots.ocr``)
``revision``                managed, hub id: the pinned 40-hex commit (required; also read
                            as ``model_revision``)
``cache_dir``               host folder mounted as the container's ``/root/.cache/huggingface``
``allow_download``          False sets ``HF_HUB_OFFLINE=1`` in the container
``hf_token``                passed as ``HF_TOKEN``
``device_index``            the GPU the container gets (0)
``vllm_args``               the launch flags (``Plan.vllm_args()``; ``Plan.as_json()`` has them);
                            without it they are built from ``gpu_memory_utilization``,
                            ``max_model_len``, ``max_num_seqs``, ``max_num_batched_tokens``,
                            ``dtype``, ``quantization``, ``enforce_eager``, ``max_pixels`` and
                            ``mm_processor_kwargs``
``max_pixels``              largest image sent (also the processor's limit)
``max_new_tokens``          the answer budget (``max_completion_tokens``)
``estimated_bytes``         what ``memory_estimate()`` reports for a managed server
``pages_at_once``           how many pages of a document are sent at once (the planner's,
                            from the KV-cache budget; 1 without it)
``loop_window``,            the loop guard (core/loopguard.py): a page whose streamed answer
``loop_ngram``,             repeats, or runs past ``page_time_limit`` seconds, is aborted and
``page_time_limit``         keeps the text that came before
=========================== ============================================================

Grounding (mode ``grounding``) needs a box: ``ocr(..., bbox=[x1, y1, x2, y2])`` in the pixels of
the image given to ``ocr()`` (as the transformers backend takes it), scaled here to the image sent;
or ``sent_bbox=[...]`` already in the pixels of the image the model is sent
(``fit_for_model(image, max_pixels)``), put in the prompt as is. ``details["bbox_sent"]`` is the box
the model was asked about.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from PIL import Image

from core import catalog
from core.backends import VLLM
from core.dots.prompts import GROUNDING, MODES, prompt_for, system_prompt_for
from core.dots.resize import MAX_PIXELS, fit_for_model, image_tokens
from core.loopguard import LoopGuard, LoopSettings
from core.results import BackendError, CancelCheck, JobCancelled, OcrResult, ProgressCallback
from workers.backends.base import OcrBackend
from workers.backends.pagereading import PageEvent, PageInput, read_concurrently
from workers.backends.vllm.client import (
    DEFAULT_TIMEOUT,
    SERVED_MODEL_NAME,
    VllmClient,
    VllmServerError,
)
from workers.backends.vllm.launcher import DEFAULT_POLL_SECONDS, ManagedServer, build_launch

log = logging.getLogger(__name__)

# Room for the chat template and the longest prompt (the planner's prompt budget).
PROMPT_TOKEN_BUDGET = 512
DEFAULT_HEALTH_TIMEOUT = 30.0


class VllmBackend(OcrBackend):
    name = VLLM.name

    def __init__(
        self,
        docker_client_factory: Callable[[], Any] | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._sleep = sleep
        self._clock = clock
        self._server = ManagedServer(docker_client_factory, sleep=sleep, clock=clock)
        self._client: VllmClient | None = None
        self._plan: dict[str, Any] = {}
        self._key: tuple[Any, ...] | None = None
        #: "external" or "managed" once loaded.
        self.mode: str | None = None

    # -- state -----------------------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._client is not None

    @property
    def client(self) -> VllmClient | None:
        return self._client

    @property
    def container(self) -> Any:
        """The managed server's container (None for an external server)."""
        return self._server.container

    @property
    def log_tail(self) -> list[str]:
        """The last lines of the managed server's log, for the dashboard."""
        return self._server.log_tail

    def memory_estimate(self) -> int:
        if self.mode == "managed":
            return int(self._plan.get("estimated_bytes") or 0)
        return 0

    # -- loading ---------------------------------------------------------------------------------

    def load(self, plan: dict[str, Any], progress: ProgressCallback | None = None) -> None:
        plan = _plan_dict(plan)
        report = progress or (lambda done, total, message: None)
        url = (plan.get("vllm_url") or "").strip()
        if url:
            key: tuple[Any, ...] = ("external", url, plan.get("vllm_model_name"))
        else:
            key = ("managed", build_launch(plan).config_hash)
        if self.loaded and key == self._key:
            self._plan = plan
            return
        if self.loaded:
            self.unload()
        if url:
            self._load_external(plan, url, report)
        else:
            self._load_managed(plan, report)
        self._plan = plan
        self._key = key

    def _new_client(self, plan: dict[str, Any], url: str) -> VllmClient:
        return VllmClient(
            url,
            model_name=str(plan.get("vllm_model_name") or SERVED_MODEL_NAME),
            timeout=float(plan.get("vllm_timeout") or DEFAULT_TIMEOUT),
            api_key=plan.get("vllm_api_key") or None,
        )

    def _load_external(self, plan: dict[str, Any], url: str, report: ProgressCallback) -> None:
        client = self._new_client(plan, url)
        wait = float(plan.get("vllm_health_timeout") or DEFAULT_HEALTH_TIMEOUT)
        poll = float(plan.get("vllm_poll_seconds") or DEFAULT_POLL_SECONDS)
        report(0, 0, f"Waiting for the vLLM server at {client.base_url}")
        deadline = self._clock() + wait
        while True:
            reason = client.health_reason()
            if not reason:
                break
            if self._clock() >= deadline:
                raise BackendError(
                    f"The vLLM server at {client.base_url} does not answer ({reason}; waited {wait:g} s for "
                    "/health). Check that it is running and that OCRDASH_VLLM_URL is right, or clear "
                    "OCRDASH_VLLM_URL to let ocrdash start its own server."
                )
            self._sleep(poll)
        self._check_model(client)
        self._client = client
        self.mode = "external"
        report(1, 1, f"Using the vLLM server at {client.base_url}")

    def _check_model(self, client: VllmClient) -> None:
        served = [str(m.get("id")) for m in client.models()]
        if client.model_name in served:
            return
        if len(served) == 1:
            # An external server named the model its own way ("model", the hub id, …).
            log.info("vLLM at %s serves %r, not %r; using it", client.base_url, served[0], client.model_name)
            client.model_name = served[0]
            client.models()  # learn its max_model_len under that name
            return
        raise BackendError(
            f"The vLLM server at {client.base_url} does not serve a model named {client.model_name!r} "
            f"(it serves: {', '.join(served) or 'nothing'}). Set the served model name in the settings."
        )

    def _load_managed(self, plan: dict[str, Any], report: ProgressCallback) -> None:
        url = self._server.start(plan, report)
        client = self._new_client(plan, url)
        try:
            self._check_model(client)
        except BaseException:
            self._server.stop()
            raise
        self._client = client
        self.mode = "managed"
        container, launch = self._server.container, self._server.launch
        report(1, 1, f"vLLM is ready ({container.name}, GPU {launch.device_index})")

    def _server_failed(self, exc: VllmServerError) -> VllmServerError:
        """A request failed: when the managed container has stopped, say so, with its log."""
        container = self._server.container
        if self.mode != "managed" or container is None:
            return exc
        exited = self._server.exited()
        if exited is None:
            return exc
        status, text = exited
        oom = exc.out_of_memory or bool(re.search(r"out of memory|OutOfMemoryError", text, re.I))
        message = f"The vLLM container {container.name} stopped during this page ({status})."
        if oom:
            message += " The GPU ran out of memory (CUDA out of memory)."
        if self.log_tail:
            message += "\nIts last log lines:\n" + "\n".join(self.log_tail)
        # It is gone: the next load() starts a new one.
        self.unload()
        return VllmServerError(message, url=exc.url, status=exc.status, out_of_memory=oom)

    def unload(self) -> None:
        self._server.stop()
        self._client = None
        self._key = None
        self.mode = None

    # -- recognition -----------------------------------------------------------------------------

    def pages_at_once(self) -> int:
        return max(1, int(self._plan.get("pages_at_once") or 1))

    def read_pages(
        self,
        pages: Iterable[PageInput],
        mode: str,
        cancel: CancelCheck,
        *,
        bbox: Sequence[float] | None = None,
        question: str | None = None,
    ) -> Iterator[PageEvent]:
        """The pages of a document sent concurrently, up to `pages_at_once` (the server batches them
        on the GPU); a cancel aborts every request in flight."""

        def read_one(image: Image.Image, check: CancelCheck) -> OcrResult:
            return self.ocr(image, mode, check, bbox=bbox, question=question)

        return read_concurrently(pages, read_one, cancel, self.pages_at_once())

    def ocr(
        self,
        image: Image.Image,
        mode: str,
        cancel: CancelCheck,
        *,
        bbox: Sequence[float] | None = None,
        sent_bbox: Sequence[float] | None = None,
        question: str | None = None,
    ) -> OcrResult:
        """Read one page. For ``grounding``, `bbox` is the box in the pixels of `image`, or
        `sent_bbox` the box in the pixels of the image sent (after ``fit_for_model``)."""
        if self._client is None:
            raise BackendError("The vLLM backend is not loaded.")
        if mode not in MODES:
            raise BackendError(f"Unknown OCR mode {mode!r}; known: {', '.join(MODES)}.")
        if cancel():
            raise JobCancelled()
        plan = self._plan
        max_pixels = int(plan.get("max_pixels") or MAX_PIXELS)
        try:
            sent, sx, sy = fit_for_model(image, max_pixels=max_pixels)
        except ValueError as exc:
            raise BackendError(f"This page cannot be sent to the model: {exc}.") from exc

        box = None
        given = bbox if bbox is not None else sent_bbox
        if mode != GROUNDING and given is not None:
            raise BackendError(f"The {mode} mode reads the whole page and takes no box.")
        if mode == GROUNDING:
            if given is None or len(given) != 4:
                raise BackendError("Grounding needs a box [x1, y1, x2, y2] to read the text from.")
            if bbox is not None:
                x1, y1, x2, y2 = (float(v) for v in bbox)
                given = [x1 / sx, y1 / sy, x2 / sx, y2 / sy]
            box = [int(round(float(v))) for v in given]
        try:
            prompt = prompt_for(mode, box, size=image.size, question=question)
        except ValueError as exc:
            raise BackendError(str(exc)) from exc
        sampling = catalog.for_setting(str(plan.get("model") or "")).sampling_for(mode)

        client = self._client
        max_tokens = int(plan.get("max_new_tokens") or 24_000)
        tokens = image_tokens(sent.height, sent.width)
        if client.max_model_len:
            room = client.max_model_len - tokens - PROMPT_TOKEN_BUDGET
            if room < 1:
                raise BackendError(
                    f"The page is too large for the vLLM server at {client.base_url}: {tokens:,} image "
                    f"tokens do not fit its context of {client.max_model_len:,} tokens. Lower the largest "
                    "image size."
                )
            max_tokens = min(max_tokens, room)

        started = time.monotonic()
        guard = LoopGuard(LoopSettings.from_plan(plan))
        try:
            answer = client.complete(
                sent,
                prompt,
                max_tokens,
                sampling.temperature,
                sampling.top_p,
                cancel,
                guard=guard,
                system=system_prompt_for(mode),
            )
        except VllmServerError as exc:
            raise self._server_failed(exc) from exc
        seconds = time.monotonic() - started
        details: dict[str, Any] = {
            "backend": self.name,
            "mode": mode,
            "server": client.base_url,
            "model": client.model_name,
            "image_size_sent": [sent.width, sent.height],
            "scale": [sx, sy],
            "usage": answer.usage,
            "finish_reason": answer.finish_reason,
            "truncated": answer.truncated,
            "max_tokens": max_tokens,
            "seconds": round(seconds, 3),
        }
        if box is not None:
            details["bbox_sent"] = box
        if answer.stopped is not None:
            details["stopped"] = answer.stopped.as_json()
            details["warning"] = answer.stopped.message
        elif answer.truncated:
            details["warning"] = (
                f"The answer was cut at {max_tokens:,} tokens (the output budget); the end of the page may be missing."
            )
        return OcrResult(text=answer.text, raw=answer.text, details=details)


def _plan_dict(plan: Any) -> dict[str, Any]:
    """Accept a dict, or a core.planner.Plan (its as_json() holds every key read here)."""
    if isinstance(plan, dict):
        return dict(plan)
    if hasattr(plan, "as_json"):
        return dict(plan.as_json())
    raise TypeError(f"a plan must be a dict, not {type(plan).__name__}")
