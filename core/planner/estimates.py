"""What each backend is estimated to take, in GPU memory (or RAM for the CPU path), for a page of
a given size: the formulas the module docstring of core/planner/ explains, and every constant they
use. `ESTIMATES` holds one estimate per backend that takes memory, keyed by its registry name."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core import backends
from core.backends import CPU, LLAMACPP, TRANSFORMERS, VARIANT_BY_KEY, VLLM, Variant
from core.modelfacts import BF16, FP32, GiB, MiB
from core.planner.plan import Device, PlannerSettings, cc_text

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


@dataclass(frozen=True)
class Estimate:
    fits: bool
    need_bytes: int
    budget_bytes: int
    parts: dict[str, int]
    params: dict[str, Any]


# -- estimates -----------------------------------------------------------------------------------


def _gpu_dtype(device: Device) -> str:
    cc = device.compute_capability
    return "float16" if cc is not None and cc < BF16_MIN_CC else "bfloat16"


def unavailable(variant: Variant, device: Device | None, settings: PlannerSettings) -> str | None:
    """Why a candidate is not considered at all (settings, hardware), as a short phrase, or None."""
    cc = device.compute_capability if device else None
    spec = backends.get(variant.backend)
    if variant.backend == LLAMACPP.name:
        from core.planner import llamacpp

        return llamacpp.unavailable(variant, device, settings)
    if variant.backend == VLLM.name:
        if not settings.vllm_allowed:
            return settings.vllm_unavailable or "no vLLM server is set up in the settings"
        if settings.vllm_external:
            return "fp8 is decided where the external vLLM server runs" if variant.weights == "fp8" else None
        if device is None:
            return "no NVIDIA GPU"
        if cc is not None and cc < VLLM_MIN_CC:
            return f"vLLM needs compute capability 7.0 or newer; this card has {cc_text(cc)}"
    if variant.backend == VLLM.name and variant.weights == "fp8":
        if not settings.fp8_allowed:
            return "fp8 is turned off in the settings"
        if cc is None:
            return "fp8 needs compute capability 8.0 or newer, and this card's is unknown"
        if cc < FP8_MARLIN_MIN_CC:
            return f"fp8 needs compute capability 8.0 or newer; this card has {cc_text(cc)}"
    if spec.in_worker and spec.runs_dots and settings.in_process_unavailable:
        return settings.in_process_unavailable
    if spec.memory == "gpu" and device is None:
        return "no NVIDIA GPU"
    if spec.memory == "ram":
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
            # What one more page in flight costs: a whole sequence of KV cache.
            "per_page_bytes": f.kv_cache_bytes(kv_tokens // seqs),
            "quantization": "fp8" if variant.weights == "fp8" else None,
            "dtype": _gpu_dtype(device),
        },
    )


def _transformers_estimate(device: Device, tokens: int, variant: Variant, settings: PlannerSettings) -> Estimate:
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
            # One more page in the batch: its vision activations, or its prefill and whole KV cache.
            "per_page_bytes": activations - dequant,
        },
    )


def _cpu_estimate(device: Device | None, tokens: int, variant: Variant, settings: PlannerSettings) -> Estimate:
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
        params={"quantization": None, "dtype": "float32", "per_page_bytes": activations},
    )


def torch_bytes_budgeted(variant_key: str, pixels: int, settings: PlannerSettings | None = None) -> int:
    """The bytes the planner expects PyTorch itself to allocate (weights + activations + KV cache,
    without the CUDA context and allocator slack) for one page of up to `pixels` pixels on a
    transformers or CPU variant: what bench/backends.py sets beside the measured peak."""
    settings = settings or PlannerSettings()
    variant = VARIANT_BY_KEY[variant_key]
    device = Device(index=0, total_bytes=1 << 50, free_bytes=1 << 50, compute_capability=(9, 0))
    tokens = settings.facts.tokens_for_pixels(pixels)
    est = estimate_for(variant, device, tokens, settings)
    return est.parts["weights"] + est.parts["activations"]


def _llamacpp_estimate(device: Device | None, tokens: int, variant: Variant, settings: PlannerSettings) -> Estimate:
    from core.planner import llamacpp  # it imports Estimate from here

    return llamacpp.estimate(device, tokens, variant, settings)


# (device, image tokens, variant, settings) -> Estimate, for each backend that takes memory.
ESTIMATES: dict[str, Callable[[Device | None, int, Variant, PlannerSettings], Estimate]] = {
    VLLM.name: _vllm_estimate,
    TRANSFORMERS.name: _transformers_estimate,
    LLAMACPP.name: _llamacpp_estimate,
    CPU.name: _cpu_estimate,
}


def estimate_for(variant: Variant, device: Device | None, tokens: int, settings: PlannerSettings) -> Estimate:
    try:
        estimate = ESTIMATES[variant.backend]
    except KeyError:
        raise ValueError(f"{variant.key} takes no memory the planner estimates") from None
    return estimate(device, tokens, variant, settings)


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
# the 512-token prompt budget, the 1,280-token floor, pages at once (max_num_seqs, the transformers batch)
# up to 4 by default, fp8 from compute capability 8.0,
# not shrinking the output budget, and counting dots.ocr's vision tower as bf16 under vLLM fp8 but as
# quantized under bitsandbytes.
