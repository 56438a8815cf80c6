"""The llama.cpp backend's plan: how many of the language model's layers go on the GPU, whether the
vision projector goes there too, the context, and the RAM the rest takes.

llama.cpp splits a model by layers (`n_gpu_layers`): it counts the language model's 28 blocks plus
its output layer (29 "layers"), and offloads the output layer first, then blocks from the last one
down (`i_gpu_start = n_layer + 1 - n_gpu_layers` in src/llama-model.cpp of the llama.cpp that
llama-cpp-python 0.3.36 vendors). The token embeddings always stay in RAM. Each block on the GPU
takes its weights and its share of the KV cache (`offload_kqv`); the GPU also holds a CUDA context
and a compute buffer. The vision projector (mmproj) is one file, loaded whole on the GPU or in RAM.

How the memory is split, in this order:
1. everything on the GPU (all 29 layers and the projector) when it fits: a full GPU plan;
2. otherwise the output layer, then blocks, as many as fit (a partial offload), the projector on the
   GPU only when it fits after every layer; the rest in RAM;
3. no layer fits (or no GPU): all on the CPU (`gpu_layers` 0), with the machine's cores.

The image is never shrunk for llama.cpp: what does not fit on the GPU runs on the CPU instead.
The variants are tried best first (Q8_0, then Q4_K_M): a quantization that is not the last one
available is taken only when it fits the GPU whole; the last one is also split or run on the CPU
(Q4_K_M is smaller, so more of it fits on the GPU). A split or CPU plan needs its RAM.
"""

from __future__ import annotations

import math

from core import gguf_files
from core.backends import LLAMACPP, Variant
from core.modelfacts import BF16, GiB, MiB
from core.planner.estimates import Estimate
from core.planner.plan import Device, PlannerSettings, gib_text

# llama.cpp's CUDA backend creates a smaller context than PyTorch (no caching allocator, kernels
# loaded on use). A decision, checked by scripts/device_check.sh, which records the real peak.
LLAMACPP_CUDA_CONTEXT_BYTES = 256 * MiB
# The GPU compute buffer of the language model (graph scratch for a batch of n_ubatch = 512 tokens
# with flash attention, and the logits). A decision, checked the same way.
LLAMACPP_COMPUTE_BYTES = 256 * MiB
# The Python process with llama-cpp-python loaded, and its CPU compute buffer.
LLAMACPP_RUNTIME_BYTES = 768 * MiB
# For the sentence on speed only: the memory bandwidth a CPU decodes with (each output token reads
# every CPU-resident weight once). A round figure for a desktop with two DDR4/DDR5 channels.
CPU_DECODE_BYTES_PER_SECOND = 20 * 10**9
# The answer length the speed sentence is worked out for: a dense page of text in layout JSON.
TYPICAL_PAGE_TOKENS = 2000


def unavailable(variant: Variant, device: Device | None, settings: PlannerSettings) -> str | None:
    """Why this llama.cpp variant is not considered at all, or None."""
    if settings.llamacpp_unavailable:
        return settings.llamacpp_unavailable
    if variant.weights not in settings.llamacpp_quantizations:
        return "its GGUF files are not in the model folder (python manage.py fetch_model --gguf fetches them)"
    if device is None and not _cpu_allowed(settings):
        return "no NVIDIA GPU, and the CPU path is not allowed in the settings"
    return None


def _cpu_allowed(settings: PlannerSettings) -> bool:
    # Forcing llama.cpp is the admin's opt-in to its CPU part; "auto" needs allow_cpu.
    return settings.allow_cpu or settings.backend == LLAMACPP.name


def _may_split(variant: Variant, settings: PlannerSettings) -> bool:
    """Only the last available quantization is split or run on the CPU; a better one must fit whole."""
    available = [q for q in gguf_files.QUANTIZATIONS if q in settings.llamacpp_quantizations]
    return bool(available) and variant.weights == available[-1]


def layer_sizes(variant: Variant, settings: PlannerSettings) -> dict[str, int]:
    """Bytes of the embeddings, the output layer, one block, and the projector, from the file sizes."""
    f = settings.facts
    pair = gguf_files.gguf_model(settings.llamacpp_model).pair(variant.weights)
    rows = f.vocab_size * f.hidden_size
    embedding = int(rows * gguf_files.BITS_PER_WEIGHT[pair.embedding_type] / 8)
    output = int(rows * gguf_files.BITS_PER_WEIGHT[pair.output_type] / 8)
    block = (pair.lm_bytes - embedding - output) // f.num_hidden_layers
    return {"embedding": embedding, "output": output, "block": block, "mmproj": pair.mmproj_bytes,
            "lm_file": pair.lm_bytes}  # fmt: skip


def estimate(device: Device | None, tokens: int, variant: Variant, settings: PlannerSettings) -> Estimate:
    """The split of one llama.cpp variant for a page of `tokens` image tokens (see the module doc)."""
    f = settings.facts
    sizes = layer_sizes(variant, settings)
    blocks = f.num_hidden_layers
    total_layers = blocks + 1
    n_ctx = tokens + f.prompt_token_budget + settings.max_new_tokens
    kv_block = n_ctx * f.kv_bytes_per_token(BF16) // blocks  # f16 K and V of one block
    vision = f.vision_activation_bytes(f.pixels_for_tokens(tokens), dtype_bytes=BF16)
    projector = sizes["mmproj"] + vision
    fixed = LLAMACPP_CUDA_CONTEXT_BYTES + LLAMACPP_COMPUTE_BYTES
    every_layer = sizes["output"] + blocks * (sizes["block"] + kv_block)
    full_need = fixed + every_layer + projector

    budget = device.free_bytes - settings.reserve_for(device.total_bytes) if device else 0
    if device is not None and full_need <= budget:
        gpu_layers, projector_on_gpu = total_layers, True
    else:
        room = budget - fixed
        gpu_layers = 0
        if device is not None and room >= sizes["output"]:
            gpu_layers = 1 + min(blocks, (room - sizes["output"]) // (sizes["block"] + kv_block))
        projector_on_gpu = gpu_layers == total_layers and fixed + every_layer + projector <= budget
    gpu_blocks = max(0, gpu_layers - 1)
    on_gpu = 0
    if gpu_layers:
        on_gpu = fixed + sizes["output"] + gpu_blocks * (sizes["block"] + kv_block)
        on_gpu += projector if projector_on_gpu else 0
    cpu_blocks = blocks - gpu_blocks
    ram = LLAMACPP_RUNTIME_BYTES + sizes["embedding"] + cpu_blocks * (sizes["block"] + kv_block)
    ram += 0 if gpu_layers else sizes["output"]
    ram += 0 if projector_on_gpu else projector

    full = gpu_layers == total_layers and projector_on_gpu
    machine = settings.cpu_ram_bytes
    ram_budget = machine - settings.reserve_for(machine) if machine else None
    ram_fits = ram_budget is None or ram <= ram_budget
    if full:
        fits = True
    elif not _may_split(variant, settings):
        fits = False
    elif gpu_layers == 0:
        fits = _cpu_allowed(settings) and ram_fits
    else:
        fits = ram_fits
    memory = "gpu" if gpu_layers else "ram"
    # What the plan takes from what it is budgeted against: the GPU when a layer is there, else RAM.
    # A quantization that had to fit whole reports the whole-GPU need when it misses.
    whole_miss = device is not None and not fits and not _may_split(variant, settings)
    if whole_miss:
        memory, need, against = "gpu", full_need, budget
    elif memory == "gpu":
        need, against = on_gpu, budget
    else:
        need, against = ram, ram_budget if ram_budget is not None else ram
    return Estimate(
        fits=fits,
        need_bytes=need,
        budget_bytes=against,
        parts={
            "weights": (sizes["output"] + gpu_blocks * sizes["block"])
            if gpu_layers and not whole_miss
            else sizes["lm_file"],
            "activations": vision if projector_on_gpu or not gpu_layers else 0,
            "kv_cache": gpu_blocks * kv_block if gpu_layers else blocks * kv_block,
            "projector": sizes["mmproj"] if projector_on_gpu or not gpu_layers else 0,
            "cuda_context": LLAMACPP_CUDA_CONTEXT_BYTES if gpu_layers else 0,
            "compute_buffer": LLAMACPP_COMPUTE_BYTES if gpu_layers else 0,
            "ram": ram,
        },
        params={
            "quantization": variant.weights,
            "dtype": None,
            "memory": memory,
            "gpu_layers": gpu_layers,
            "total_layers": total_layers,
            "projector_on_gpu": projector_on_gpu,
            "projector_type": gguf_files.gguf_model(settings.llamacpp_model).pair(variant.weights).projector_type,
            "n_ctx": n_ctx,
            "ram_bytes": ram,
            "ram_known": ram_budget is not None,
            "full_need": full_need,
            "mmproj_bytes": sizes["mmproj"],
            "cpu_weights": sizes["embedding"] + cpu_blocks * sizes["block"] + (0 if gpu_layers else sizes["output"]),
        },
    )


def reasons(est: Estimate, settings: PlannerSettings, tokens: int) -> list[str]:
    """The sentences that explain a llama.cpp plan, after the generic 'needs … fits' one."""
    p, f = est.params, settings.facts
    out = []
    layers, total = p["gpu_layers"], p["total_layers"]
    if layers == total:
        out.append(
            f"All {total} layers of the {p['quantization']} language model (28 blocks and the output layer) "
            "go on the GPU."
        )
    elif layers:
        out.append(
            f"Only {layers} of {total} layers fit on the GPU (the output layer first, then blocks from the last): "
            f"a full GPU plan needs {gib_text(p['full_need'])}, {gib_text(est.budget_bytes)} is available. "
            f"The remaining {total - layers} run on the CPU."
        )
    else:
        out.append(
            f"No layer fits on a GPU, so the {p['quantization']} language model runs on the CPU (gpu_layers 0) "
            "with every core."
        )
    where = "on the GPU" if p["projector_on_gpu"] else "on the CPU"
    out.append(f"The vision projector ({p['projector_type']}, {gib_text(p['mmproj_bytes'])}) runs {where}.")
    out.append(
        f"Context {p['n_ctx']:,} tokens = {tokens:,} image tokens + {f.prompt_token_budget} for the prompt + "
        f"{settings.max_new_tokens:,} output tokens."
    )
    known = "" if p["ram_known"] else " (the RAM available is unknown: not checked)"
    out.append(f"RAM for the part on the CPU: {gib_text(p['ram_bytes'])}{known}.")
    if layers < total:
        rate = CPU_DECODE_BYTES_PER_SECOND / max(1, p["cpu_weights"])
        minutes = TYPICAL_PAGE_TOKENS / rate / 60
        out.append(
            f"Expect it to be slow: each output token reads the {gib_text(p['cpu_weights'])} of weights on the CPU, "
            f"about {rate:.0f} tokens/s at {CPU_DECODE_BYTES_PER_SECOND / 1e9:.0f} GB/s of memory bandwidth, so "
            f"{math.ceil(minutes)} min or more for a page of {TYPICAL_PAGE_TOKENS:,} tokens"
            + ("" if p["projector_on_gpu"] else ", plus the vision encoder on the CPU (minutes for a large page)")
            + "."
        )
    return out


def as_plan_fields(est: Estimate) -> dict:
    """The Plan's llama.cpp fields from an estimate."""
    p = est.params
    return {key: p[key] for key in ("gpu_layers", "total_layers", "projector_on_gpu", "projector_type", "n_ctx")}


__all__ = ["GiB", "as_plan_fields", "estimate", "layer_sizes", "reasons", "unavailable"]
