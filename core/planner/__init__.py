"""The memory planner: a GPU snapshot plus the admin's settings in, a plan that fits out.

Pure: no Django, no torch. `make_plan(snapshot, settings)` returns a `Plan` — the backend, its
dtype or quantization, every launch parameter, the memory it is estimated to take, the sentences a
person reads on the dashboard (`reasons`), and the order of backends to fall back to when a job
runs out of CUDA memory (`fallbacks`).

How it decides
--------------
The candidates, in order: vLLM bf16, vLLM fp8, transformers bf16, transformers 8-bit,
transformers 4-bit (nf4), the CPU (float32), rapidocr. "auto" walks that list; a forced backend
walks only its own variants. For each candidate the planner looks for the largest image size
(`max_pixels`, between the settings' cap and the floor `MIN_USEFUL_PIXELS`) whose estimate fits
in the device's free memory minus the reserve; the first candidate that fits at the floor or above
wins. So the image shrinks before the backend gets smaller, and a backend is never chosen at a size
its own estimate says cannot start.

A forced backend that cannot fit raises `PlanRefused`, whose `reasons` say why. The exception (not a
plan with a flag) is deliberate: code that starts a backend from a plan cannot start a refused one
by forgetting to look at a flag.

The estimate of each backend (every constant is named below and in core/modelfacts.py):

- vLLM, which checks `gpu_memory_utilization × total ≤ free memory` when it starts and then fits
  weights, profiled activations and the KV cache inside that fraction:
      inside = weights + max(vision encoder on one max_pixels image,
                             encoder output + decoder prefill of max_num_batched_tokens)
               + VLLM_NON_TORCH_BYTES + KV cache for max_num_seqs × max_model_len tokens
      gpu_memory_utilization = inside / total, rounded up to 0.01 (0.001 when that is what fits)
      needed = CUDA_CONTEXT_BYTES + max(utilization × total, weight loading peak)
               [+ CUDA_GRAPH_BYTES unless enforce_eager]
  max_model_len = image tokens at max_pixels + the prompt budget + max_new_tokens, so the largest
  page allowed and a full answer always fit one request; max_pixels is sent to vLLM's processor
  (`--mm-processor-kwargs '{"max_pixels": …}'`) so profiling and requests use the same size, and
  `--max-num-batched-tokens` is one page, so profiling encodes exactly one image.
- transformers (in the worker): CUDA_CONTEXT_BYTES + ALLOCATOR_SLACK_BYTES + weights
  + max(vision encoder with per-image fused attention, decoder prefill + the KV cache of the whole answer).
- CPU: float32 weights + the same activations in float32 + CPU_RUNTIME_BYTES, against the RAM
  available minus the reserve.
- rapidocr: no GPU, a few hundred MB of RAM; always possible.

vLLM gets the fraction the plan needs, not 0.9 of the card: the GPU is shared. The output budget
(`max_new_tokens`) is the admin's and is never shrunk to make room; the image is.

Later checks: `fits_now(plan, snapshot)` says whether a plan still fits just before it is started
(another process may have grown since), and `replan_after_oom(plan, snapshot)` gives the next plan
after CUDA ran out of memory: the same backend once at about half the image, then `plan.fallbacks`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from core.modelfacts import (
    A4_200DPI_PIXELS,
    BF16,
    DOTS_OCR,
    FP32,
    MIN_USEFUL_PIXELS,
    GiB,
    MiB,
    ModelFacts,
)

BACKENDS = ("auto", "vllm", "transformers", "cpu", "rapidocr")

# A CUDA context with PyTorch's kernels loaded lazily (CUDA_MODULE_LOADING=LAZY, PyTorch's default)
# takes a few hundred MiB per process; vLLM creates it before it measures free memory, so it comes
# on top of gpu_memory_utilization × total.
CUDA_CONTEXT_BYTES = 512 * MiB
# Memory vLLM's profile counts as "non-torch" (cuBLAS workspaces, NCCL buffers), inside the fraction.
VLLM_NON_TORCH_BYTES = 256 * MiB
# CUDA graphs are captured after the KV cache is allocated; with max_num_seqs ≤ 4 there are only a
# few capture sizes. When this much is not left over, the plan sets enforce_eager instead.
CUDA_GRAPH_BYTES = 512 * MiB
# PyTorch's caching allocator keeps freed blocks; in a long-lived worker process that adds up.
ALLOCATOR_SLACK_BYTES = 256 * MiB
# The Python process itself with torch, transformers and the processor loaded, on the CPU path.
CPU_RUNTIME_BYTES = 1 * GiB
# vLLM allocates the KV cache in blocks of 16 tokens.
KV_BLOCK_TOKENS = 16
# vLLM needs compute capability 7.0; bf16 needs 8.0 (vLLM refuses bf16 below that and asks for
# --dtype half); fp8 runs as W8A8 from 8.9 (Ada, Hopper) and as weight-only W8A16 through the
# FP8 Marlin kernel on older cards (Ampere, 8.0, is in every version of vLLM's FP8 page).
VLLM_MIN_CC = (7, 0)
BF16_MIN_CC = (8, 0)
FP8_MARLIN_MIN_CC = (8, 0)
FP8_W8A8_MIN_CC = (8, 9)


class PlanRefused(Exception):
    """No configuration of the asked-for backend fits; `reasons` says why, in sentences, and
    `headline` is the one that matters most (the first candidate that was tried and did not fit)."""

    def __init__(self, reasons: Sequence[str], backend: str = "auto", headline: str | None = None):
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
    backend: str = "auto"
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
    # Pages are sent one at a time by the worker; more sequences only cost KV cache.
    vllm_max_num_seqs: int = 1
    # Why dots.ocr cannot run inside the worker (torch/transformers not installed, weights not
    # downloaded), in words; None when it can. Rules out the transformers and CPU paths.
    in_process_unavailable: str | None = None
    # Why vLLM is not allowed (no Docker engine, turned off), in words; shown in the reasons.
    vllm_unavailable: str | None = None
    facts: ModelFacts = DOTS_OCR

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {self.backend!r}")
        if self.max_pixels < self.facts.min_pixels:
            raise ValueError(f"max_pixels must be at least {self.facts.min_pixels:,} (dots.ocr's MIN_PIXELS)")
        if self.max_new_tokens < 1:
            raise ValueError("max_new_tokens must be at least 1")
        if self.vllm_max_num_seqs < 1:
            raise ValueError("vllm_max_num_seqs must be at least 1")
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


# -- candidates ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    key: str
    backend: str
    weights: str  # a ModelFacts.weight_bytes scheme
    label: str


VARIANTS = (
    Variant("vllm:bf16", "vllm", "bf16", "vLLM bf16"),
    Variant("vllm:fp8", "vllm", "fp8", "vLLM fp8"),
    Variant("transformers:bf16", "transformers", "bf16", "transformers bf16"),
    Variant("transformers:int8", "transformers", "int8", "transformers 8-bit"),
    Variant("transformers:nf4", "transformers", "nf4", "transformers 4-bit (nf4)"),
    Variant("cpu:float32", "cpu", "float32", "CPU float32"),
    Variant("rapidocr", "rapidocr", "", "rapidocr"),
)
VARIANT_BY_KEY = {v.key: v for v in VARIANTS}


@dataclass(frozen=True)
class Estimate:
    fits: bool
    need_bytes: int
    budget_bytes: int
    parts: dict[str, int]
    params: dict[str, Any]


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
    # True once a CUDA out-of-memory retry at a smaller image size has been used.
    oom_retried: bool = False
    settings: PlannerSettings = field(default_factory=PlannerSettings, repr=False, compare=False)

    @property
    def label(self) -> str:
        return _variant_label(VARIANT_BY_KEY[self.variant], self.dtype)

    @property
    def summary(self) -> str:
        where = f" on GPU {self.device_index}" if self.device_index is not None else ""
        if self.backend == "rapidocr":
            return "rapidocr on the CPU (text only, no layout)"
        text = f"{self.label}{where}, max {_mp(self.max_pixels)} per page"
        return text + f", up to {self.max_new_tokens:,} output tokens"

    def mm_processor_kwargs(self) -> dict[str, int] | None:
        if self.max_pixels is None:
            return None
        return {"min_pixels": self.settings.facts.min_pixels, "max_pixels": self.max_pixels}

    def vllm_args(self) -> list[str]:
        """The memory-related `vllm serve` flags of this plan (the backend adds the model, port, …)."""
        if self.backend != "vllm" or self.vllm_external:
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
        }
        if self.backend == "vllm":
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
        if self.backend == "transformers":
            data["max_memory"] = {str(k): v for k, v in (self.max_memory or {}).items()}
        return data


# -- formatting ----------------------------------------------------------------------------------


def _gib(n: float, digits: int = 1) -> str:
    return f"{n / GiB:.{digits}f} GiB"


def _mp(pixels: int | None) -> str:
    return "-" if pixels is None else f"{pixels / 1e6:.1f} MP"


def _cc(cc: tuple[int, int] | None) -> str:
    return "unknown" if cc is None else f"{cc[0]}.{cc[1]}"


def _variant_label(v: Variant, dtype: str | None) -> str:
    if v.key in ("vllm:bf16", "transformers:bf16") and dtype in ("float16", "fp16"):
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
            f"{text!r} is not a size: write a number with an optional unit, e.g. 11.94GiB, 12GB, 6000MiB "
            "or 5.81 (GiB)"
        )
    number, unit = float(m.group(1)), (m.group(2) or "gib").lower()
    if unit not in _UNITS:
        raise ValueError(
            f"{text!r} has an unknown unit {m.group(2)!r}: use B, KB, MB, GB, TB, KiB, MiB, GiB or TiB"
        )
    return int(round(number * _UNITS[unit]))


# -- estimates -----------------------------------------------------------------------------------


def _gpu_dtype(device: Device) -> str:
    cc = device.compute_capability
    return "float16" if cc is not None and cc < BF16_MIN_CC else "bfloat16"


def _unavailable(variant: Variant, device: Device | None, settings: PlannerSettings) -> str | None:
    """Why a candidate is not considered at all (settings, hardware), as a short phrase, or None."""
    cc = device.compute_capability if device else None
    if variant.backend == "vllm":
        if not settings.vllm_allowed:
            return settings.vllm_unavailable or "no vLLM server is set up in the settings"
        if settings.vllm_external:
            return "fp8 is decided where the external vLLM server runs" if variant.weights == "fp8" else None
        if device is None:
            return "no NVIDIA GPU"
        if cc is not None and cc < VLLM_MIN_CC:
            return f"vLLM needs compute capability 7.0 or newer; this card has {_cc(cc)}"
    if variant.key == "vllm:fp8":
        if not settings.fp8_allowed:
            return "fp8 is turned off in the settings"
        if cc is None:
            return "fp8 needs compute capability 8.0 or newer, and this card's is unknown"
        if cc < FP8_MARLIN_MIN_CC:
            return f"fp8 needs compute capability 8.0 or newer; this card has {_cc(cc)}"
    if variant.backend in ("transformers", "cpu") and settings.in_process_unavailable:
        return settings.in_process_unavailable
    if variant.backend == "transformers" and device is None:
        return "no NVIDIA GPU"
    if variant.backend == "cpu":
        if not settings.allow_cpu:
            return "the CPU path is not allowed in the settings"
        if settings.cpu_ram_bytes is None:
            return "the RAM available to it is unknown"
    return None


def _vllm_estimate(device: Device, tokens: int, variant: Variant, settings: PlannerSettings) -> Estimate:
    f = settings.facts
    total = device.total_bytes
    budget = device.free_bytes - settings.reserve_for(total)
    batched = tokens + f.prompt_token_budget
    max_model_len = batched + settings.max_new_tokens
    seqs = settings.vllm_max_num_seqs
    kv_tokens = math.ceil(max_model_len / KV_BLOCK_TOKENS) * KV_BLOCK_TOKENS * seqs
    kv = f.kv_cache_bytes(kv_tokens)
    weights = f.weight_bytes(variant.weights)
    pixels = f.pixels_for_tokens(tokens)
    vision = f.vision_activation_bytes(pixels)
    encoder_out = tokens * f.hidden_size * BF16
    decoder = f.lm_activation_bytes(batched, logit_rows=seqs)
    activations = max(vision, encoder_out + decoder)
    inside = weights + activations + VLLM_NON_TORCH_BYTES + kv
    # vLLM loads the checkpoint at its own precision before it quantizes online (its FP8 page
    # warns so), so the fp8 variant still has to hold the bf16 weights for a moment.
    load_peak = f.weight_bytes("bf16")
    room = budget - CUDA_CONTEXT_BYTES
    util = math.ceil(inside / total * 100) / 100
    if util * total > room:
        util = math.ceil(inside / total * 1000) / 1000
    util = min(util, 1.0)
    requested = math.ceil(util * total)  # what vLLM compares with the free memory at start
    eager_need = CUDA_CONTEXT_BYTES + max(requested, load_peak)
    fits = eager_need <= budget and inside <= requested and util < 1.0
    enforce_eager = eager_need + CUDA_GRAPH_BYTES > budget
    need = eager_need + (0 if enforce_eager else CUDA_GRAPH_BYTES)
    return Estimate(
        fits=fits,
        need_bytes=need,
        budget_bytes=budget,
        parts={
            "weights": weights,
            "activations": activations,
            "kv_cache": kv,
            "non_torch": VLLM_NON_TORCH_BYTES,
            "cuda_context": CUDA_CONTEXT_BYTES,
            "cuda_graphs": 0 if enforce_eager else CUDA_GRAPH_BYTES,
        },
        params={
            "gpu_memory_utilization": util,
            "max_model_len": max_model_len,
            "max_num_seqs": seqs,
            "max_num_batched_tokens": batched,
            "enforce_eager": enforce_eager,
            "kv_cache_bytes": kv,
            "quantization": "fp8" if variant.weights == "fp8" else None,
            "dtype": _gpu_dtype(device),
        },
    )


def _transformers_estimate(
    device: Device, tokens: int, variant: Variant, settings: PlannerSettings
) -> Estimate:
    f = settings.facts
    budget = device.free_bytes - settings.reserve_for(device.total_bytes)
    dtype = _gpu_dtype(device)
    scheme = variant.weights
    weights = f.weight_bytes(scheme)
    pixels = f.pixels_for_tokens(tokens)
    prompt = tokens + f.prompt_token_budget
    # bitsandbytes' int8 matmul keeps int32 accumulators of the widest layer (fc1+fc3: 2 × 4224);
    # nf4 dequantizes one weight at a time to the compute dtype (twice, to be safe).
    extra_per_patch = 2 * f.vision_intermediate_size * FP32 if scheme == "int8" else 0
    dequant = 2 * f.largest_quantized_linear_weight * BF16 if scheme == "nf4" else 0
    vision = f.vision_activation_bytes(pixels, extra_per_patch=extra_per_patch)
    decoder = f.lm_activation_bytes(prompt, causal_mask=True)
    kv = f.kv_cache_bytes(prompt + settings.max_new_tokens)
    activations = max(vision, decoder + kv) + dequant
    need = CUDA_CONTEXT_BYTES + ALLOCATOR_SLACK_BYTES + weights + activations
    quantization = scheme if scheme != "bf16" else ("fp16" if dtype == "float16" else "bf16")
    return Estimate(
        fits=need <= budget,
        need_bytes=need,
        budget_bytes=budget,
        parts={
            "weights": weights,
            "activations": activations,
            "kv_cache": kv,
            "cuda_context": CUDA_CONTEXT_BYTES,
            "allocator_slack": ALLOCATOR_SLACK_BYTES,
        },
        params={
            "quantization": quantization,
            "dtype": dtype,
            "max_memory": {device.index: max(weights, budget - need + weights)},
        },
    )


def _cpu_estimate(tokens: int, settings: PlannerSettings) -> Estimate:
    f = settings.facts
    ram = settings.cpu_ram_bytes or 0
    budget = ram - settings.reserve_for(ram)
    weights = f.weight_bytes("float32")
    pixels = f.pixels_for_tokens(tokens)
    prompt = tokens + f.prompt_token_budget
    vision = f.vision_activation_bytes(pixels, dtype_bytes=FP32)
    decoder = f.lm_activation_bytes(prompt, dtype_bytes=FP32, causal_mask=True)
    kv = f.kv_cache_bytes(prompt + settings.max_new_tokens, FP32)
    activations = max(vision, decoder + kv)
    need = CPU_RUNTIME_BYTES + weights + activations
    return Estimate(
        fits=need <= budget,
        need_bytes=need,
        budget_bytes=budget,
        parts={"weights": weights, "activations": activations, "kv_cache": kv, "runtime": CPU_RUNTIME_BYTES},
        params={"quantization": None, "dtype": "float32"},
    )


def torch_bytes_budgeted(variant_key: str, pixels: int, settings: PlannerSettings | None = None) -> int:
    """The bytes the planner expects PyTorch itself to allocate (weights + activations + KV cache,
    without the CUDA context and allocator slack) for one page of up to `pixels` pixels on a
    transformers or CPU variant: what bench/backends.py sets beside the measured peak."""
    settings = settings or PlannerSettings()
    variant = VARIANT_BY_KEY[variant_key]
    device = Device(index=0, total_bytes=1 << 50, free_bytes=1 << 50, compute_capability=(9, 0))
    tokens = settings.facts.tokens_for_pixels(pixels)
    est = _estimate(variant, device, tokens, settings)
    return est.parts["weights"] + est.parts["activations"]


def _estimate(variant: Variant, device: Device | None, tokens: int, settings: PlannerSettings) -> Estimate:
    if variant.backend == "vllm":
        return _vllm_estimate(device, tokens, variant, settings)
    if variant.backend == "transformers":
        return _transformers_estimate(device, tokens, variant, settings)
    if variant.backend == "cpu":
        return _cpu_estimate(tokens, settings)
    raise ValueError(variant.key)


@dataclass(frozen=True)
class _Fit:
    variant: Variant
    device: Device | None
    tokens: int | None
    estimate: Estimate | None
    # Set when nothing fits: the estimate at the floor, for the reason sentence.
    floor_estimate: Estimate | None = None
    unavailable: str | None = None


def _largest_fit(
    variant: Variant, device: Device | None, settings: PlannerSettings, cap_tokens: int | None = None
) -> _Fit:
    """Binary-search the largest image (in tokens) between the floor and the cap that fits."""
    why = _unavailable(variant, device, settings)
    if why:
        return _Fit(variant, device, None, None, unavailable=why)
    cap = settings.cap_tokens if cap_tokens is None else min(cap_tokens, settings.cap_tokens)
    lo = min(settings.floor_tokens, cap)
    at_floor = _estimate(variant, device, lo, settings)
    if not at_floor.fits:
        return _Fit(variant, device, None, None, floor_estimate=at_floor)
    at_cap = _estimate(variant, device, cap, settings)
    if at_cap.fits:
        return _Fit(variant, device, cap, at_cap)
    best, hi = at_floor, cap - 1  # the estimates grow with the image: bisect for the largest fit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        est = _estimate(variant, device, mid, settings)
        if est.fits:
            best, lo = est, mid
        else:
            hi = mid - 1
    return _Fit(variant, device, lo, best)


# -- the planner ---------------------------------------------------------------------------------


def _candidates(settings: PlannerSettings) -> list[Variant]:
    if settings.backend == "auto":
        return list(VARIANTS)
    return [v for v in VARIANTS if v.backend == settings.backend]


def _situation(devices: list[Device], settings: PlannerSettings, snapshot_error: str | None) -> list[str]:
    if not devices:
        return [snapshot_error.rstrip(".") + "." if snapshot_error else "No NVIDIA GPU is visible."]
    lines = []
    for d in devices:
        reserve = settings.reserve_for(d.total_bytes)
        lines.append(
            f"GPU {d.index} ({d.name}, compute capability {_cc(d.compute_capability)}): "
            f"{_gib(d.free_bytes, 2)} free of {_gib(d.total_bytes, 2)}; keeping {_gib(reserve)} for others "
            f"({_gib(settings.reserve_bytes)} + {settings.reserve_fraction:.0%} of the card) leaves "
            f"{_gib(max(0, d.free_bytes - reserve))}."
        )
    return lines


def _miss_sentence(fit: _Fit, settings: PlannerSettings) -> str:
    est = fit.floor_estimate
    where = "RAM" if fit.variant.backend == "cpu" else "memory"
    size = _mp(settings.facts.pixels_for_tokens(settings.floor_tokens))
    return (
        f"{_variant_label(fit.variant, _dtype_of(fit))} needs {_gib(est.need_bytes)} even at {size} per page "
        f"(weights {_gib(est.parts['weights'])}), more than the {_gib(max(0, est.budget_bytes))} of {where} "
        "available: does not fit."
    )


def _dtype_of(fit: _Fit) -> str | None:
    est = fit.estimate or fit.floor_estimate
    return est.params.get("dtype") if est else None


def _fallbacks_after(variant: Variant, settings: PlannerSettings, devices: list[Device]) -> tuple[str, ...]:
    """The candidates after `variant` that the settings and the hardware allow at all; whether
    they fit is decided again, with a fresh snapshot, when one is needed."""
    order = _candidates(settings)
    later = order[order.index(variant) + 1 :] if variant in order else []
    roomiest = max(devices, key=lambda d: d.free_bytes) if devices else None
    return tuple(v.key for v in later if v.backend == "rapidocr" or not _unavailable(v, roomiest, settings))


def _plan_from_fit(fit: _Fit, settings: PlannerSettings, reasons: list[str], devices: list[Device]) -> Plan:
    v, f = fit.variant, settings.facts
    fallbacks = _fallbacks_after(v, settings, devices)
    if v.backend == "rapidocr":
        reasons.append("→ rapidocr on the CPU: plain text without dots.ocr's layout.")
        return Plan(
            backend="rapidocr", variant=v.key, quantization=None, dtype=None, device_index=None,
            device_name=None, max_pixels=None, max_image_tokens=None, max_new_tokens=None,
            estimated_bytes=0, budget_bytes=None, memory="none", reasons=tuple(reasons),
            fallbacks=fallbacks, settings=settings,
        )  # fmt: skip
    if v.backend == "vllm" and settings.vllm_external:
        tokens = settings.cap_tokens
        reasons.append(
            "An external vLLM server is configured: its memory was planned where it runs, so ocrdash only "
            f"limits each request (max {_mp(f.pixels_for_tokens(tokens))} per page, "
            f"{settings.max_new_tokens:,} output tokens)."
        )
        plan = Plan(
            backend="vllm", variant=v.key, quantization=None, dtype=None, device_index=None, device_name=None,
            max_pixels=f.pixels_for_tokens(tokens), max_image_tokens=tokens,
            max_new_tokens=settings.max_new_tokens, estimated_bytes=0, budget_bytes=None, memory="none",
            reasons=(), fallbacks=fallbacks, vllm_external=True,
            max_model_len=tokens + f.prompt_token_budget + settings.max_new_tokens, settings=settings,
        )  # fmt: skip
        reasons.append(f"→ {plan.summary}.")
        return replace(plan, reasons=tuple(reasons))
    est, tokens = fit.estimate, fit.tokens
    pixels = f.pixels_for_tokens(tokens)
    p = est.params
    where = "RAM" if v.backend == "cpu" else "memory"
    size_note = ""
    if tokens < settings.cap_tokens:
        cap_mp = _mp(f.pixels_for_tokens(settings.cap_tokens))
        size_note = f", the largest image that fits (the settings allow up to {cap_mp})"
    label = _variant_label(v, p.get("dtype"))
    reasons.append(
        f"{label} needs {_gib(est.need_bytes)} at {_mp(pixels)} per page{size_note}: "
        f"weights {_gib(est.parts['weights'])}, activations {_gib(est.parts['activations'])}, "
        f"KV cache {_gib(est.parts['kv_cache'])}; it fits in the {_gib(est.budget_bytes)} of {where} "
        "available."
    )
    if p.get("dtype") in ("float16", "fp16") and fit.device is not None:
        reasons.append(
            f"Compute capability {_cc(fit.device.compute_capability)} has no bf16, so it runs in float16 "
            "(vLLM asks for --dtype half on such cards); dots.ocr's weights are bf16, so check its output."
        )
    if pixels < A4_200DPI_PIXELS:
        dpi = 200 * math.sqrt(pixels / A4_200DPI_PIXELS)
        reasons.append(f"At {_mp(pixels)} an A4 page is read at about {dpi:.0f} dpi (dots.ocr suggests 200).")
    common = dict(
        backend=v.backend, variant=v.key, quantization=p.get("quantization"), dtype=p.get("dtype"),
        device_index=fit.device.index if fit.device else None,
        device_name=fit.device.name if fit.device else None, max_pixels=pixels, max_image_tokens=tokens,
        max_new_tokens=settings.max_new_tokens, estimated_bytes=est.need_bytes, budget_bytes=est.budget_bytes,
        memory="ram" if v.backend == "cpu" else "gpu", fallbacks=fallbacks, parts=dict(est.parts),
        settings=settings,
    )  # fmt: skip
    if v.backend == "vllm":
        d = fit.device
        util = p["gpu_memory_utilization"]
        reasons.append(
            f"gpu_memory_utilization {util:g}: vLLM compares {util:g} × {_gib(d.total_bytes)} = "
            f"{_gib(util * d.total_bytes)} with the free memory when it starts; with its own "
            f"{_gib(CUDA_CONTEXT_BYTES)} CUDA context that stays within the {_gib(est.budget_bytes)} left "
            "after the reserve."
        )
        reasons.append(
            f"max_model_len {p['max_model_len']:,} = {tokens:,} image tokens + {f.prompt_token_budget} "
            f"for the prompt + {settings.max_new_tokens:,} output tokens; max_pixels {pixels:,} goes to "
            "vLLM's processor so profiling and requests use the same image size."
        )
        if p["enforce_eager"]:
            reasons.append(
                f"enforce_eager: the {_gib(CUDA_GRAPH_BYTES)} CUDA graphs would take is not left over."
            )
        if v.weights == "fp8":
            cc = fit.device.compute_capability
            kind = "W8A8" if cc >= FP8_W8A8_MIN_CC else "weight-only W8A16 through the FP8 Marlin kernel"
            reasons.append(
                f"fp8 ({kind} on compute capability {_cc(cc)}) quantizes the language model's linear layers "
                "online; loading still needs room for the bf16 weights."
            )
        plan = Plan(
            **common, reasons=(),
            gpu_memory_utilization=util, max_model_len=p["max_model_len"], max_num_seqs=p["max_num_seqs"],
            max_num_batched_tokens=p["max_num_batched_tokens"], enforce_eager=p["enforce_eager"],
            kv_cache_bytes=p["kv_cache_bytes"],
        )  # fmt: skip
    elif v.backend == "transformers":
        plan = Plan(**common, reasons=(), max_memory=dict(p["max_memory"]))
    else:
        plan = Plan(**common, reasons=())
    reasons.append(f"→ {plan.summary}.")
    return replace(plan, reasons=tuple(reasons))


def _search(
    variants: Iterable[Variant],
    devices: list[Device],
    settings: PlannerSettings,
    reasons: list[str],
    cap_tokens: int | None = None,
) -> _Fit | None:
    """The first variant that fits (on the device where it gets the largest image); every miss on the
    way is added to `reasons`, the skipped ones grouped by why."""
    ordered = sorted(devices, key=lambda d: d.free_bytes, reverse=True)
    skipped: dict[str, list[str]] = {}

    def miss(fit: _Fit) -> None:
        if fit.unavailable:
            skipped.setdefault(fit.unavailable, []).append(fit.variant.label)
        else:
            reasons.append(_miss_sentence(fit, settings))

    def flush() -> None:
        for why, labels in skipped.items():
            reasons.append(f"Not considered: {', '.join(labels)} — {why}.")
        skipped.clear()

    found = None
    for v in variants:
        if v.backend == "rapidocr":
            found = _Fit(v, None, None, None)
            break
        if v.backend == "vllm" and settings.vllm_external:
            why = _unavailable(v, None, settings)
            if why is None:
                found = _Fit(v, None, settings.cap_tokens, None)
                break
            skipped.setdefault(why, []).append(v.label)
            continue
        targets = ordered if v.backend != "cpu" and ordered else [None]
        fits = [_largest_fit(v, d, settings, cap_tokens) for d in targets]
        hits = [f for f in fits if f.estimate]
        if hits:
            found = max(hits, key=lambda f: (f.tokens, f.device.free_bytes if f.device else 0))
            break
        if any(not f.unavailable for f in fits):
            flush()  # keep the reasons in the order the candidates were tried
        miss(next((f for f in fits if not f.unavailable), fits[0]))
    flush()
    return found


def make_plan(gpu: Any, settings: PlannerSettings | None = None) -> Plan:
    """Plan for `gpu` (a core.gpu.GpuSnapshot, a list of devices, or None); raise PlanRefused
    when the asked-for backend cannot fit."""
    settings = settings or PlannerSettings()
    devices = devices_of(gpu)
    reasons = _situation(devices, settings, getattr(gpu, "error", None))
    if settings.backend != "auto":
        reasons.append(f"The backend is set to {settings.backend} in the settings.")
    before = len(reasons)
    fit = _search(_candidates(settings), devices, settings, reasons)
    if fit is None:
        headline = next((r for r in reasons[before:] if "does not fit" in r), reasons[-1])
        reasons.append(f"→ {settings.backend} cannot start here; refusing rather than starting it to crash.")
        raise PlanRefused(reasons, settings.backend, headline)
    return _plan_from_fit(fit, settings, reasons, devices)


def fits_now(plan: Plan, gpu: Any) -> tuple[bool, str]:
    """Does `plan` still fit the GPU as it is now (another process may have grown since it was made)?"""
    if plan.memory != "gpu":
        return True, "The plan does not use GPU memory."
    settings = plan.settings
    device = next((d for d in devices_of(gpu) if d.index == plan.device_index), None)
    if device is None:
        return False, f"GPU {plan.device_index} is no longer visible."
    budget = device.free_bytes - settings.reserve_for(device.total_bytes)
    if plan.estimated_bytes > budget:
        return False, (
            f"GPU {device.index} now has {_gib(device.free_bytes, 2)} free; {plan.label} needs "
            f"{_gib(plan.estimated_bytes)} plus the {_gib(settings.reserve_for(device.total_bytes))} reserve."
        )
    return (
        True,
        f"GPU {device.index} still has room: {_gib(budget)} available, {_gib(plan.estimated_bytes)} needed.",
    )


def replan_after_oom(plan: Plan, gpu: Any, settings: PlannerSettings | None = None) -> Plan:
    """After CUDA ran out of memory under `plan`: first the same backend once more at about half the
    image size (never below the floor), then the next backend in `plan.fallbacks`, each checked
    against the snapshot taken now. Raises PlanRefused when nothing is left."""
    settings = settings or plan.settings
    devices = devices_of(gpu)
    variant = VARIANT_BY_KEY[plan.variant]
    head = _situation(devices, settings, getattr(gpu, "error", None))
    if not plan.oom_retried and plan.max_image_tokens and plan.max_image_tokens > settings.floor_tokens:
        half = max(settings.floor_tokens, plan.max_image_tokens // 2)
        if plan.vllm_external:  # its memory is its own: only the request gets smaller
            pixels = settings.facts.pixels_for_tokens(half)
            note = (
                f"The external vLLM server ran out of memory at {_mp(plan.max_pixels)} per page; retrying "
                f"once at {_mp(pixels)}."
            )
            return replace(
                plan,
                max_pixels=pixels,
                max_image_tokens=half,
                oom_retried=True,
                reasons=(note, *plan.reasons),
            )
        same = [d for d in devices if d.index == plan.device_index] if plan.device_index is not None else []
        fit = _largest_fit(variant, same[0] if same else None, settings, cap_tokens=half)
        if fit.estimate is not None and not fit.unavailable:
            reasons = [
                f"CUDA ran out of memory with {plan.label} at {_mp(plan.max_pixels)} per page; retrying "
                f"once at {_mp(settings.facts.pixels_for_tokens(fit.tokens))} on the same backend.",
                *head,
            ]
            new = _plan_from_fit(fit, settings, reasons, devices)
            return replace(new, oom_retried=True, fallbacks=plan.fallbacks)
    reasons = [
        f"CUDA ran out of memory with {plan.label}"
        + (" after the retry at a smaller image" if plan.oom_retried else "")
        + "; trying the next backend.",
        *head,
    ]
    rest = [VARIANT_BY_KEY[k] for k in plan.fallbacks]
    fit = _search(rest, devices, settings, reasons)
    if fit is None:
        reasons.append("→ No backend is left to fall back to.")
        raise PlanRefused(
            reasons, settings.backend, f"CUDA ran out of memory with {plan.label} and no fallback fits."
        )
    new = _plan_from_fit(fit, settings, reasons, devices)
    # Keep the original order: the next fallbacks are those after the chosen one in the old list.
    later = plan.fallbacks[plan.fallbacks.index(fit.variant.key) + 1 :]
    return replace(new, fallbacks=tuple(later))


# Sources (public)
# -----------------
# dots.ocr, https://github.com/rednote-hilab/dots.ocr (commit c3084bd):
#   - dots_ocr/utils/consts.py: MIN_PIXELS=3136, MAX_PIXELS=11289600, IMAGE_FACTOR=28.
#   - dots_ocr/utils/image_utils.py: smart_resize (sides multiples of 28, pixels within
#     [min_pixels, max_pixels]) and fetch_image, applied before an image is sent.
#   - README.md: `vllm serve rednote-hilab/dots.ocr --trust-remote-code --async-scheduling
#     --gpu-memory-utilization 0.95`; in vLLM itself since 0.11.0; the transformers example
#     generates with max_new_tokens=24000; PDFs at 200 DPI; best under 11,289,600 pixels.
#   - demo/launch_model_vllm.sh (--gpu-memory-utilization 0.95, --chat-template-content-format
#     string, --trust-remote-code) and docker/docker-compose.yml (0.8).
#   - dots_ocr/model/inference.py: max_completion_tokens=32768, temperature 0.1, top_p 0.9;
#     dots_ocr/parser.py: max_completion_tokens=16384 for vLLM, max_new_tokens=24000 for transformers.
#   - dots_ocr/utils/prompts.py: the longest prompt (prompt_layout_all_en) is about 1,000 characters.
# dots.ocr weights, https://huggingface.co/rednote-hilab/dots.ocr: config.json (hidden 1536,
#   intermediate 8960, 28 layers, 12 heads, 2 KV heads, vocab 151936, untied embeddings;
#   vision_config embed_dim 1536, intermediate 4224, 42 layers, 12 heads, patch 14, merge 2);
#   modeling_dots_ocr.py (forward accepts logits_to_keep); modeling_dots_vision.py (rotary in fp32,
#   SDPA attention over a [1, N, N] boolean block mask on 3-D tensors as in Qwen2-VL's code, which
#   PyTorch runs with its math kernel: 47 GiB peak for one A4 page at 200 dpi in bf16, measured on an
#   H200 — hence workers/backends/vision_attention.py; pixel values cast to bf16).
# vLLM, https://github.com/vllm-project/vllm:
#   - vllm/v1/worker/gpu_worker.py: at start, requested = total × gpu_memory_utilization and
#     "Free memory on device (…) on startup is less than desired GPU memory utilization" when free
#     memory is below it; the KV cache gets the requested memory minus weights, the profiled peak and
#     non-torch memory; kv_cache_memory_bytes (--kv-cache-memory) skips that profiling and ignores the
#     utilization; older versions refuse bf16 below compute capability 8.0 ("--dtype=half").
#   - vllm/v1/core/kv_cache_utils.py: "To serve at least one request with the models's max seq len …"
#     — the KV cache must hold max_model_len tokens or the server does not start.
#   - vllm/model_executor/models/dots_ocr.py: profiling uses dummy images of
#     get_image_size_with_most_features (the processor's max_pixels); the vision attention runs by
#     cu_seqlens (flash-attention) or per image with SDPA, so its memory is linear in the patches.
#   - vllm/v1/core/encoder_cache_manager.py: encoder compute budget =
#     max(max_num_batched_tokens, max tokens per item).
#   - https://docs.vllm.ai/en/latest/configuration/conserving_memory/: max_model_len, max_num_seqs,
#     enforce_eager (CUDA graphs take extra memory, more in V1), limit_mm_per_prompt (its size hints
#     shape profiling only), mm_processor_kwargs {"max_pixels": …} for Qwen2-VL-style processors.
#   - https://docs.vllm.ai/en/stable/features/quantization/fp8/: online `--quantization fp8` from
#     bf16 weights without calibration, every Linear but lm_head; W8A8 on compute capability ≥ 8.9
#     (Ada, Hopper); weight-only W8A16 through FP8 Marlin on older cards (Turing 7.5 in current pages,
#     Ampere in the v0.5 pages); its warning that the model is first loaded at original precision
#     (https://github.com/vllm-project/vllm/pull/19967, reduced by
#     https://github.com/vllm-project/vllm/pull/31914 in 2026) is why fp8 still needs the bf16 peak.
# Decisions where the sources are silent: the reserve (0.5 GiB + 5%), the 512 MiB CUDA context and
# the other named overheads, the activation formulas and their 1.25 margin (core/modelfacts.py),
# the 512-token prompt budget, the 1,280-token floor, max_num_seqs 1, fp8 from compute capability 8.0,
# not shrinking the output budget, and counting dots.ocr's vision tower as bf16 under vLLM fp8 but as
# quantized under bitsandbytes.
