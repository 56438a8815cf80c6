"""The search: for each candidate in order, the largest page image whose estimate fits; the first
candidate that fits at the floor or above becomes the Plan. Also the later checks: whether a plan
still fits (`fits_now`) and the next plan after CUDA ran out of memory (`replan_after_oom`)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from core import backends
from core.backends import AUTO, LLAMACPP, TRANSFORMERS, VARIANT_BY_KEY, VARIANTS, VLLM, Variant
from core.modelfacts import A4_200DPI_PIXELS
from core.planner import llamacpp
from core.planner.estimates import (
    CUDA_CONTEXT_BYTES,
    CUDA_GRAPH_BYTES,
    FP8_W8A8_MIN_CC,
    Estimate,
    estimate_for,
    unavailable,
)
from core.planner.plan import (
    Device,
    Plan,
    PlannerSettings,
    PlanRefused,
    cc_text,
    devices_of,
    gib_text,
    mp_text,
    variant_label,
)


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
    why = unavailable(variant, device, settings)
    if why:
        return _Fit(variant, device, None, None, unavailable=why)
    cap = settings.cap_tokens if cap_tokens is None else min(cap_tokens, settings.cap_tokens)
    lo = min(settings.floor_tokens, cap)
    at_floor = estimate_for(variant, device, lo, settings)
    if not at_floor.fits:
        return _Fit(variant, device, None, None, floor_estimate=at_floor)
    at_cap = estimate_for(variant, device, cap, settings)
    if at_cap.fits:
        return _Fit(variant, device, cap, at_cap)
    best, hi = at_floor, cap - 1  # the estimates grow with the image: bisect for the largest fit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        est = estimate_for(variant, device, mid, settings)
        if est.fits:
            best, lo = est, mid
        else:
            hi = mid - 1
    return _Fit(variant, device, lo, best)


# -- the planner ---------------------------------------------------------------------------------


def _memory(variant: Variant) -> str:
    """What the planner budgets this candidate against: "gpu", "ram" or "none" (the registry's)."""
    return backends.get(variant.backend).memory


def _candidates(settings: PlannerSettings) -> list[Variant]:
    if settings.backend == AUTO:
        return list(VARIANTS)
    return [v for v in VARIANTS if v.backend == settings.backend]


def _situation(devices: list[Device], settings: PlannerSettings, snapshot_error: str | None) -> list[str]:
    if not devices:
        return [snapshot_error.rstrip(".") + "." if snapshot_error else "No NVIDIA GPU is visible."]
    lines = []
    for d in devices:
        reserve = settings.reserve_for(d.total_bytes)
        lines.append(
            f"GPU {d.index} ({d.name}, compute capability {cc_text(d.compute_capability)}): "
            f"{gib_text(d.free_bytes, 2)} free of {gib_text(d.total_bytes, 2)}; keeping {gib_text(reserve)} for others "
            f"({gib_text(settings.reserve_bytes)} + {settings.reserve_fraction:.0%} of the card) leaves "
            f"{gib_text(max(0, d.free_bytes - reserve))}."
        )
    return lines


def _miss_sentence(fit: _Fit, settings: PlannerSettings) -> str:
    est = fit.floor_estimate
    where = "RAM" if est.params.get("memory", _memory(fit.variant)) == "ram" else "memory"
    size = mp_text(settings.facts.pixels_for_tokens(settings.floor_tokens))
    return (
        f"{variant_label(fit.variant, _dtype_of(fit))} needs {gib_text(est.need_bytes)} even at {size} per page "
        f"(weights {gib_text(est.parts['weights'])}), more than the {gib_text(max(0, est.budget_bytes))} of {where} "
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
    return tuple(v.key for v in later if _memory(v) == "none" or not unavailable(v, roomiest, settings))


def _plan_from_fit(fit: _Fit, settings: PlannerSettings, reasons: list[str], devices: list[Device]) -> Plan:
    v, f = fit.variant, settings.facts
    fallbacks = _fallbacks_after(v, settings, devices)
    if _memory(v) == "none":
        reasons.append("→ rapidocr on the CPU: plain text without dots.ocr's layout.")
        return Plan(
            backend=v.backend, variant=v.key, quantization=None, dtype=None, device_index=None,
            device_name=None, max_pixels=None, max_image_tokens=None, max_new_tokens=None,
            estimated_bytes=0, budget_bytes=None, memory="none", reasons=tuple(reasons),
            fallbacks=fallbacks, settings=settings,
        )  # fmt: skip
    if v.backend == VLLM.name and settings.vllm_external:
        tokens = settings.cap_tokens
        reasons.append(
            "An external vLLM server is configured: its memory was planned where it runs, so ocrdash only "
            f"limits each request (max {mp_text(f.pixels_for_tokens(tokens))} per page, "
            f"{settings.max_new_tokens:,} output tokens)."
        )
        plan = Plan(
            backend=v.backend, variant=v.key, quantization=None, dtype=None, device_index=None, device_name=None,
            max_pixels=f.pixels_for_tokens(tokens), max_image_tokens=tokens,
            max_new_tokens=settings.max_new_tokens, estimated_bytes=0, budget_bytes=None, memory="none",
            reasons=(), fallbacks=fallbacks, vllm_external=True,
            max_model_len=tokens + f.prompt_token_budget + settings.max_new_tokens, settings=settings,
            pages_at_once=settings.max_pages_at_once,
            pages_at_once_reason=(
                f"{_pages(settings.max_pages_at_once)} at once (the settings' limit): the external server plans its "
                "own KV cache and queues the requests it cannot hold yet."
            ),
        )  # fmt: skip
        reasons.append(plan.pages_at_once_reason)
        reasons.append(f"→ {plan.summary}.")
        return replace(plan, reasons=tuple(reasons))
    tokens = fit.tokens
    est, at_once, at_once_reason = _pages_at_once(fit, settings)
    pixels = f.pixels_for_tokens(tokens)
    p = est.params
    where = "RAM" if p.get("memory", _memory(v)) == "ram" else "memory"
    size_note = ""
    if tokens < settings.cap_tokens:
        cap_mp = mp_text(f.pixels_for_tokens(settings.cap_tokens))
        size_note = f", the largest image that fits (the settings allow up to {cap_mp})"
    label = variant_label(v, p.get("dtype"))
    reasons.append(
        f"{label} needs {gib_text(est.need_bytes)} at {mp_text(pixels)} per page{size_note}: "
        f"weights {gib_text(est.parts['weights'])}, activations {gib_text(est.parts['activations'])}, "
        f"KV cache {gib_text(est.parts['kv_cache'])}; it fits in the {gib_text(est.budget_bytes)} of {where} "
        "available."
    )
    if p.get("dtype") in ("float16", "fp16") and fit.device is not None:
        reasons.append(
            f"Compute capability {cc_text(fit.device.compute_capability)} has no bf16, so it runs in float16 "
            "(vLLM asks for --dtype half on such cards); dots.ocr's weights are bf16, so check its output."
        )
    if pixels < A4_200DPI_PIXELS:
        dpi = 200 * math.sqrt(pixels / A4_200DPI_PIXELS)
        reasons.append(f"At {mp_text(pixels)} an A4 page is read at about {dpi:.0f} dpi (dots.ocr suggests 200).")
    common = dict(
        backend=v.backend, variant=v.key, quantization=p.get("quantization"), dtype=p.get("dtype"),
        device_index=fit.device.index if fit.device else None,
        device_name=fit.device.name if fit.device else None, max_pixels=pixels, max_image_tokens=tokens,
        max_new_tokens=settings.max_new_tokens, estimated_bytes=est.need_bytes, budget_bytes=est.budget_bytes,
        memory=_memory(v), fallbacks=fallbacks, parts=dict(est.parts),
        settings=settings, pages_at_once=at_once, pages_at_once_reason=at_once_reason,
    )  # fmt: skip
    if v.backend == VLLM.name:
        d = fit.device
        util = p["gpu_memory_utilization"]
        reasons.append(
            f"gpu_memory_utilization {util:g}: vLLM compares {util:g} × {gib_text(d.total_bytes)} = "
            f"{gib_text(util * d.total_bytes)} with the free memory when it starts; with its own "
            f"{gib_text(CUDA_CONTEXT_BYTES)} CUDA context that stays within the {gib_text(est.budget_bytes)} left "
            "after the reserve."
        )
        reasons.append(
            f"max_model_len {p['max_model_len']:,} = {tokens:,} image tokens + {f.prompt_token_budget} "
            f"for the prompt + {settings.max_new_tokens:,} output tokens; max_pixels {pixels:,} goes to "
            "vLLM's processor so profiling and requests use the same image size."
        )
        if p["enforce_eager"]:
            reasons.append(f"enforce_eager: the {gib_text(CUDA_GRAPH_BYTES)} CUDA graphs would take is not left over.")
        if v.weights == "fp8":
            cc = fit.device.compute_capability
            kind = "W8A8" if cc >= FP8_W8A8_MIN_CC else "weight-only W8A16 through the FP8 Marlin kernel"
            reasons.append(
                f"fp8 ({kind} on compute capability {cc_text(cc)}) quantizes the language model's linear layers "
                "online; loading still needs room for the bf16 weights."
            )
        plan = Plan(
            **common, reasons=(),
            gpu_memory_utilization=util, max_model_len=p["max_model_len"], max_num_seqs=p["max_num_seqs"],
            max_num_batched_tokens=p["max_num_batched_tokens"], enforce_eager=p["enforce_eager"],
            kv_cache_bytes=p["kv_cache_bytes"],
        )  # fmt: skip
    elif v.backend == TRANSFORMERS.name:
        plan = Plan(**common, reasons=(), max_memory=dict(p["max_memory"]))
    elif v.backend == LLAMACPP.name:
        reasons.extend(llamacpp.reasons(est, settings, tokens))
        common.update(memory=p["memory"], device_index=common["device_index"] if p["gpu_layers"] else None,
                      device_name=common["device_name"] if p["gpu_layers"] else None)  # fmt: skip
        plan = Plan(**common, reasons=(), **llamacpp.as_plan_fields(est))
    else:
        plan = Plan(**common, reasons=())
    reasons.append(at_once_reason)
    reasons.append(f"→ {plan.summary}.")
    return replace(plan, reasons=tuple(reasons))


def _pages(n: int) -> str:
    return f"{n} page{'s' if n != 1 else ''}"


def _limited(n: int, cap: int, room: int, where: str) -> str:
    """What held the number of pages at once down: the settings' limit or the memory."""
    if n >= cap:
        return f"the settings allow at most {cap} (OCRDASH_MAX_PAGES_AT_ONCE)."
    return f"the {gib_text(room)} of {where} left after one page holds {n - 1} more."


def _pages_at_once(fit: _Fit, settings: PlannerSettings) -> tuple[Estimate, int, str]:
    """How many pages of a document run at the same time on this fit, the estimate for that many,
    and why, in a sentence. The image size was chosen first (for one page); pages at once fill the
    memory left over, never shrinking the image or the output budget."""
    est, v, f, cap = fit.estimate, fit.variant, settings.facts, settings.max_pages_at_once
    per_page = int(est.params.get("per_page_bytes") or 0)
    room = max(0, est.budget_bytes - est.need_bytes)
    where = "RAM" if _memory(v) == "ram" else "memory"
    if v.backend == VLLM.name:

        def fits(n: int) -> Estimate | None:
            e = estimate_for(v, fit.device, fit.tokens, replace(settings, vllm_max_num_seqs=n))
            # More pages in flight must not cost the CUDA graphs (decoding speed) one page keeps.
            keeps_graphs = e.params["enforce_eager"] == est.params["enforce_eager"]
            return e if e.fits and keeps_graphs else None

        lo, hi = 1, cap
        while lo < hi:  # more sequences only cost KV cache: bisect for the most that fit
            mid = (lo + hi + 1) // 2
            if fits(mid) is not None:
                lo = mid
            else:
                hi = mid - 1
        n = lo
        best = fits(n) or est
        room = max(0, est.budget_bytes - est.need_bytes)
        why = (
            f"{_pages(n)} at once: each page in flight reserves {est.params['max_model_len']:,} tokens of KV cache "
            f"({fit.tokens:,} image tokens + {f.prompt_token_budget} for the prompt + {settings.max_new_tokens:,} "
            f"output tokens = {gib_text(per_page, 2)}); {_limited(n, cap, room, where)} "
            f"vLLM is started with --max-num-seqs {n}."
        )
        return best, n, why
    if not per_page:
        return est, 1, "1 page at a time."
    n = max(1, min(cap, 1 + room // per_page))
    bigger = replace(est, need_bytes=est.need_bytes + (n - 1) * per_page)
    why = (
        f"{_pages(n)} at once in one batch: each page adds {gib_text(per_page, 2)} of activations and KV cache "
        f"({fit.tokens:,} image tokens, {settings.max_new_tokens:,} output tokens); {_limited(n, cap, room, where)}"
    )
    return bigger, n, why


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
        if _memory(v) == "none":
            found = _Fit(v, None, None, None)
            break
        if v.backend == VLLM.name and settings.vllm_external:
            why = unavailable(v, None, settings)
            if why is None:
                found = _Fit(v, None, settings.cap_tokens, None)
                break
            skipped.setdefault(why, []).append(v.label)
            continue
        targets = ordered if _memory(v) == "gpu" and ordered else [None]
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
    if settings.backend != AUTO:
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
            f"GPU {device.index} now has {gib_text(device.free_bytes, 2)} free; {plan.label} needs "
            f"{gib_text(plan.estimated_bytes)} plus the {gib_text(settings.reserve_for(device.total_bytes))} reserve."
        )
    return (
        True,
        f"GPU {device.index} still has room: {gib_text(budget)} available, {gib_text(plan.estimated_bytes)} needed.",
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
                f"The external vLLM server ran out of memory at {mp_text(plan.max_pixels)} per page; retrying "
                f"once at {mp_text(pixels)}."
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
                f"CUDA ran out of memory with {plan.label} at {mp_text(plan.max_pixels)} per page; retrying "
                f"once at {mp_text(settings.facts.pixels_for_tokens(fit.tokens))} on the same backend.",
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
        raise PlanRefused(reasons, settings.backend, f"CUDA ran out of memory with {plan.label} and no fallback fits.")
    new = _plan_from_fit(fit, settings, reasons, devices)
    # Keep the original order: the next fallbacks are those after the chosen one in the old list.
    later = plan.fallbacks[plan.fallbacks.index(fit.variant.key) + 1 :]
    return replace(new, fallbacks=tuple(later))
