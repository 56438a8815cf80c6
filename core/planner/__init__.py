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

The estimate of each backend (every constant is named in core/planner/estimates.py and core/modelfacts.py;
the modules: plan.py holds the inputs and the Plan, estimates.py the formulas, search.py the search):

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

Pages at once (`Plan.pages_at_once`, with its sentence `pages_at_once_reason` among the reasons):
the image size is chosen for one page; then as many pages of a document as the memory left holds
run together, up to `PlannerSettings.max_pages_at_once`. vLLM: the largest `max_num_seqs` whose KV
cache of whole pages (max_model_len each) still fits and keeps the CUDA graphs one page had;
transformers and the CPU: the batch whose per-page activations and KV cache fit; an external vLLM
server: the setting's number; rapidocr: one.

Later checks: `fits_now(plan, snapshot)` says whether a plan still fits just before it is started
(another process may have grown since), and `replan_after_oom(plan, snapshot)` gives the next plan
after CUDA ran out of memory: the same backend once at about half the image, then `plan.fallbacks`.
"""

from core.planner.estimates import CUDA_CONTEXT_BYTES, VLLM_NON_TORCH_BYTES, torch_bytes_budgeted
from core.planner.plan import BACKEND_SETTINGS, Device, Plan, PlannerSettings, PlanRefused, devices_of, parse_size
from core.planner.search import fits_now, make_plan, replan_after_oom

__all__ = [
    "BACKEND_SETTINGS",
    "CUDA_CONTEXT_BYTES",
    "VLLM_NON_TORCH_BYTES",
    "Device",
    "Plan",
    "PlanRefused",
    "PlannerSettings",
    "devices_of",
    "fits_now",
    "make_plan",
    "parse_size",
    "replan_after_oom",
    "torch_bytes_budgeted",
]
