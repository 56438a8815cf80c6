"""The memory planner: table tests over real-world cards, and properties over a grid of cards."""

from dataclasses import replace

import pytest

from core.gpu import GpuDevice, GpuSnapshot
from core.modelfacts import A4_200DPI_PIXELS, DOTS_OCR, MIN_USEFUL_PIXELS, GiB, MiB
from core.planner import (
    CUDA_CONTEXT_BYTES,
    VLLM_NON_TORCH_BYTES,
    Device,
    PlannerSettings,
    PlanRefused,
    devices_of,
    fits_now,
    make_plan,
    parse_size,
    replan_after_oom,
)

DEFAULTS = PlannerSettings()


def card(total_gib, free_gib, cc=(8, 6), index=0, name="test card"):
    return Device(index, int(total_gib * GiB), int(free_gib * GiB), cc, name)


def snapshot(*devices, error=None):
    return GpuSnapshot(
        taken_at=0.0,
        devices=tuple(
            GpuDevice(
                index=d.index,
                uuid=f"GPU-{d.index}",
                name=d.name,
                total_bytes=d.total_bytes,
                used_bytes=d.total_bytes - d.free_bytes,
                free_bytes=d.free_bytes,
                compute_capability=d.compute_capability,
            )
            for d in devices
        ),
        error=error,
    )


SEED = snapshot(card(11.94, 5.81, name="NVIDIA GeForce RTX 3060"))


# -- the model facts -----------------------------------------------------------------------------


def test_the_model_facts_match_dots_ocr_config():
    f = DOTS_OCR
    assert f.head_dim == 128
    assert f.kv_bytes_per_token() == 28_672
    assert f.pixels_per_token == 28 * 28
    assert f.max_image_tokens == 14_400
    assert round(f.lm_params / 1e9, 2) == 1.78
    assert round(f.vision_params / 1e9, 2) == 1.26
    assert round(f.total_params / 1e9, 2) == 3.04
    assert round(f.weight_bytes("bf16") / 1e9, 1) == 6.1


def test_quantized_weights_are_smaller_in_the_expected_order():
    f = DOTS_OCR
    sizes = [f.weight_bytes(s) for s in ("float32", "bf16", "fp8", "int8", "nf4")]
    assert sizes == sorted(sizes, reverse=True)
    assert f.weight_bytes("float32") == 2 * f.weight_bytes("bf16")


def test_an_a4_page_at_200_dpi_is_about_4900_tokens():
    assert DOTS_OCR.tokens_for_pixels(A4_200DPI_PIXELS) == 4_956
    assert DOTS_OCR.tokens_for_pixels(MIN_USEFUL_PIXELS) == 1_280
    assert DOTS_OCR.pixels_for_tokens(1_280) == MIN_USEFUL_PIXELS


@pytest.mark.parametrize("pixels", [3_136, 784 * 1000 + 5, MIN_USEFUL_PIXELS, 11_289_600, 50_000_000])
def test_tokens_for_pixels_bounds_any_image_resized_to_that_many_pixels(pixels):
    tokens = DOTS_OCR.tokens_for_pixels(pixels)
    assert tokens * 784 <= max(min(pixels, DOTS_OCR.max_pixels), DOTS_OCR.min_pixels)
    assert tokens <= DOTS_OCR.max_image_tokens


def test_vision_memory_grows_linearly_with_the_image():
    f = DOTS_OCR
    small = f.vision_activation_bytes(MIN_USEFUL_PIXELS)
    big = f.vision_activation_bytes(4 * MIN_USEFUL_PIXELS)
    assert 3.5 * small < big < 4.5 * small
    patches = f.tokens_for_pixels(f.max_pixels) * f.patches_per_token
    one_score_matrix_per_head = patches * patches * f.vision_num_heads * 2
    assert f.vision_activation_bytes(f.max_pixels) < one_score_matrix_per_head / 10


# -- the table -----------------------------------------------------------------------------------

NO_GGUF = {"llamacpp_unavailable": "llama-cpp-python is not installed"}
CASES = [
    # id, gpu, settings changes, expected variant
    ("seed-12gb-5.81-free", SEED, {}, "transformers:nf4"),
    ("no-gpu-cpu-not-allowed", snapshot(error="No NVIDIA GPU visible."), {}, "rapidocr"),
    ("no-gpu-cpu-allowed", None, {"allow_cpu": True, "cpu_ram_bytes": 64 * GiB}, "llamacpp:q4_k_m"),
    ("no-gpu-cpu-allowed-no-gguf", None, {"allow_cpu": True, "cpu_ram_bytes": 64 * GiB, **NO_GGUF}, "cpu:float32"),
    ("no-gpu-cpu-allowed-too-little-ram", None, {"allow_cpu": True, "cpu_ram_bytes": 4 * GiB}, "rapidocr"),
    ("4gb-idle", [card(4, 3.8)], {}, "llamacpp:q4_k_m"),
    ("4gb-idle-no-gguf", [card(4, 3.8)], NO_GGUF, "rapidocr"),
    ("6gb-idle", [card(6, 5.7)], {}, "transformers:int8"),
    ("8gb-ampere-idle", [card(8, 7.7, (8, 6))], {}, "vllm:fp8"),
    ("8gb-ada-idle", [card(8, 7.7, (8, 9))], {}, "vllm:fp8"),
    ("8gb-ada-fp8-off", [card(8, 7.7, (8, 9))], {"fp8_allowed": False}, "transformers:int8"),
    ("8gb-turing-idle", [card(8, 7.7, (7, 5))], {}, "transformers:int8"),
    ("12gb-idle", [card(12, 11.6)], {}, "vllm:bf16"),
    ("16gb-idle", [card(16, 15.6)], {}, "vllm:bf16"),
    ("16gb-turing-idle", [card(16, 15.6, (7, 5))], {}, "vllm:bf16"),
    ("24gb-idle", [card(24, 23.5)], {}, "vllm:bf16"),
    ("80gb-hopper-idle", [card(80, 79.2, (9, 0))], {}, "vllm:bf16"),
    ("24gb-2gb-free", [card(24, 2)], {}, "rapidocr"),
    ("24gb-6.5gb-free", [card(24, 6.5)], {}, "transformers:nf4"),
    ("24gb-9gb-free", [card(24, 9)], {}, "vllm:fp8"),
    ("24gb-idle-no-vllm", [card(24, 23.5)], {"vllm_allowed": False}, "transformers:bf16"),
    ("external-vllm-no-local-gpu", None, {"vllm_external": True}, "vllm:bf16"),
]


@pytest.mark.parametrize("gpu,changes,expected", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_it_picks_the_first_backend_that_fits(gpu, changes, expected):
    plan = make_plan(gpu, replace(DEFAULTS, **changes))
    assert plan.variant == expected
    assert plan.reasons[-1].startswith("→ ")
    if plan.memory == "gpu":
        assert plan.estimated_bytes <= plan.budget_bytes


def test_the_seed_card_gets_a_4_bit_plan_and_says_why_vllm_does_not_fit():
    plan = make_plan(SEED)
    assert plan.backend == "transformers"
    assert plan.quantization == "nf4"
    # An A4 page at 200 dpi fits whole: the vision tower's attention is linear in the patches.
    assert A4_200DPI_PIXELS <= plan.max_pixels < DOTS_OCR.max_pixels
    text = " ".join(plan.reasons)
    assert "5.81 GiB free of 11.94 GiB" in text
    assert "vLLM bf16 needs" in text and "does not fit" in text
    assert "transformers 8-bit needs" in text
    assert plan.max_memory == {0: plan.max_memory[0]} and plan.max_memory[0] >= DOTS_OCR.weight_bytes("nf4")
    assert plan.as_json()["quantization"] == "nf4"


def test_the_usual_hand_fix_would_not_even_hold_the_weights():
    # 0.4 × 11.94 GiB is less than dots.ocr's bf16 weights: the plan never proposes that.
    assert 0.4 * 11.94 * GiB < DOTS_OCR.weight_bytes("bf16")
    vllm_plans = [make_plan([card(total, free)]) for total, free in [(11.94, 11.5), (11.94, 9.5), (16, 12)]]
    assert [p.variant for p in vllm_plans] == ["vllm:bf16"] * 3
    for plan, total in zip(vllm_plans, [11.94, 11.94, 16], strict=True):
        assert plan.gpu_memory_utilization * total * GiB > plan.parts["weights"] + plan.parts["kv_cache"]
        assert plan.max_model_len > 1024 + 4_956, "a 1024-token context cannot hold one A4 page"


def test_an_idle_24gb_card_runs_vllm_at_full_size_and_leaves_the_rest_to_others():
    plan = make_plan([card(24, 23.5)])
    assert plan.max_pixels == DOTS_OCR.max_pixels
    assert plan.max_model_len == 14_400 + 512 + 24_000
    assert plan.enforce_eager is False
    one_page = make_plan([card(24, 23.5)], PlannerSettings(max_pages_at_once=1))
    assert one_page.gpu_memory_utilization < 0.6
    # More pages at once only take what is left after the reserve for others.
    assert plan.pages_at_once == 4
    assert plan.gpu_memory_utilization * 24 * GiB <= 23.5 * GiB - PlannerSettings().reserve_for(24 * GiB)
    flags = plan.vllm_args()
    assert flags[flags.index("--max-model-len") + 1] == "38912"
    assert '{"min_pixels": 3136, "max_pixels": 11289600}' in flags
    assert "--quantization" not in flags and "--enforce-eager" not in flags


def test_a_80gb_card_gets_a_small_fraction_not_ninety_percent():
    plan = make_plan([card(80, 79.2, (9, 0))])
    assert plan.gpu_memory_utilization <= 0.2


def test_ada_runs_fp8_w8a8_where_bf16_does_not_fit():
    plan = make_plan([card(8, 7.7, (8, 9))])
    assert plan.quantization == "fp8"
    assert "--quantization" in plan.vllm_args()
    assert any("W8A8" in r for r in plan.reasons)
    assert any("vLLM bf16 needs" in r and "does not fit" in r for r in plan.reasons)


def test_turing_has_no_bf16_so_vllm_runs_in_float16():
    plan = make_plan([card(16, 15.6, (7, 5))])
    assert plan.dtype == "float16"
    assert "half" in " ".join(plan.reasons)


def test_the_image_shrinks_before_the_backend_does():
    plan = make_plan([card(12, 11.6)])
    assert plan.backend == "vllm" and plan.quantization is None
    assert MIN_USEFUL_PIXELS < plan.max_pixels < DOTS_OCR.max_pixels
    assert any("the largest image that fits" in r for r in plan.reasons)


def test_it_uses_the_gpu_with_the_most_room():
    plan = make_plan([card(24, 3, index=0), card(24, 23, index=1)])
    assert plan.device_index == 1 and plan.backend == "vllm"


def test_it_reads_a_workers_gpu_snapshot():
    devices = devices_of(SEED)
    assert devices[0].name == "NVIDIA GeForce RTX 3060"
    assert devices[0].total_bytes == int(11.94 * GiB)
    assert devices_of(None) == []


def test_a_snapshot_error_is_the_first_reason():
    plan = make_plan(snapshot(error="No NVIDIA GPU visible: jobs run on the CPU."))
    assert plan.reasons[0] == "No NVIDIA GPU visible: jobs run on the CPU."
    assert any("Not considered: vLLM bf16, vLLM fp8, transformers bf16" in r for r in plan.reasons)


def test_the_output_budget_and_the_image_cap_come_from_the_settings():
    plan = make_plan([card(24, 23.5)], replace(DEFAULTS, max_new_tokens=4096, max_pixels=A4_200DPI_PIXELS))
    assert plan.max_new_tokens == 4096
    assert plan.max_pixels == A4_200DPI_PIXELS
    assert plan.max_model_len == 4_956 + 512 + 4096


def test_external_vllm_only_limits_the_requests():
    plan = make_plan(None, replace(DEFAULTS, vllm_external=True))
    assert plan.vllm_external and plan.memory == "none" and plan.vllm_args() == []
    assert plan.as_json()["max_pixels"] == DOTS_OCR.max_pixels


# -- forced backends -----------------------------------------------------------------------------

FORCED = [
    ("vllm-on-24gb", [card(24, 23.5)], "vllm", "vllm:bf16"),
    ("vllm-on-the-seed-card", SEED, "vllm", None),
    ("transformers-on-the-seed-card", SEED, "transformers", "transformers:nf4"),
    ("transformers-on-4gb", [card(4, 3.8)], "transformers", None),
    ("cpu-not-allowed", SEED, "cpu", None),
    ("rapidocr-on-an-idle-80gb", [card(80, 79)], "rapidocr", "rapidocr"),
]


@pytest.mark.parametrize("gpu,backend,expected", [c[1:] for c in FORCED], ids=[c[0] for c in FORCED])
def test_a_forced_backend_runs_if_it_fits_and_is_refused_with_the_reason_if_not(gpu, backend, expected):
    settings = replace(DEFAULTS, backend=backend)
    if expected is None:
        with pytest.raises(PlanRefused) as refused:
            make_plan(gpu, settings)
        assert refused.value.backend == backend
        assert refused.value.reasons[-1].startswith(f"→ {backend} cannot start here")
        assert refused.value.as_json()["refused"] is True
    else:
        assert make_plan(gpu, settings).variant == expected


def test_forced_vllm_on_the_seed_card_names_the_memory_it_lacks():
    with pytest.raises(PlanRefused) as refused:
        make_plan(SEED, replace(DEFAULTS, backend="vllm"))
    assert "vLLM bf16 needs" in refused.value.headline
    assert "4.7 GiB of memory available" in refused.value.headline


def test_forced_cpu_is_refused_when_the_settings_do_not_allow_it():
    with pytest.raises(PlanRefused, match="not allowed in the settings"):
        make_plan(None, replace(DEFAULTS, backend="cpu"))


def test_forced_cpu_runs_when_allowed_and_the_ram_holds_it():
    plan = make_plan(None, replace(DEFAULTS, backend="cpu", allow_cpu=True, cpu_ram_bytes=32 * GiB))
    assert plan.backend == "cpu" and plan.dtype == "float32" and plan.memory == "ram"
    assert plan.estimated_bytes <= plan.budget_bytes


# -- the card fills up between the plan and the start --------------------------------------------


def test_a_card_filled_by_another_process_after_planning_gets_a_smaller_plan():
    plan = make_plan([card(24, 23.5)])
    later = [card(24, 9)]
    ok, why = fits_now(plan, later)
    assert not ok and "now has 9.00 GiB free" in why
    smaller = make_plan(later)
    assert smaller.estimated_bytes < plan.estimated_bytes
    assert fits_now(smaller, later)[0]


def test_a_forced_backend_on_a_card_filled_after_planning_is_refused():
    settings = replace(DEFAULTS, backend="vllm")
    plan = make_plan([card(24, 23.5)], settings)
    assert not fits_now(plan, [card(24, 4)])[0]
    with pytest.raises(PlanRefused):
        make_plan([card(24, 4)], settings)


def test_a_vanished_gpu_no_longer_fits():
    plan = make_plan([card(24, 23.5)])
    ok, why = fits_now(plan, snapshot(error="The GPU was lost."))
    assert not ok and "no longer visible" in why


# -- CUDA out of memory --------------------------------------------------------------------------


def test_after_oom_it_retries_the_same_backend_once_at_a_smaller_image():
    gpu = [card(24, 23.5)]
    plan = make_plan(gpu)
    retry = replan_after_oom(plan, gpu)
    assert retry.variant == plan.variant
    assert retry.oom_retried
    assert retry.max_pixels <= plan.max_pixels // 2 + 784
    assert retry.max_pixels >= MIN_USEFUL_PIXELS
    assert retry.fallbacks == plan.fallbacks
    assert retry.reasons[0].startswith("CUDA ran out of memory with vLLM bf16 at 11.3 MP")


def test_after_a_second_oom_it_falls_back_to_the_next_backend():
    gpu = [card(24, 23.5)]
    retry = replan_after_oom(make_plan(gpu), gpu)
    fallback = replan_after_oom(retry, gpu)
    assert fallback.variant == "vllm:fp8"
    assert not fallback.oom_retried
    assert fallback.fallbacks == (
        "transformers:bf16", "transformers:int8", "transformers:nf4", "llamacpp:q8_0", "llamacpp:q4_k_m", "rapidocr"
    )  # fmt: skip
    again = replan_after_oom(replan_after_oom(fallback, gpu), gpu)
    assert again.variant == "transformers:bf16"


def test_an_oom_plan_at_the_floor_goes_straight_to_the_next_backend():
    settings = replace(DEFAULTS, max_pixels=MIN_USEFUL_PIXELS)
    plan = make_plan(SEED, settings)
    assert plan.max_pixels == MIN_USEFUL_PIXELS
    nxt = replan_after_oom(plan, SEED)
    assert nxt.variant == "llamacpp:q4_k_m" and nxt.memory == "gpu" and not nxt.projector_on_gpu
    assert replan_after_oom(plan, SEED, replace(settings, llamacpp_unavailable="off")).variant == "rapidocr"


def test_an_oom_replan_uses_the_memory_free_now():
    plan = make_plan([card(24, 23.5)])
    nxt = replan_after_oom(plan, [card(24, 5.5)])
    assert nxt.backend != "vllm" or nxt.max_pixels < plan.max_pixels
    assert nxt.estimated_bytes <= 5.5 * GiB - DEFAULTS.reserve_for(24 * GiB)


def test_an_external_vllm_server_that_runs_out_of_memory_gets_smaller_requests_then_rapidocr():
    plan = make_plan(None, replace(DEFAULTS, vllm_external=True))
    retry = replan_after_oom(plan, None)
    assert retry.vllm_external and retry.oom_retried
    assert retry.max_pixels == DOTS_OCR.pixels_for_tokens(DOTS_OCR.max_image_tokens // 2)
    assert replan_after_oom(retry, None).variant == "rapidocr"


def test_a_forced_backend_with_no_fallback_left_is_refused_after_oom():
    settings = replace(DEFAULTS, backend="transformers")
    plan = make_plan(SEED, settings)
    assert plan.fallbacks == ()
    retry = replan_after_oom(plan, SEED)
    with pytest.raises(PlanRefused, match="no fallback fits"):
        replan_after_oom(retry, SEED)


# -- sizes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,expected",
    [
        ("11.94GiB", int(round(11.94 * GiB))),
        ("12GB", 12 * 10**9),
        ("6000MiB", 6000 * MiB),
        ("5.81", int(round(5.81 * GiB))),
        (" 512 mib ", 512 * MiB),
        ("1024B", 1024),
    ],
)
def test_it_parses_sizes(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "lots", "-1GB", "12 parsecs", "1.2.3GB"])
def test_it_refuses_what_is_not_a_size(text):
    with pytest.raises(ValueError, match="is not a size"):
        parse_size(text)


def test_settings_refuse_nonsense():
    with pytest.raises(ValueError, match="backend must be one of"):
        PlannerSettings(backend="gpu")
    with pytest.raises(ValueError, match="at least 3,136"):
        PlannerSettings(max_pixels=1000)


# -- properties over a grid ----------------------------------------------------------------------

TOTALS_GIB = [4, 6, 8, 10, 11.94, 12, 16, 20, 24, 32, 40, 48, 80, 94, 141]
FREE_FRACTIONS = [0.0, 0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 0.9, 0.97]
CCS = [(7, 5), (8, 0), (8, 6), (8, 9), (9, 0), None]
BACKENDS = ["auto", "vllm", "transformers"]


def grid():
    for total in TOTALS_GIB:
        for fraction in FREE_FRACTIONS:
            for cc in CCS:
                yield card(total, total * fraction, cc)


def check_plan(plan, device):
    f = plan.settings.facts
    budget = device.free_bytes - plan.settings.reserve_for(device.total_bytes)
    assert plan.reasons and plan.reasons[-1].startswith("→ ")
    if plan.memory != "gpu":
        return
    assert plan.estimated_bytes <= budget, "the plan's own estimate fits in free memory minus the reserve"
    assert MIN_USEFUL_PIXELS <= plan.max_pixels <= plan.settings.max_pixels
    assert plan.max_pixels % f.pixels_per_token == 0
    tokens = f.tokens_for_pixels(plan.max_pixels)
    assert plan.max_image_tokens == tokens
    if plan.backend == "vllm":
        util_bytes = plan.gpu_memory_utilization * device.total_bytes
        assert util_bytes + CUDA_CONTEXT_BYTES <= budget, "utilization × total fits in free − reserve"
        assert 0 < plan.gpu_memory_utilization < 1
        assert plan.max_model_len >= tokens + plan.max_new_tokens
        assert plan.kv_cache_bytes >= plan.max_model_len * f.kv_bytes_per_token() * plan.max_num_seqs
        parts = plan.parts
        inside = parts["weights"] + parts["activations"] + parts["kv_cache"] + VLLM_NON_TORCH_BYTES
        assert util_bytes >= inside
        assert plan.max_num_batched_tokens >= tokens
        assert plan.max_num_batched_tokens < 2 * tokens, "profiling encodes exactly one image"


def test_every_plan_on_the_grid_fits_by_its_own_estimate():
    checked = refused = 0
    for device in grid():
        for backend in BACKENDS:
            try:
                plan = make_plan([device], replace(DEFAULTS, backend=backend))
            except PlanRefused:
                refused += 1
                assert backend != "auto", "auto always ends at rapidocr"
                continue
            check_plan(plan, device)
            checked += 1
    assert checked > 500 and refused > 50


def test_every_oom_replan_on_the_grid_fits_the_memory_free_now():
    for device in grid():
        plan = make_plan([device])
        fuller = replace(device, free_bytes=int(device.free_bytes * 0.7))
        seen = 0
        while plan.backend != "rapidocr" and seen < 16:
            plan = replan_after_oom(plan, [fuller])
            check_plan(plan, fuller)
            seen += 1
        assert plan.backend == "rapidocr"


def test_more_free_memory_never_gives_a_smaller_image_on_the_same_backend():
    for total in TOTALS_GIB:
        last = {}
        for fraction in FREE_FRACTIONS:
            plan = make_plan([card(total, total * fraction, (8, 6))])
            if plan.max_pixels is not None and plan.variant in last:
                assert plan.max_pixels >= last[plan.variant]
            last[plan.variant] = plan.max_pixels or 0


# -- pages at once ---------------------------------------------------------------------------------


def test_vllm_runs_as_many_pages_at_once_as_whole_pages_of_kv_cache_fit_and_says_why():
    roomy = make_plan([card(80, 79.2, (9, 0))], PlannerSettings(max_pages_at_once=8))
    tight = make_plan([card(16, 15)], PlannerSettings(max_pages_at_once=8))

    assert roomy.backend == tight.backend == "vllm"
    assert roomy.pages_at_once == roomy.max_num_seqs == 8  # the settings' limit
    assert 1 < tight.pages_at_once == tight.max_num_seqs < 8  # the memory's
    assert roomy.kv_cache_bytes == 8 * roomy.settings.facts.kv_cache_bytes(38_912)
    assert tight.pages_at_once_reason in tight.reasons and "38,912 tokens of KV cache" in tight.pages_at_once_reason
    assert f"--max-num-seqs {tight.pages_at_once}" in tight.pages_at_once_reason
    assert "the settings allow at most 8" in roomy.pages_at_once_reason
    for plan, total in ((roomy, 80), (tight, 16)):  # more pages never push it past the free memory
        assert plan.gpu_memory_utilization * total * GiB <= plan.budget_bytes


def test_a_limit_of_one_page_starts_vllm_with_one_sequence():
    one = make_plan([card(16, 15)], PlannerSettings(max_pages_at_once=1))
    assert one.pages_at_once == one.max_num_seqs == 1 and "1 page at once" in one.pages_at_once_reason


def test_transformers_batches_as_many_pages_as_their_activations_and_kv_cache_allow():
    big = make_plan([card(80, 79.2, (9, 0))], PlannerSettings(backend="transformers", max_pages_at_once=16))
    seed = make_plan([card(11.94, 5.81)], PlannerSettings(max_pages_at_once=16))

    assert big.backend == "transformers" and 1 < big.pages_at_once <= 16
    per_page = big.parts["activations"]
    assert big.estimated_bytes <= big.budget_bytes
    assert big.budget_bytes - big.estimated_bytes < per_page or big.pages_at_once == 16  # one more would not fit
    assert "in one batch" in big.pages_at_once_reason and big.pages_at_once_reason in big.reasons
    assert seed.pages_at_once == 1  # the seed card holds only one page of nf4


def test_an_external_vllm_server_gets_the_settings_number_of_pages_at_once():
    plan = make_plan(None, replace(DEFAULTS, vllm_external=True, max_pages_at_once=6))
    assert plan.pages_at_once == 6 and "external server" in plan.pages_at_once_reason
    assert plan.as_json()["pages_at_once"] == 6


def test_rapidocr_reads_one_page_at_a_time():
    plan = make_plan(None, PlannerSettings(backend="rapidocr"))
    assert plan.pages_at_once == 1


def test_pages_at_once_below_one_is_refused():
    with pytest.raises(ValueError):
        PlannerSettings(max_pages_at_once=0)
