"""The planner's llama.cpp plans: the layers on the GPU from the free memory, the projector's place,
the context, the RAM, and where llama.cpp stands in the automatic choice."""

from dataclasses import replace

import pytest

from core.backends import VARIANTS
from core.gguf_files import Q4_K_M, Q8_0
from core.modelfacts import GiB
from core.planner import Device, PlannerSettings, PlanRefused, make_plan
from core.planner.llamacpp import layer_sizes

FORCED = PlannerSettings(backend="llamacpp")


def card(total_gib, free_gib, cc=(8, 6)):
    return [Device(0, int(total_gib * GiB), int(free_gib * GiB), cc, "test card")]


def test_a_small_card_with_little_free_memory_gets_a_partial_offload():
    plan = make_plan(card(4, 1.5), FORCED)
    assert plan.backend == "llamacpp"
    assert 0 < plan.gpu_layers < plan.total_layers == 29
    assert plan.quantization == Q4_K_M and plan.projector_on_gpu is False
    assert plan.memory == "gpu" and plan.estimated_bytes <= plan.budget_bytes
    assert any(f"Only {plan.gpu_layers} of 29 layers fit on the GPU" in r for r in plan.reasons)
    assert any(r.startswith("Expect it to be slow") for r in plan.reasons)


def test_a_large_free_card_gets_every_layer_and_the_projector_in_q8_0():
    plan = make_plan(card(80, 70), FORCED)
    assert plan.gpu_layers == plan.total_layers == 29
    assert plan.projector_on_gpu and plan.quantization == Q8_0 and plan.projector_type == "F16"
    assert plan.max_pixels == FORCED.max_pixels  # nothing had to shrink
    assert not any("slow" in r for r in plan.reasons)


def test_no_gpu_plans_the_cpu_and_says_how_slow_it_will_be():
    plan = make_plan(None, replace(FORCED, cpu_ram_bytes=64 * GiB))
    assert plan.gpu_layers == 0 and plan.memory == "ram" and plan.device_index is None
    assert "on the CPU" in plan.summary
    slow = next(r for r in plan.reasons if r.startswith("Expect it to be slow"))
    assert "tokens/s" in slow and "vision encoder on the CPU" in slow


def test_too_little_for_one_layer_plans_the_cpu():
    plan = make_plan(card(4, 0.9), FORCED)
    assert plan.gpu_layers == 0 and plan.memory == "ram"
    assert any("No layer fits on a GPU" in r for r in plan.reasons)


def test_more_free_memory_never_puts_fewer_layers_on_the_gpu():
    last = -1
    for tenths in range(5, 120):
        plan = make_plan(card(12, tenths / 10), FORCED)
        layers = plan.gpu_layers + (1 if plan.projector_on_gpu else 0)
        if plan.quantization == Q4_K_M:
            assert layers >= last
            last = layers
        if plan.memory == "gpu":
            assert plan.estimated_bytes <= plan.budget_bytes


def test_the_context_is_the_page_image_tokens_plus_the_prompt_and_the_output_budget():
    plan = make_plan(card(80, 70), replace(FORCED, max_new_tokens=4096))
    assert plan.n_ctx == plan.max_image_tokens + 512 + 4096
    assert any(r.startswith(f"Context {plan.n_ctx:,} tokens") for r in plan.reasons)
    assert plan.as_json()["n_ctx"] == plan.n_ctx


def test_the_automatic_choice_prefers_a_whole_gpu_plan_then_a_split_then_the_cpu():
    assert make_plan(card(24, 23.5)).backend == "vllm"
    split = make_plan(card(4, 1.5))
    assert split.backend == "llamacpp" and 0 < split.gpu_layers < 29
    assert make_plan(None).backend == "rapidocr"  # the CPU part needs the admin's allow_cpu
    cpu = make_plan(None, PlannerSettings(allow_cpu=True, cpu_ram_bytes=64 * GiB))
    assert cpu.backend == "llamacpp" and cpu.gpu_layers == 0
    without = make_plan(card(4, 1.5), PlannerSettings(llamacpp_unavailable="llama-cpp-python is not installed"))
    assert without.backend == "rapidocr"
    assert any("llama-cpp-python is not installed" in r for r in without.reasons)


def test_a_better_quantization_must_fit_whole_and_the_last_available_one_is_split():
    only_q8 = make_plan(card(4, 1.5), replace(FORCED, llamacpp_quantizations=(Q8_0,)))
    assert only_q8.quantization == Q8_0 and 0 < only_q8.gpu_layers < 29
    whole_q8 = make_plan(card(8, 7.5), FORCED)
    assert whole_q8.quantization == Q8_0 and whole_q8.gpu_layers == 29


def test_without_gguf_files_llamacpp_is_refused_with_the_command_that_fetches_them():
    with pytest.raises(PlanRefused) as refused:
        make_plan(card(24, 20), replace(FORCED, llamacpp_quantizations=()))
    assert any("fetch_model --gguf" in r for r in refused.value.reasons)


def test_the_cpu_part_must_fit_the_ram_when_the_ram_is_known():
    with pytest.raises(PlanRefused) as refused:
        make_plan(None, replace(FORCED, cpu_ram_bytes=2 * GiB))
    assert "does not fit" in refused.value.headline


def test_the_layer_sizes_add_up_to_the_published_files():
    for quantization, size in ((Q8_0, 1.762), (Q4_K_M, 1.038)):
        variant = next(v for v in VARIANTS if v.weights == quantization)
        s = layer_sizes(variant, FORCED)
        total = s["embedding"] + s["output"] + 28 * s["block"]
        assert abs(total - size * GiB) < 28 and s["block"] > 0
