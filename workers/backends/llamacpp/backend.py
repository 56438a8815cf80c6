"""The llama.cpp backend: dots.ocr from a GGUF language model and its GGUF vision projector, with
`gpu_layers` of the language model's layers (and the projector, when the plan says it fits) on the
GPU and the rest on the CPU with every core.

Plan keys read by `load()` (a planner plan's `as_json()` plus where the files are, from
ocr_app/backendconfig.py `load_args`):

- `lm_path`, `mmproj_path`: the two GGUF files (checked before llama.cpp sees them:
  workers/backends/llamacpp/gguf_header.py);
- `gpu_layers` (0 … `total_layers`), `projector_on_gpu`, `n_ctx`, `device_index`;
- `max_pixels`, `max_new_tokens`, `estimated_bytes`, `quantization`.

A page is read the way the other backends read it: the image resized by
`core.dots.resize.fit_for_model`, the task prompt of `core.dots.prompts`, greedy decoding, the raw
answer returned for core/readpage.py to parse. llama.cpp's multimodal library (mtmd) encodes the
image and adds dots.ocr's `<|img|>`/`<|endofimg|>` around it itself, so the chat template here only
places its media marker before the prompt (dots.ocr's own template accepts text contents only).

Generation is a stream of tokens (`generation.stream_tokens`): `cancel()` and an optional per-token
hook are asked after each one; closing the stream stops llama.cpp at once.
"""

from __future__ import annotations

import base64
import gc
import io
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from core.backends import LLAMACPP
from core.dots import prompts
from core.dots.resize import MAX_PIXELS, image_tokens
from core.loopguard import LoopGuard, LoopSettings
from core.modelfacts import DOTS_OCR
from core.results import BackendError, CancelCheck, JobCancelled, OcrResult, ProgressCallback
from workers.backends.base import OcrBackend
from workers.backends.llamacpp.generation import TokenHook, stream_tokens
from workers.backends.llamacpp.gguf_header import GgufError, check_pair
from workers.backends.sentpage import check_task, sent_page

log = logging.getLogger(__name__)

FETCH_COMMAND = "python manage.py fetch_model --gguf"
# dots.ocr's answer ends with this token (generation_config.json's second end token).
END_OF_ANSWER = "<|endofassistant|>"
# The prompt as dots.ocr's processor template lays it out, with mtmd's media marker where the image
# goes: <|user|>[image]prompt<|endofuser|><|assistant|>.
CHAT_TEMPLATE = (
    "{%- for m in messages %}{%- if m.role == 'user' %}{{- '<|user|>' }}"
    "{%- for part in m.content %}{{- part.text }}{%- endfor %}{{- '<|endofuser|>' }}{%- endif %}{%- endfor %}"
    "{{- '<|assistant|>' }}"
)


def _pair_paths(plan: dict[str, Any]) -> tuple[Path, Path]:
    lm, mmproj = plan.get("lm_path"), plan.get("mmproj_path")
    if not lm or not mmproj:
        raise BackendError("The llama.cpp plan names no GGUF files (lm_path and mmproj_path).")
    lm_path, mmproj_path = Path(str(lm)).expanduser(), Path(str(mmproj)).expanduser()
    missing = [p for p in (lm_path, mmproj_path) if not p.is_file()]
    if missing:
        names = " and ".join(str(p) for p in missing)
        raise BackendError(
            f"The GGUF file{'s' if len(missing) > 1 else ''} {names} {'are' if len(missing) > 1 else 'is'} not "
            f"there. Download the pair with: {FETCH_COMMAND}, or copy both files into {missing[0].parent}."
        )
    return lm_path, mmproj_path


class LlamaCppBackend(OcrBackend):
    name = LLAMACPP.name

    def __init__(self) -> None:
        self._llm = None
        self._handler = None
        self._plan: dict[str, Any] = {}
        self._identity: tuple | None = None
        self._end_of_answer: int | None = None
        #: Called with (piece of text, tokens so far) after every generated token; may raise to stop.
        self.on_token: TokenHook | None = None

    @property
    def loaded(self) -> bool:
        return self._llm is not None

    def load(self, plan: dict[str, Any], progress: ProgressCallback | None = None) -> None:
        lm_path, mmproj_path = _pair_paths(plan)
        gpu_layers = max(0, int(plan.get("gpu_layers") or 0))
        projector_on_gpu = bool(plan.get("projector_on_gpu")) and gpu_layers > 0
        n_ctx = int(plan.get("n_ctx") or DOTS_OCR.max_image_tokens + DOTS_OCR.prompt_token_budget + 4096)
        device = int(plan.get("device_index") or 0)
        identity = (str(lm_path), str(mmproj_path), gpu_layers, projector_on_gpu, n_ctx, device)
        if self.loaded and identity == self._identity:
            self._plan = dict(plan)
            return
        self.unload()

        def report(done: int, message: str) -> None:
            if progress is not None:
                progress(done, 3, message)

        report(0, f"Checking the GGUF pair {lm_path.name} + {mmproj_path.name}")
        try:
            check_pair(lm_path, mmproj_path)
        except GgufError as exc:
            raise BackendError(f"The GGUF pair cannot be used: {exc}. Download it again with: {FETCH_COMMAND}") from exc
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise BackendError(
                "llama-cpp-python is not installed in the worker (python3 ocrdash.py start --with-gguf installs it)."
            ) from exc

        _quiet_mtmd()
        threads = _cores()
        where = "the CPU" if gpu_layers == 0 else f"{gpu_layers} layers on GPU {device}"
        report(1, f"Loading {lm_path.name} ({where}, {threads} CPU threads)")
        handler = _DotsChatHandler(clip_model_path=str(mmproj_path), verbose=False, use_gpu=projector_on_gpu)
        try:
            llm = Llama(
                model_path=str(lm_path),
                chat_handler=handler,
                n_gpu_layers=gpu_layers,
                main_gpu=device,
                n_ctx=n_ctx,
                n_threads=threads,
                n_threads_batch=threads,
                flash_attn=True,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise BackendError(f"llama.cpp could not load {lm_path.name} with {where}: {exc}") from exc
        report(2, f"Loading the vision projector {mmproj_path.name} ({'GPU' if projector_on_gpu else 'CPU'})")
        try:
            handler._init_mtmd_context(llm)
        except (ValueError, RuntimeError, OSError) as exc:
            llm.close()
            raise BackendError(f"llama.cpp could not load the vision projector {mmproj_path.name}: {exc}") from exc
        self._llm, self._handler = llm, handler
        self._end_of_answer = _single_token(llm, END_OF_ANSWER)
        self._identity, self._plan = identity, dict(plan)
        report(3, f"dots.ocr ({plan.get('quantization') or 'GGUF'}) is ready in llama.cpp ({where})")

    def unload(self) -> None:
        llm, self._llm, self._handler, self._identity = self._llm, None, None, None
        if llm is not None:
            llm.close()  # frees the projector too; without it the binding's __del__ fails at exit
        gc.collect()

    def memory_estimate(self) -> int:
        if not self.loaded or not self._plan.get("gpu_layers"):
            return 0
        return int(self._plan.get("estimated_bytes") or 0)

    def ocr(
        self,
        image: Image.Image,
        mode: str,
        cancel: CancelCheck,
        *,
        bbox: Sequence[float] | None = None,
        question: str | None = None,
    ) -> OcrResult:
        """Read one page (the same contract and `details` as the transformers backend's)."""
        if not self.loaded:
            raise BackendError("dots.ocr is not loaded.")
        check_task(mode, bbox)
        if cancel():
            raise JobCancelled()

        max_pixels = int(self._plan.get("max_pixels") or MAX_PIXELS)
        max_new_tokens = int(self._plan.get("max_new_tokens") or DOTS_OCR.default_max_new_tokens)
        sent = sent_page(image, mode, bbox, question, max_pixels)
        resized, box, prompt = sent.image, sent.box, sent.prompt
        system = prompts.system_prompt_for(mode)
        tokens = image_tokens(resized.height, resized.width)
        messages = [{"role": "system", "content": system}] if system else []
        messages += [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": _data_url(resized)}},
                    {"type": "text", "text": prompt},
                ],
            }
        ]
        llm = self._llm
        started = time.monotonic()
        try:
            stream = llm.create_chat_completion(
                messages=messages,
                stream=True,
                max_tokens=max_new_tokens,
                temperature=0.0,
                repeat_penalty=1.0,
                stop=[END_OF_ANSWER],
                logits_processor=_end_after(self._end_of_answer, llm.token_eos()),
            )
            # The handler has encoded the image and read the prompt by now; the stream generates.
            prompt_length = int(llm.n_tokens)
            if cancel():
                stream.close()
                raise JobCancelled()
            guard = LoopGuard(LoopSettings.from_plan(self._plan))
            generated = stream_tokens(_pieces(stream), cancel, self.on_token, guard)
        except JobCancelled:
            raise
        except (ValueError, RuntimeError) as exc:
            log.exception("llama.cpp failed on a page")
            raise BackendError(f"llama.cpp failed on this page: {exc}") from exc
        finished = time.monotonic()
        new_tokens = max(generated.count, int(llm.n_tokens) - prompt_length)
        first = generated.first_at
        decoding = first is not None and generated.count > 1 and finished > first
        sent = [resized.width, resized.height]
        details = {
            "backend": self.name,
            "quantization": str(self._plan.get("quantization") or "GGUF"),
            "device": "CPU" if not self._plan.get("gpu_layers") else f"cuda:{self._plan.get('device_index') or 0}",
            "gpu_layers": int(self._plan.get("gpu_layers") or 0),
            "image_size_sent": sent,
            "scale": [image.width / sent[0], image.height / sent[1]],
            "image_tokens": tokens,
            "prompt_tokens": prompt_length,
            "new_tokens": new_tokens,
            "max_new_tokens": max_new_tokens,
            "hit_token_limit": generated.finish_reason == "length",
            "seconds": round(finished - started, 3),
            "first_token_seconds": round(first - started, 3) if first else None,
            "tokens_per_second": round((generated.count - 1) / (finished - first), 2) if decoding else None,
            "peak_gpu_bytes": None,
        }
        if box is not None:
            details["bbox_sent"] = [int(round(v)) for v in box]
        if generated.stopped is not None:
            details["stopped"] = generated.stopped.as_json()
        return OcrResult(text=generated.text, raw=generated.text, details=details)


def _quiet_mtmd() -> None:
    """mtmd logs every image batch to stderr itself; send it through llama-cpp-python's logger,
    which prints errors only unless verbose."""
    import ctypes

    from llama_cpp import _logger, mtmd_cpp

    mtmd_cpp.mtmd_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))
    mtmd_cpp.mtmd_helper_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))


def _cores() -> int:
    """The cores this process may run on (a container's CPU set, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _single_token(llm, text: str) -> int | None:
    ids = llm.tokenize(text.encode(), add_bos=False, special=True)
    return ids[0] if len(ids) == 1 else None


def _end_after(end_of_answer: int | None, eos: int):
    """A logits processor that ends the answer after <|endofassistant|>: llama.cpp stops on its end
    tokens (EOG), and dots.ocr's end of answer is not one of them, while generation_config.json
    lists it with <|endoftext|>. Returns None when the vocabulary has no such token."""
    if end_of_answer is None:
        return None
    import numpy as np
    from llama_cpp import LogitsProcessorList

    def force_end(input_ids, scores):
        if len(input_ids) and int(input_ids[-1]) == end_of_answer:
            forced = np.full_like(scores, -np.inf)
            forced[eos] = 0.0
            return forced
        return scores

    return LogitsProcessorList([force_end])


def _data_url(image: Image.Image) -> str:
    """The page as a PNG data URL: the only kind of address the handler is given (it would fetch others)."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _pieces(stream) -> Any:
    """(text piece, finish reason) from the chat completion chunks, one per token; the generator
    keeps `close()` so the caller can stop llama.cpp."""
    try:
        for chunk in stream:
            choice = chunk["choices"][0]
            yield choice.get("delta", {}).get("content") or "", choice.get("finish_reason")
    finally:
        stream.close()


def _make_handler_class():
    from llama_cpp.llama_chat_format import MTMDChatHandler

    class DotsChatHandler(MTMDChatHandler):
        """MTMDChatHandler with a template that places the image marker (dots.ocr's own takes strings only)."""

        def _get_chat_template(self, llama_model) -> str:
            return CHAT_TEMPLATE

    return DotsChatHandler


def _DotsChatHandler(**kwargs):  # noqa: N802 - built on first use: llama_cpp is imported only when loading
    return _make_handler_class()(**kwargs)
