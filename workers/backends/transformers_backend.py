"""dots.ocr in the worker process, through transformers: on a CUDA GPU (bf16, 8-bit, 4-bit) or on the CPU.

The model is loaded the way dots.ocr's own `demo/demo_hf.py` and `dots_ocr/parser.py` load it:
`AutoModelForCausalLM` and `AutoProcessor` with `trust_remote_code=True`, which imports the Python
files of the model repository (`configuration_dots.py`, `modeling_dots_ocr.py`,
`modeling_dots_vision.py`). Because that runs the repository's code, a hub model must be pinned
to a commit hash (plan key `revision`); a local folder is the admin's own copy and needs none.
Nothing is downloaded here: a model that is not on disk is refused with the command that fetches
it (`python manage.py fetch_model`).

Plan keys read by `load()` (a planner plan's `as_json()` plus the model settings):

- `model`: hub id ("rednote-hilab/dots.ocr") or local folder; `revision`: commit hash (hub ids);
  `cache_dir`: the Hugging Face cache folder (default: the library's own).
- `quantization`: "bf16", "fp16", "int8" or "nf4" (transformers backend), None / "float32" (cpu);
  `dtype`: "bfloat16" / "float16" (the compute dtype on GPUs without bf16), "float32" (cpu).
- `device_index`: the GPU to load on (default 0); `max_memory` is recorded, not given to
  accelerate (see `TransformersBackend._load_kwargs`).
- `max_pixels` (the largest image sent, derived by the planner from the memory left) and
  `max_new_tokens` (the output budget); `estimated_bytes` for `memory_estimate()`.
- `pages_at_once` (the planner's batch size for `read_pages`), `loop_window`, `loop_ngram` and
  `page_time_limit` (the loop guard, core/loopguard.py), `fast_decode` (a static KV cache with
  torch.compile, workers/backends/hf_generate.py).

Three facts about dots.ocr's remote code that shape this module:

1. Its vision tower's `forward(hidden_states, grid_thw, bf16=True)` starts with
   `hidden_states = hidden_states.bfloat16()`, and `DotsOCRForCausalLM.prepare_inputs_embeds`
   calls it without the flag. A tower in float32 (the CPU) or float16 (GPUs without bf16) then
   fails in its first convolution ("Input type (c10::BFloat16) and bias type (float) should be the
   same"). A forward pre-hook on the tower casts the pixel values to the dtype of the tower's
   first weights and passes `bf16=False` (`_match_vision_input_dtype`); a bf16 tower, quantized or
   not, is left as the authors run it.
2. Its vision config names its own attention implementation ("flash_attention_2" in the published
   config.json), apart from the `attn_implementation` argument that reaches the language model;
   without the flash-attn package the tower must be told "sdpa" on the loaded config.
3. Its processor class (`DotsVLProcessor`) is registered with `AutoProcessor` when
   `configuration_dots.py` is imported. `AutoProcessor.from_pretrained` on a folder whose config
   module was not imported yet quietly returns the bare tokenizer, so the configuration is always
   loaded first, and a processor without an image processor is refused.
4. Without flash-attn its vision attention ("sdpa" or "eager") computes an N × N score matrix per
   head over all patches (47 GiB peak for one A4 page at 200 dpi, measured on an H200);
   `workers.backends.vision_attention` makes it per-image fused attention, linear in the patches.

`ocr()` follows `_inference_with_hf` of dots_ocr/parser.py: the image (resized by
`core.dots.resize.fit_for_model` to at most the plan's max_pixels) and the task prompt go
through the processor's chat template; the processor widens the one `<|imgpad|>` to one pad token
per 28×28 pixels; the new tokens are decoded without special tokens. Decoding is greedy, so a page
reads the same each time (dots.ocr's vLLM helper samples at temperature 0.1, close to greedy).
"""

from __future__ import annotations

import gc
import importlib.util
import inspect
import logging
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from core import results
from core.backends import CPU, TRANSFORMERS
from core.dots import prompts
from core.dots.resize import MAX_PIXELS, MIN_PIXELS, image_tokens
from core.loopguard import LoopSettings
from core.modelfacts import DOTS_OCR
from core.results import BackendError, CancelCheck, JobCancelled, OcrResult, ProgressCallback
from workers.backends.base import OcrBackend
from workers.backends.hf_generate import generate_batch
from workers.backends.pagereading import DONE, FAILED, STARTED, PageEvent, PageInput
from workers.backends.sentpage import check_task, sent_page
from workers.backends.vision_attention import use_per_image_attention

log = logging.getLogger(__name__)

FETCH_COMMAND = "python manage.py fetch_model"
DEFAULT_MODEL = DOTS_OCR.name
DEFAULT_MAX_NEW_TOKENS = DOTS_OCR.default_max_new_tokens
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

GPU_QUANTIZATIONS = ("bf16", "fp16", "int8", "nf4")
_DTYPE_NAMES = {"bfloat16": "bfloat16", "bf16": "bfloat16", "float16": "float16", "fp16": "float16",
                "half": "float16", "float32": "float32", "fp32": "float32"}  # fmt: skip


class OutOfMemory(results.OutOfMemory):
    """CUDA ran out of memory while loading or reading a page (results.OutOfMemory, with the size).

    The worker may retry once with a smaller image, then fall back to the next backend of the
    plan (core.planner.replan_after_oom). `image_size` is the [width, height] that was sent
    (None while loading) and `image_tokens` the tokens it became.
    """

    def __init__(self, message: str, image_size: list[int] | None = None, image_tokens: int | None = None):
        super().__init__(message)
        self.image_size = image_size
        self.image_tokens = image_tokens


@dataclass(frozen=True)
class ModelSource:
    """Where the weights and the remote code come from."""

    location: str
    revision: str | None
    cache_dir: str | None
    local: bool

    def describe(self) -> str:
        if self.local:
            return f"the model folder {self.location}"
        return f"{self.location} at revision {self.revision}"


def model_source(plan: dict[str, Any]) -> ModelSource:
    """The model named by the plan, checked: a local folder that exists, or a hub id with a pinned commit."""
    location = str(plan.get("model") or DEFAULT_MODEL).strip()
    revision = (plan.get("revision") or "").strip() or None
    cache_dir = plan.get("cache_dir") or None
    path = Path(location).expanduser()
    if path.exists():
        if not path.is_dir():
            raise BackendError(f"The dots.ocr model location {location} is a file, not a model folder.")
        return ModelSource(str(path), None, None, local=True)
    if not _HUB_ID.match(location):
        raise BackendError(
            f"The dots.ocr model folder {location} does not exist. Download the model with: {FETCH_COMMAND}"
        )
    if revision is None or not _COMMIT.match(revision):
        shown = f"revision {revision!r}" if revision else "no revision"
        raise BackendError(
            f"The model {location} is set with {shown}. Loading it runs Python code from the model "
            "repository (trust_remote_code), so the revision must be pinned to a full 40-character "
            "commit hash: then that code cannot change under the worker."
        )
    return ModelSource(location, revision, str(cache_dir) if cache_dir else None, local=False)


def _missing_model_error(source: ModelSource, exc: BaseException) -> BackendError:
    if source.local:
        why = _first_line(exc)
    else:
        why = f"not found in the Hugging Face cache {source.cache_dir or '(the default one)'}"
    return BackendError(
        f"dots.ocr ({source.describe()}) is not on this machine or is incomplete: {why}. "
        f"Download it with: {FETCH_COMMAND}"
    )


def _transformers_version() -> str:
    import transformers

    return transformers.__version__


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _torch_dtype(name: str):
    import torch

    return getattr(torch, _DTYPE_NAMES[name])


def _match_vision_input_dtype(model):
    """Make dots.ocr's vision tower take pixel values in its own dtype (see fact 1 in the module doc).

    Returns the hook handle, or None when nothing needs changing (no tower, or a bf16 tower).
    """
    import torch

    tower = getattr(model, "vision_tower", None)
    if tower is None:
        return None
    target = next((p.dtype for p in tower.parameters() if p.is_floating_point()), None)
    if target is None or target == torch.bfloat16:
        return None
    try:
        params = list(inspect.signature(tower.forward).parameters)
    except (TypeError, ValueError):
        params = []
    flag_at = params.index("bf16") if "bf16" in params else None

    def cast_pixels(module, args, kwargs):
        if args:
            args = (args[0].to(target), *args[1:])
        elif kwargs.get("hidden_states") is not None:
            kwargs["hidden_states"] = kwargs["hidden_states"].to(target)
        if flag_at is not None:
            if len(args) > flag_at:
                args = (*args[:flag_at], False, *args[flag_at + 1 :])
            else:
                kwargs["bf16"] = False
        return args, kwargs

    return tower.register_forward_pre_hook(cast_pixels, with_kwargs=True)


class TransformersBackend(OcrBackend):
    """dots.ocr on one CUDA GPU in bf16 (fp16 on cards without bf16), bitsandbytes 8-bit or 4-bit nf4."""

    name = TRANSFORMERS.name

    def __init__(self) -> None:
        self._model: Any = None
        self.vision_attention_patched = 0
        self._processor: Any = None
        self._hooks: list[Any] = []
        self._identity: tuple | None = None
        self._plan: dict[str, Any] = {}
        self._device: str = "cpu"
        self._quantization: str = ""
        self._dtype_name: str = ""
        self.source: ModelSource | None = None

    # -- placement ---------------------------------------------------------------------------

    def _placement(self, plan: dict[str, Any]) -> tuple[str, str, str]:
        """(device, quantization, compute dtype name) for this backend, or BackendError."""
        import torch

        quantization = str(plan.get("quantization") or "bf16").lower()
        if quantization not in GPU_QUANTIZATIONS:
            raise BackendError(
                f"The transformers backend loads dots.ocr as {', '.join(GPU_QUANTIZATIONS)}, not {quantization!r}."
            )
        if not torch.cuda.is_available():
            if quantization in ("int8", "nf4"):
                bits = "8-bit" if quantization == "int8" else "4-bit"
                raise BackendError(
                    f"{bits} loading ({quantization}) uses bitsandbytes, which needs a CUDA GPU, and none is "
                    "visible to the worker. Use the cpu backend (float32), or run the worker on a machine "
                    "with an NVIDIA GPU."
                )
            raise BackendError(
                "The transformers backend runs dots.ocr on a CUDA GPU, and none is visible to the worker. "
                "Use the cpu backend for the CPU."
            )
        index = int(plan.get("device_index") or 0)
        if index >= torch.cuda.device_count():
            raise BackendError(
                f"The plan puts dots.ocr on GPU {index}, but the worker sees {torch.cuda.device_count()} GPU(s)."
            )
        default = "float16" if quantization == "fp16" else "bfloat16"
        dtype = _DTYPE_NAMES.get(str(plan.get("dtype") or default).lower())
        if dtype not in ("bfloat16", "float16"):
            raise BackendError(f"dots.ocr runs on the GPU in bfloat16 or float16, not {plan.get('dtype')!r}.")
        if quantization in ("int8", "nf4") and importlib.util.find_spec("bitsandbytes") is None:
            raise BackendError(
                f"{quantization} loading needs the bitsandbytes package, which is not installed "
                "(pip install bitsandbytes)."
            )
        return f"cuda:{index}", quantization, dtype

    def _load_kwargs(self, device: str, quantization: str, dtype: str) -> dict[str, Any]:
        """from_pretrained arguments for the placement.

        The whole model goes on the planned GPU (device_map {"": index}). The plan's max_memory is
        not handed to accelerate: with a string device_map accelerate would place the layers that
        do not fit on the CPU or disk instead of failing, which turns a memory problem into pages
        that take many minutes; the planner has already sized the weights and activations to fit.
        """
        kwargs: dict[str, Any] = {"torch_dtype": _torch_dtype(dtype)}
        if device.startswith("cuda"):
            kwargs["device_map"] = {"": int(device.split(":")[1])}
        if quantization in ("int8", "nf4"):
            from transformers import BitsAndBytesConfig

            if quantization == "int8":
                kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
            else:
                kwargs["quantization_config"] = BitsAndBytesConfig(
                    load_in_4bit=True,
                    bnb_4bit_quant_type="nf4",
                    bnb_4bit_compute_dtype=_torch_dtype(dtype),
                )
        return kwargs

    # -- loading -----------------------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self, plan: dict[str, Any], progress: ProgressCallback | None = None) -> None:
        """Load dots.ocr as the plan says; a model already loaded the same way is kept (only the
        image and output limits are taken from the new plan)."""
        device, quantization, dtype = self._placement(plan)
        source = model_source(plan)
        identity = (source, device, quantization, dtype)
        if self.loaded and identity == self._identity:
            self._plan = dict(plan)
            return
        self.unload()

        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoProcessor

        def report(done: int, message: str) -> None:
            if progress is not None:
                progress(done, 3, message)

        where = {"int8": "8-bit", "nf4": "4-bit (nf4)"}.get(quantization, dtype)
        common: dict[str, Any] = {"trust_remote_code": True, "local_files_only": True}
        if not source.local:
            common.update(revision=source.revision)
            if source.cache_dir:
                common["cache_dir"] = source.cache_dir
        report(0, f"Reading the dots.ocr configuration from {source.describe()}")
        try:
            config = AutoConfig.from_pretrained(source.location, **common)
        except (OSError, ValueError) as exc:
            raise _missing_model_error(source, exc) from exc
        except ImportError as exc:
            raise BackendError(f"dots.ocr's model code needs a package that is not installed: {exc}") from exc
        vision = getattr(config, "vision_config", None)
        if vision is not None and hasattr(vision, "attn_implementation"):
            vision.attn_implementation = "sdpa"  # fact 2: flash-attn is not required

        report(1, f"Loading the dots.ocr weights ({where}) onto {device}")
        model = None
        out_of_memory = None
        try:
            model = AutoModelForCausalLM.from_pretrained(
                source.location,
                config=config,
                attn_implementation="sdpa",
                low_cpu_mem_usage=True,
                **self._load_kwargs(device, quantization, dtype),
                **common,
            )
            model.eval()
        except torch.cuda.OutOfMemoryError as exc:
            # Raised below, once the traceback (and the half-loaded weights its frames hold) is gone.
            out_of_memory = _first_line(exc)
        except OSError as exc:
            raise _missing_model_error(source, exc) from exc
        except ImportError as exc:
            raise BackendError(f"Loading dots.ocr ({where}) needs a package that is not installed: {exc}") from exc
        except (RuntimeError, ValueError) as exc:
            model = None
            self._free_memory()
            log.exception("dots.ocr failed to load")
            raise BackendError(f"dots.ocr ({where}) could not be loaded on {device}: {_first_line(exc)}") from exc

        if out_of_memory is not None:
            self._free_memory()
            raise OutOfMemory(f"CUDA ran out of memory loading dots.ocr ({where}) on {device}: {out_of_memory}")

        report(2, "Loading the dots.ocr processor")
        try:
            processor = AutoProcessor.from_pretrained(source.location, **common)
        except (OSError, ValueError) as exc:
            model = None
            self._free_memory()
            raise _missing_model_error(source, exc) from exc
        except TypeError as exc:
            # Remote code written for a newer transformers: its processor passes Qwen2.5-VL's a video
            # processor, which the pinned version's does not take (docs/models.md, "The transformers pin").
            model = None
            self._free_memory()
            raise BackendError(
                f"The processor code of {source.describe()} does not fit transformers {_transformers_version()} "
                f"(the version ocrdash pins): {_first_line(exc)}. Serve this model with the vLLM backend."
            ) from exc
        if getattr(processor, "image_processor", None) is None:
            model = None
            self._free_memory()
            raise BackendError(
                f"There is no image processor (preprocessor_config.json) in {source.describe()}: it is "
                f"not a complete dots.ocr model. Download it again with: {FETCH_COMMAND}"
            )

        hook = _match_vision_input_dtype(model)
        self._hooks = [hook] if hook is not None else []
        # Fact 4: without flash-attn the tower's attention is quadratic in the patches.
        self.vision_attention_patched = use_per_image_attention(model)
        if not self.vision_attention_patched:
            log.warning("dots.ocr's vision attention was not recognised; it keeps its own (N² memory)")
        self._model, self._processor = model, processor
        self._identity, self._plan, self.source = identity, dict(plan), source
        self._device, self._quantization, self._dtype_name = device, quantization, dtype
        report(3, f"dots.ocr is ready ({where} on {device})")

    def unload(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        self._model = None
        self._processor = None
        self._identity = None
        self._free_memory()

    @staticmethod
    def _free_memory() -> None:
        gc.collect()
        try:
            import torch
        except ImportError:
            return
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def memory_estimate(self) -> int:
        """GPU bytes: the plan's estimate (weights, activations, KV cache, CUDA context), or the
        weights alone when the plan has none."""
        if self._device == "cpu" and self.loaded:
            return 0
        estimated = self._plan.get("estimated_bytes")
        if estimated:
            return int(estimated)
        scheme = self._quantization if self._quantization in ("int8", "nf4") else "bf16"
        return DOTS_OCR.weight_bytes(scheme) if self.loaded else 0

    # -- recognition -------------------------------------------------------------------------

    def ocr(
        self,
        image: Image.Image,
        mode: str,
        cancel: CancelCheck,
        *,
        bbox: Sequence[float] | None = None,
        question: str | None = None,
    ) -> OcrResult:
        """Read one page.

        `mode` is one of core.dots.prompts.MODES (`question`: the user's question for "question").
        For "grounding", `bbox` is the box
        [x1, y1, x2, y2] to read, in pixels of `image` as given here; it is scaled to the resized
        image the model sees. `cancel` is asked before the page, between the vision tower's blocks
        and every few generated tokens (workers/backends/hf_generate.py).

        The result's text and raw are the model's answer as generated (layout JSON for the layout
        modes; parsing is left to the caller). `details`: backend, quantization, device,
        image_size_sent [w, h], scale [sx, sy] (original pixels per pixel sent), image_tokens,
        prompt_tokens, new_tokens, max_new_tokens, hit_token_limit (the answer may be cut off),
        seconds, first_token_seconds (vision encoder and prefill), tokens_per_second (decoding
        after the first token), peak_gpu_bytes (None on the CPU), bbox_sent (grounding),
        stopped (the loop guard stopped the page early: why, after how many tokens), batch.
        """
        return self._read_batch([image], mode, cancel, bbox, question)[0]

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
        """The pages in batches of `pages_at_once` (the planner's), each batch one generate call.
        When CUDA runs out of memory, the batch is halved and tried again; only a single page that
        does not fit raises OutOfMemory (the worker then retries smaller or falls back)."""
        size = self.pages_at_once()
        if size <= 1:
            yield from super().read_pages(pages, mode, cancel, bbox=bbox, question=question)
            return
        source = iter(pages)
        waiting: list[tuple[Any, Image.Image]] = []
        exhausted = False
        while True:
            while not exhausted and len(waiting) < size:
                if cancel():
                    raise JobCancelled()
                try:
                    key, image = next(source)
                except StopIteration:
                    exhausted = True
                    break
                if isinstance(image, BaseException):
                    yield PageEvent(FAILED, key, error=image)
                else:
                    waiting.append((key, image))
            if not waiting:
                return
            batch, waiting = waiting[:size], waiting[size:]
            for key, _ in batch:
                yield PageEvent(STARTED, key)
            try:
                results_ = self._read_batch([image for _, image in batch], mode, cancel, bbox, question)
            except OutOfMemory:
                if size == 1:
                    raise
                size = max(1, size // 2)
                log.warning("CUDA ran out of memory with %d pages in a batch; trying %d", len(batch), size)
                waiting = batch + waiting
                continue
            except BackendError as exc:
                for key, _ in batch:
                    yield PageEvent(FAILED, key, error=exc)
                continue
            for (key, _), result in zip(batch, results_, strict=True):
                yield PageEvent(DONE, key, result=result)

    def _read_batch(
        self,
        images: list[Image.Image],
        mode: str,
        cancel: CancelCheck,
        bbox: Sequence[float] | None,
        question: str | None = None,
    ) -> list[OcrResult]:
        if not self.loaded:
            raise BackendError("dots.ocr is not loaded.")
        check_task(mode, bbox)
        if cancel():
            raise JobCancelled()

        import torch

        max_pixels = int(self._plan.get("max_pixels") or MAX_PIXELS)
        max_new_tokens = int(self._plan.get("max_new_tokens") or DEFAULT_MAX_NEW_TOKENS)
        sent_images, boxes, page_prompts = [], [], []
        for image in images:
            sent = sent_page(image, mode, bbox, question, max_pixels)
            sent_images.append(sent.image)
            boxes.append(sent.box)
            page_prompts.append(sent.prompt)
        tokens = [image_tokens(r.height, r.width) for r in sent_images]
        cuda = self._device.startswith("cuda")
        block_hooks = self._watch_vision_blocks(cancel)
        started = time.monotonic()
        out_of_memory = False
        try:
            if cuda:
                torch.cuda.reset_peak_memory_stats(self._device)
            run = generate_batch(
                self._model,
                self._processor,
                self._device,
                sent_images,
                page_prompts,
                system=prompts.system_prompt_for(mode),
                max_new_tokens=max_new_tokens,
                min_pixels=MIN_PIXELS,
                max_pixels=max_pixels,
                cancel=cancel,
                loop=LoopSettings.from_plan(self._plan),
                fast_decode=bool(self._plan.get("fast_decode")),
            )
        except torch.cuda.OutOfMemoryError:
            # Raised below, once the traceback (and the activations its frames hold) is gone.
            out_of_memory = True
        except RuntimeError as exc:
            log.exception("dots.ocr failed on a page")
            raise BackendError(f"dots.ocr ({self._label()}) failed on this page: {_first_line(exc)}") from exc
        finally:
            for hook in block_hooks:
                hook.remove()
        if out_of_memory:
            self._free_memory()
            first = sent_images[0]
            pages = f"{len(images)} pages" if len(images) > 1 else "a page"
            raise OutOfMemory(
                f"CUDA ran out of memory reading {pages} of {first.width}×{first.height} ({tokens[0]:,} image tokens) "
                f"with dots.ocr {self._label()} on {self._device}.",
                image_size=[first.width, first.height],
                image_tokens=tokens[0],
            )
        finished = time.monotonic()
        if run.cancelled:
            raise JobCancelled()
        seconds = finished - started
        first = run.first_token_at
        peak = int(torch.cuda.max_memory_allocated(self._device)) if cuda else None
        out = []
        for image, page, box, count in zip(images, run.pages, boxes, tokens, strict=True):
            grid = page.grid_thw
            decoding = first is not None and page.new_tokens > 1 and finished > first
            sent = [int(grid[2]) * 14, int(grid[1]) * 14]
            details = {
                "backend": self.name,
                "quantization": self._label(),
                "device": self._device,
                "image_size_sent": sent,
                "scale": [image.width / sent[0], image.height / sent[1]],
                "image_tokens": count,
                "prompt_tokens": page.prompt_tokens,
                "new_tokens": page.new_tokens,
                "max_new_tokens": max_new_tokens,
                "hit_token_limit": page.hit_token_limit,
                "seconds": round(seconds, 3),
                "first_token_seconds": round(first - started, 3) if first else None,
                "tokens_per_second": round((page.new_tokens - 1) / (finished - first), 2) if decoding else None,
                "peak_gpu_bytes": peak,
                "batch": len(images),
                "fast_decode": run.fast_decode,
            }
            if box is not None:
                details["bbox_sent"] = [int(round(v)) for v in box]
            if page.stopped is not None:
                details["stopped"] = page.stopped.as_json()
            out.append(OcrResult(text=page.text, raw=page.text, details=details))
        return out

    def _label(self) -> str:
        return self._quantization

    def _watch_vision_blocks(self, cancel: CancelCheck) -> list[Any]:
        """Ask `cancel` before each block of the vision tower: the encoder of a large page runs for
        minutes on the CPU, before the first token."""
        tower = getattr(self._model, "vision_tower", None)
        blocks = getattr(tower, "blocks", None)
        if blocks is None:
            return []

        def check(module, args):
            if cancel():
                raise JobCancelled()

        return [block.register_forward_pre_hook(check) for block in blocks]


class CpuBackend(TransformersBackend):
    """The same code on the CPU, in float32 (the planner's choice: slow, but needs no GPU).

    `dtype: "bfloat16"` in the plan runs it in bf16 on the CPU instead (half the memory; PyTorch's
    CPU kernels support it, at some cost in speed on processors without bf16 instructions).
    """

    name = CPU.name

    def _placement(self, plan: dict[str, Any]) -> tuple[str, str, str]:
        quantization = str(plan.get("quantization") or "float32").lower()
        if quantization in ("int8", "nf4"):
            raise BackendError(
                f"{quantization} loading uses bitsandbytes, which needs a CUDA GPU; the cpu backend runs "
                "dots.ocr in float32."
            )
        dtype = _DTYPE_NAMES.get(str(plan.get("dtype") or "float32").lower())
        if dtype not in ("float32", "bfloat16"):
            raise BackendError(f"The cpu backend runs dots.ocr in float32 or bfloat16, not {plan.get('dtype')!r}.")
        return "cpu", dtype, dtype

    def _label(self) -> str:
        return self._dtype_name

    def memory_estimate(self) -> int:
        return 0
