"""Every OCR backend ocrdash knows, written once: its name, its label, what it needs, how the planner
budgets it, and where its code is.

Every list of backends reads this registry: the planner's candidates and their order, the admin's
choices (BackendSettings.BACKEND_CHOICES), the history filter, the API's fields, result reuse, and
the worker's `create_backend`. tests/unit/test_backend_registry.py fails when a backend's name is
written anywhere else.

A new backend is one entry here (with its variants and its factory) and one module under
workers/backends/ that implements workers.backends.base.OcrBackend; the planner needs an estimate
for it (core/planner/estimates.py `ESTIMATES`) unless it takes no memory worth planning.

Pure: `factory` is a dotted path, imported only by workers.backends.create_backend, so the web app
reads this module without importing any engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Memory = Literal["gpu", "ram", "none"]

# The admin's and the API's "let the planner choose": not a backend.
AUTO = "auto"
AUTO_LABEL = "auto: the best that fits the free memory"


@dataclass(frozen=True)
class Variant:
    """One way to run a backend that the planner may choose, e.g. transformers in 4-bit."""

    key: str  # stored in Job.plan ("variant", "fallbacks"): never renamed
    backend: str
    weights: str  # a ModelFacts.weight_bytes scheme; "" when no weights are budgeted
    label: str


@dataclass(frozen=True)
class Backend:
    name: str  # stored on Job.backend and BackendSettings.backend: never renamed
    label: str  # the admin's choice text (changing it takes a migration of BackendSettings.backend)
    # Reads with dots.ocr (layout and prompts); otherwise it is the CPU text engine, whose result
    # depends on the job's language.
    runs_dots: bool
    # What the planner budgets against: the GPU's free memory, the machine's RAM, or nothing.
    memory: Memory
    # Loads inside the worker process (so torch counts devices by CUDA ordinal there), rather than
    # in a server of its own that Docker or someone else runs (NVML index, an address).
    in_worker: bool
    # Runs in a server outside the worker: a container ocrdash starts, or an external address.
    needs_server: bool
    # Python packages the worker must have for it (checked without importing them).
    packages: tuple[str, ...]
    # The planner's candidates for it, in the order it tries them.
    variants: tuple[Variant, ...]
    # "module:Class" of its OcrBackend, imported only when a worker builds one.
    factory: str


def _backend(name: str, *, variants: tuple[tuple[str, str, str], ...], **facts) -> Backend:
    """A Backend whose variants are (key suffix, weights, label); "" as the suffix keys it by name."""
    return Backend(
        name=name,
        variants=tuple(
            Variant(f"{name}:{suffix}" if suffix else name, name, weights, label) for suffix, weights, label in variants
        ),
        **facts,
    )


VLLM = _backend(
    "vllm",
    label="vLLM server (dots.ocr)",
    runs_dots=True,
    memory="gpu",
    in_worker=False,
    needs_server=True,
    packages=(),
    variants=(("bf16", "bf16", "vLLM bf16"), ("fp8", "fp8", "vLLM fp8")),
    factory="workers.backends.vllm.backend:VllmBackend",
)
TRANSFORMERS = _backend(
    "transformers",
    label="transformers in the worker (bf16 / 8-bit / 4-bit)",
    runs_dots=True,
    memory="gpu",
    in_worker=True,
    needs_server=False,
    packages=("torch", "transformers"),
    variants=(
        ("bf16", "bf16", "transformers bf16"),
        ("int8", "int8", "transformers 8-bit"),
        ("nf4", "nf4", "transformers 4-bit (nf4)"),
    ),
    factory="workers.backends.transformers_backend:TransformersBackend",
)
# dots.ocr as GGUF files in llama.cpp: as many layers on the GPU as its free memory holds, the rest on
# the CPU (core/planner/llamacpp.py). Budgeted against the GPU; with no layer there, against RAM.
LLAMACPP = _backend(
    "llamacpp",
    label="llama.cpp (GGUF): the layers that fit on the GPU, the rest on the CPU",
    runs_dots=True,
    memory="gpu",
    in_worker=True,
    needs_server=False,
    packages=("llama_cpp",),
    variants=(("q8_0", "Q8_0", "llama.cpp Q8_0"), ("q4_k_m", "Q4_K_M", "llama.cpp Q4_K_M")),
    factory="workers.backends.llamacpp.backend:LlamaCppBackend",
)
CPU = _backend(
    "cpu",
    label="dots.ocr on the CPU (very slow)",
    runs_dots=True,
    memory="ram",
    in_worker=True,
    needs_server=False,
    packages=("torch", "transformers"),
    variants=(("float32", "float32", "CPU float32"),),
    factory="workers.backends.transformers_backend:CpuBackend",
)
RAPIDOCR = _backend(
    "rapidocr",
    label="rapidocr: fast CPU text, no layout",
    runs_dots=False,
    memory="none",
    in_worker=True,
    needs_server=False,
    packages=("rapidocr",),
    variants=(("", "", "rapidocr"),),
    factory="workers.backends.rapidocr_backend:RapidOcrBackend",
)

# Every backend, in the planner's order of preference ("auto" tries them so): a whole GPU plan first,
# then llama.cpp (whole, then split between the GPU and the CPU), then the CPU.
ALL: tuple[Backend, ...] = (VLLM, TRANSFORMERS, LLAMACPP, CPU, RAPIDOCR)
_BY_NAME = {b.name: b for b in ALL}
VARIANTS: tuple[Variant, ...] = tuple(v for b in ALL for v in b.variants)
VARIANT_BY_KEY = {v.key: v for v in VARIANTS}


def names() -> tuple[str, ...]:
    return tuple(_BY_NAME)


def get(name: str) -> Backend:
    """The backend called `name`; ValueError naming the known ones otherwise."""
    try:
        return _BY_NAME[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown backend {name!r}; known: {', '.join(_BY_NAME)}") from None


def choices(with_auto: bool = False) -> list[tuple[str, str]]:
    """(name, label) pairs for a form or a model field, "auto" first when asked for."""
    listed = [(b.name, b.label) for b in ALL]
    return [(AUTO, AUTO_LABEL), *listed] if with_auto else listed


def runs_dots(name: str | None) -> bool:
    """True for a backend that reads with dots.ocr; False for the CPU text engine, "auto", "" and
    names that are not backends."""
    backend = _BY_NAME.get(name or "")
    return backend is not None and backend.runs_dots
