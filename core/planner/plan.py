"""The planner's inputs and its answer: the GPU as it sees it (`Device`), the admin's settings
(`PlannerSettings`), the `Plan` that fits, and `PlanRefused` when none does; with the words and
sizes the reasons are written in."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from core.backends import AUTO, LLAMACPP, RAPIDOCR, TRANSFORMERS, VARIANT_BY_KEY, VLLM, Variant, names
from core.gguf_files import QUANTIZATIONS
from core.modelfacts import DOTS_OCR, MIN_USEFUL_PIXELS, GiB, MiB, ModelFacts

# What PlannerSettings.backend may be: a backend's name, or "auto" for the planner's choice.
BACKEND_SETTINGS = (AUTO, *names())


class PlanRefused(Exception):
    """No configuration of the asked-for backend fits; `reasons` says why, in sentences, and
    `headline` is the one that matters most (the first candidate that was tried and did not fit)."""

    def __init__(self, reasons: Sequence[str], backend: str = AUTO, headline: str | None = None):
        self.reasons = list(reasons)
        self.backend = backend
        self.headline = headline or (self.reasons[-1] if self.reasons else "nothing fits")
        super().__init__(self.headline)

    def as_json(self) -> dict[str, Any]:
        return {"refused": True, "backend": self.backend, "headline": self.headline, "reasons": self.reasons}


# -- inputs --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Device:
    """The planner's view of one GPU: any object with these attributes will do (core.gpu.GpuDevice)."""

    index: int
    total_bytes: int
    free_bytes: int
    compute_capability: tuple[int, int] | None = None
    name: str = "GPU"


def devices_of(gpu: Any) -> list[Device]:
    """Accept a core.gpu.GpuSnapshot, a sequence of devices, or None (no GPU)."""
    if gpu is None:
        return []
    items = getattr(gpu, "devices", gpu)
    out = []
    for position, d in enumerate(items):
        if int(d.total_bytes) <= 0:
            continue  # a device that reports no memory (a lost GPU) cannot hold anything
        cc = getattr(d, "compute_capability", None)
        out.append(
            Device(
                index=int(getattr(d, "index", position)),
                total_bytes=int(d.total_bytes),
                free_bytes=max(0, int(d.free_bytes)),
                compute_capability=tuple(cc) if cc else None,
                name=str(getattr(d, "name", None) or f"GPU {position}"),
            )
        )
    return out


@dataclass(frozen=True)
class PlannerSettings:
    # auto / vllm / transformers / cpu / rapidocr
    backend: str = AUTO
    # A vLLM server is managed by ocrdash (or reachable at an external address).
    vllm_allowed: bool = True
    # The server runs elsewhere with its own flags: only the request limits are planned.
    vllm_external: bool = False
    fp8_allowed: bool = True
    # The CPU path is very slow; the admin opts in. RAM available for it (None: unknown).
    allow_cpu: bool = False
    cpu_ram_bytes: int | None = None
    # Memory left for everyone else: reserve_bytes + reserve_fraction × the device's total.
    reserve_bytes: int = 512 * MiB
    reserve_fraction: float = 0.05
    # The largest image the admin allows, and the smallest the planner will shrink to.
    max_pixels: int = DOTS_OCR.max_pixels
    min_pixels: int = MIN_USEFUL_PIXELS
    max_new_tokens: int = DOTS_OCR.default_max_new_tokens
    # The KV cache vLLM is started with holds this many whole pages (the planner raises it to as
    # many pages at once as the memory left holds, up to max_pages_at_once).
    vllm_max_num_seqs: int = 1
    # The most pages of one document read at the same time (vLLM requests in flight, transformers
    # batch size); the planner picks the largest number the memory holds up to this. Each page
    # reserves its whole output budget of KV cache, so the default stays modest: the GPU is shared.
    max_pages_at_once: int = 4
    # Why dots.ocr cannot run inside the worker (torch/transformers not installed, weights not
    # downloaded), in words; None when it can. Rules out the transformers and CPU paths.
    in_process_unavailable: str | None = None
    # Why vLLM is not allowed (no Docker engine, turned off), in words; shown in the reasons.
    vllm_unavailable: str | None = None
    # llama.cpp: why it cannot run here (llama-cpp-python not installed), in words, or None; the
    # quantizations whose GGUF pair is on disk; the catalog model whose GGUF files are planned.
    llamacpp_unavailable: str | None = None
    llamacpp_quantizations: tuple[str, ...] = QUANTIZATIONS
    llamacpp_model: str = DOTS_OCR.name
    facts: ModelFacts = DOTS_OCR

    def __post_init__(self):
        if self.backend not in BACKEND_SETTINGS:
            raise ValueError(f"backend must be one of {', '.join(BACKEND_SETTINGS)}, not {self.backend!r}")
        if self.max_pixels < self.facts.min_pixels:
            raise ValueError(f"max_pixels must be at least {self.facts.min_pixels:,} (dots.ocr's MIN_PIXELS)")
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        if self.vllm_max_num_seqs < 1:
            raise ValueError("vllm_max_num_seqs must be at least 1")
        if self.max_pages_at_once < 1:
            raise ValueError("max_pages_at_once must be at least 1")
        if self.reserve_bytes < 0 or not 0 <= self.reserve_fraction < 1:
            raise ValueError("the reserve must be a non-negative size and a fraction below 1")

    def reserve_for(self, total_bytes: int) -> int:
        return int(self.reserve_bytes + self.reserve_fraction * total_bytes)

    @property
    def cap_tokens(self) -> int:
        return self.facts.tokens_for_pixels(self.max_pixels)

    @property
    def floor_tokens(self) -> int:
        return min(self.cap_tokens, self.facts.tokens_for_pixels(self.min_pixels))


# -- the plan ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    backend: str
    variant: str
    # vLLM: None or "fp8" (the value of --quantization); transformers: "bf16"/"fp16"/"int8"/"nf4".
    quantization: str | None
    dtype: str | None
    device_index: int | None
    device_name: str | None
    max_pixels: int | None
    max_image_tokens: int | None
    max_new_tokens: int | None
    # What the plan takes from the device's free memory (RAM for the CPU path), and what it had.
    estimated_bytes: int
    budget_bytes: int | None
    memory: str  # "gpu", "ram" or "none"
    reasons: tuple[str, ...]
    fallbacks: tuple[str, ...]
    parts: dict[str, int] = field(default_factory=dict)
    # vLLM launch parameters.
    gpu_memory_utilization: float | None = None
    max_model_len: int | None = None
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    enforce_eager: bool | None = None
    kv_cache_bytes: int | None = None
    vllm_external: bool = False
    # transformers: accelerate's max_memory for the weights ({device index: bytes}).
    max_memory: dict[int, int] | None = None
    # llama.cpp: the language model's layers on the GPU of total_layers (28 blocks + the output
    # layer), whether the vision projector is on the GPU and its weights' type, the context size.
    gpu_layers: int | None = None
    total_layers: int | None = None
    projector_on_gpu: bool | None = None
    projector_type: str | None = None
    n_ctx: int | None = None
    # True once a CUDA out-of-memory retry at a smaller image size has been used.
    oom_retried: bool = False
    # How many pages of a document are read at the same time, and why (a sentence of `reasons`).
    pages_at_once: int = 1
    pages_at_once_reason: str = ""
    settings: PlannerSettings = field(default_factory=PlannerSettings, repr=False, compare=False)

    @property
    def label(self) -> str:
        return variant_label(VARIANT_BY_KEY[self.variant], self.dtype)

    @property
    def summary(self) -> str:
        where = f" on GPU {self.device_index}" if self.device_index is not None else ""
        if self.backend == RAPIDOCR.name:
            return "rapidocr on the CPU (text only, no layout)"
        if self.backend == LLAMACPP.name:
            split = "on the CPU" if not self.gpu_layers else f"{self.gpu_layers}/{self.total_layers} layers{where}"
            where = f", {split}"
        text = f"{self.label}{where}, max {mp_text(self.max_pixels)} per page"
        return text + f", up to {self.max_new_tokens:,} output tokens"

    def mm_processor_kwargs(self) -> dict[str, int] | None:
        if self.max_pixels is None:
            return None
        return {"min_pixels": self.settings.facts.min_pixels, "max_pixels": self.max_pixels}

    def vllm_args(self) -> list[str]:
        """The memory-related `vllm serve` flags of this plan (the backend adds the model, port, …)."""
        if self.backend != VLLM.name or self.vllm_external:
            return []
        args = [
            "--gpu-memory-utilization", f"{self.gpu_memory_utilization}",
            "--max-model-len", str(self.max_model_len),
            "--max-num-seqs", str(self.max_num_seqs),
            "--max-num-batched-tokens", str(self.max_num_batched_tokens),
            "--dtype", self.dtype,
            "--limit-mm-per-prompt", json.dumps({"image": 1}),
            "--mm-processor-kwargs", json.dumps(self.mm_processor_kwargs()),
        ]  # fmt: skip
        if self.quantization:
            args += ["--quantization", self.quantization]
        if self.enforce_eager:
            args.append("--enforce-eager")
        return args

    def as_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "refused": False,
            "backend": self.backend,
            "variant": self.variant,
            "label": self.label,
            "summary": self.summary,
            "quantization": self.quantization,
            "dtype": self.dtype,
            "device_index": self.device_index,
            "device_name": self.device_name,
            "max_pixels": self.max_pixels,
            "max_image_tokens": self.max_image_tokens,
            "max_new_tokens": self.max_new_tokens,
            "estimated_bytes": self.estimated_bytes,
            "budget_bytes": self.budget_bytes,
            "memory": self.memory,
            "parts": dict(self.parts),
            "reasons": list(self.reasons),
            "fallbacks": list(self.fallbacks),
            "oom_retried": self.oom_retried,
            "pages_at_once": self.pages_at_once,
            "pages_at_once_reason": self.pages_at_once_reason,
        }
        if self.backend == VLLM.name:
            data.update(
                vllm_external=self.vllm_external,
                gpu_memory_utilization=self.gpu_memory_utilization,
                max_model_len=self.max_model_len,
                max_num_seqs=self.max_num_seqs,
                max_num_batched_tokens=self.max_num_batched_tokens,
                enforce_eager=self.enforce_eager,
                kv_cache_bytes=self.kv_cache_bytes,
                limit_mm_per_prompt={"image": 1},
                mm_processor_kwargs=self.mm_processor_kwargs(),
                vllm_args=self.vllm_args(),
            )
        if self.backend == LLAMACPP.name:
            data.update(
                gpu_layers=self.gpu_layers,
                total_layers=self.total_layers,
                projector_on_gpu=self.projector_on_gpu,
                projector_type=self.projector_type,
                n_ctx=self.n_ctx,
            )
        if self.backend == TRANSFORMERS.name:
            data["max_memory"] = {str(k): v for k, v in (self.max_memory or {}).items()}
        return data


# -- formatting ----------------------------------------------------------------------------------


def gib_text(n: float, digits: int = 1) -> str:
    return f"{n / GiB:.{digits}f} GiB"


def mp_text(pixels: int | None) -> str:
    return "-" if pixels is None else f"{pixels / 1e6:.1f} MP"


def cc_text(cc: tuple[int, int] | None) -> str:
    return "unknown" if cc is None else f"{cc[0]}.{cc[1]}"


def variant_label(v: Variant, dtype: str | None) -> str:
    if v.weights == "bf16" and dtype in ("float16", "fp16"):
        return v.label.replace("bf16", "fp16")
    return v.label


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]?i?b)?\s*$", re.IGNORECASE)
_UNITS = {
    "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}  # fmt: skip


def parse_size(text: str) -> int:
    """'11.94GiB', '12GB', '6000MiB', '5.81' (GiB when no unit is given) → bytes."""
    m = _SIZE_RE.match(str(text))
    if not m:
        raise ValueError(
            f"{text!r} is not a size: write a number with an optional unit, e.g. 11.94GiB, 12GB, 6000MiB or 5.81 (GiB)"
        )
    number, unit = float(m.group(1)), (m.group(2) or "gib").lower()
    if unit not in _UNITS:
        raise ValueError(f"{text!r} has an unknown unit {m.group(2)!r}: use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB")
    return int(round(number * _UNITS[unit]))
