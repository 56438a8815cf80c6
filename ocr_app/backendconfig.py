"""From the admin's BackendSettings and the GPU as it is now to a plan, and from a plan to
what a backend's load() receives. Used by the worker (every job) and the admin page (to show
the plan beside the settings)."""

from __future__ import annotations

import functools
import importlib.util
import os
import time
from pathlib import Path
from types import SimpleNamespace

from django.conf import settings

from core import backends, catalog, gguf_files
from core.backends import LLAMACPP, RAPIDOCR, TRANSFORMERS
from core.planner import Plan, PlannerSettings, make_plan
from ocr_app.backend_limits import model_problem, vllm_host_problem
from ocr_app.models import BackendSettings

MIB = 1024**2
# Asking the Docker engine whether it answers is cheap but not free: reuse the answer a while.
DOCKER_CHECK_SECONDS = 60


def hf_cache_dir() -> Path:
    return Path(settings.OCRDASH_MODEL_DIR) / "huggingface"


def in_process_unavailable(cfg: BackendSettings) -> str | None:
    """Why dots.ocr cannot run inside the worker, or None when it can."""
    missing = [m for m in TRANSFORMERS.packages if importlib.util.find_spec(m) is None]
    if missing:
        return (
            f"{' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} not installed in the worker "
            "(python3 ocrdash.py start --with-dots installs them)"
        )
    return model_missing(cfg)


def model_missing(cfg: BackendSettings) -> str | None:
    """Why the model's files are not on disk (or may not be used), or None when they are there."""
    if problem := model_problem(cfg.model):
        return problem
    location = cfg.model.strip()
    if Path(location).is_dir():
        return None if (Path(location) / "config.json").exists() else f"{location} holds no config.json"
    if not cfg.revision:
        return "the model's revision (commit hash) is not set in the backend settings"
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(location, "config.json", revision=cfg.revision, cache_dir=hf_cache_dir())
    if isinstance(found, str):
        return None
    return f"dots.ocr's weights are not downloaded (python manage.py fetch_model fetches {location})"


def gguf_dir(cfg: BackendSettings) -> Path:
    """Where the GGUF pair of the settings' model is: fetched there by fetch_model --gguf, or copied."""
    return gguf_dir_for(gguf_files.gguf_model(cfg.model))


def gguf_dir_for(model: gguf_files.GgufModel) -> Path:
    return Path(settings.OCRDASH_MODEL_DIR) / "gguf" / model.folder


def llamacpp_unavailable(cfg: BackendSettings) -> str | None:
    """Why llama.cpp cannot run in this worker at all, or None."""
    if importlib.util.find_spec(LLAMACPP.packages[0]) is None:
        return "llama-cpp-python is not installed in the worker (python3 ocrdash.py start --with-gguf installs it)"
    if not gguf_quantizations(cfg):
        return f"no GGUF pair is in {gguf_dir(cfg)} (python manage.py fetch_model --gguf fetches one)"
    return None


def gguf_quantizations(cfg: BackendSettings) -> tuple[str, ...]:
    return gguf_files.available_quantizations(gguf_dir(cfg), gguf_files.gguf_model(cfg.model))


@functools.lru_cache(maxsize=1)
def _docker_answer(bucket: int) -> str | None:
    try:
        import docker

        client = docker.from_env(timeout=3)
        client.ping()
        client.close()
        return None
    except Exception as exc:
        return f"no Docker engine answers ({type(exc).__name__})"


def vllm_url(cfg: BackendSettings) -> str:
    """OCRDASH_VLLM_URL (a fixed service, e.g. the compose file's `vllm` profile) wins over the admin's field."""
    return settings.VLLM_URL or cfg.vllm_url


def vllm_unavailable(cfg: BackendSettings) -> str | None:
    if not cfg.allow_vllm:
        return "vLLM is turned off in the backend settings"
    if settings.VLLM_URL:
        return None  # the operator's own setting, not the admin's form
    if cfg.vllm_url:
        return vllm_host_problem(cfg.vllm_url)
    # ocrdash starts vLLM itself, mounting the model folder.
    return model_problem(cfg.model) or _docker_answer(int(time.monotonic() // DOCKER_CHECK_SECONDS))


def ram_bytes() -> int | None:
    """Memory a new process can have: MemAvailable, which counts the page cache the kernel gives
    back (the "free" figure does not, and is small on any busy machine)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None


def planner_settings(cfg: BackendSettings) -> PlannerSettings:
    why_not_vllm = vllm_unavailable(cfg)
    return PlannerSettings(
        backend=cfg.backend,
        vllm_allowed=why_not_vllm is None,
        vllm_unavailable=why_not_vllm,
        vllm_external=bool(vllm_url(cfg)),
        fp8_allowed=cfg.allow_fp8,
        allow_cpu=cfg.allow_cpu,
        cpu_ram_bytes=ram_bytes(),
        reserve_bytes=cfg.reserve_mib * MIB,
        reserve_fraction=cfg.reserve_percent / 100,
        max_pixels=cfg.max_pixels,
        max_new_tokens=cfg.max_new_tokens,
        max_pages_at_once=settings.MAX_PAGES_AT_ONCE,
        in_process_unavailable=in_process_unavailable(cfg),
        llamacpp_unavailable=llamacpp_unavailable(cfg),
        llamacpp_quantizations=gguf_quantizations(cfg),
        llamacpp_model=gguf_files.gguf_model(cfg.model).model,
        facts=catalog.for_setting(cfg.model).facts,  # the chosen model's (core/catalog.py)
    )


def plan_now(cfg: BackendSettings, snapshot) -> Plan:
    """The plan for this worker's GPU now; raises core.planner.PlanRefused for a forced backend
    that cannot fit."""
    devices = [d for d in getattr(snapshot, "devices", ()) if d.index == settings.GPU_INDEX]
    view = SimpleNamespace(devices=devices, error=getattr(snapshot, "error", None))
    return make_plan(view, planner_settings(cfg))


def devices_from_sample(sample: dict | None) -> SimpleNamespace:
    """The GPU as the last `gpu.sample` saw it, in the shape the planner reads."""
    devices = []
    for d in (sample or {}).get("devices", []):
        cc = d.get("compute_capability")
        devices.append(
            SimpleNamespace(
                index=d["index"],
                name=d.get("name") or "GPU",
                total_bytes=d["total"],
                free_bytes=d["free"],
                compute_capability=tuple(int(x) for x in cc.split(".")) if cc else None,
            )
        )
    return SimpleNamespace(devices=devices, error=(sample or {}).get("error"))


def load_args(plan: Plan, cfg: BackendSettings, language: str) -> dict:
    """What the chosen backend's load() receives."""
    spec = backends.get(plan.backend)
    if not spec.runs_dots:
        return rapidocr_args(language)
    args = plan.as_json()
    nvml_index = plan.device_index if plan.device_index is not None else settings.GPU_INDEX
    args.update(
        model=cfg.model,
        revision=cfg.revision,
        cache_dir=str(hf_cache_dir()),
        # Docker names host GPUs by NVML index; torch inside this process by CUDA ordinal.
        device_index=cuda_ordinal(nvml_index) if spec.in_worker else nvml_index,
        allow_download=False,  # fetch_model downloads; a job never waits for 6 GB
        **loop_args(),
        fast_decode=settings.FAST_DECODE,
    )
    if plan.backend == LLAMACPP.name:
        pair = gguf_files.gguf_model(cfg.model).pair(plan.quantization)
        args.update(lm_path=str(gguf_dir(cfg) / pair.lm_file), mmproj_path=str(gguf_dir(cfg) / pair.mmproj_file))
    if spec.needs_server and vllm_url(cfg):
        args["vllm_url"] = vllm_url(cfg)
    return args


def cuda_ordinal(nvml_index: int, visible: str | None = None) -> int:
    """The CUDA device number of an NVML index in this process. With CUDA_VISIBLE_DEVICES=2,3
    (one worker per GPU), NVML's GPU 3 is cuda:1. The start command and the compose file set
    CUDA_DEVICE_ORDER=PCI_BUS_ID so CUDA counts in NVML's order."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES") if visible is None else visible
    if not visible:
        return nvml_index
    listed = [v.strip() for v in visible.split(",") if v.strip()]
    if str(nvml_index) in listed:
        return listed.index(str(nvml_index))
    return 0  # listed by UUID: the worker is pinned to one GPU, which CUDA calls 0


def loop_args() -> dict:
    """The loop guard's settings (core/loopguard.py) as every backend's load() reads them."""
    return {
        "loop_window": settings.LOOP_WINDOW,
        "loop_ngram": settings.LOOP_NGRAM,
        "page_time_limit": settings.PAGE_TIME_LIMIT,
    }


def rapidocr_args(language: str) -> dict:
    return {
        **loop_args(),
        "backend": RAPIDOCR.name,
        "language": language or settings.OCRDASH_OCR_LANGUAGE,
        "model_dir": str(settings.OCRDASH_MODEL_DIR),
        "allow_download": settings.OCRDASH_ALLOW_MODEL_DOWNLOAD,
    }
