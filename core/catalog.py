"""The models ocrdash can run: each one's Hugging Face repository, pinned revision, the tasks it
was trained for, its sampling defaults, its weights' size and how vLLM serves it (pure: no Django).

Facts from upstream (rednote-hilab/dots.ocr at 36d7248878f181c6257dc1cbd799ae940970444f and
rednote-hilab/dots.mocr at 23f3e5612fb8066d4034d5ecfc8f33a9243533eb, README and
dots_mocr/model/inference.py, demo/demo_vllm_svg.py):

- all three are the same architecture (`DotsOCRForCausalLM`, `model_type: dots_ocr`), so the
  planner's memory model (core/modelfacts.py) serves each, and their bf16 weights are the same size;
- dots.mocr and dots.mocr-svg are served by vLLM natively; upstream recommends the
  `vllm/vllm-openai:v0.17.1` image with `--chat-template-content-format string --trust-remote-code`;
- sampling: temperature 0.1, top_p 0.9 (inference_with_vllm's defaults); SVG at temperature 0.9,
  top_p 1.0 ("low temperature often causes repetitive/looping output").

`revision` is the commit a hub download is pinned to. None means ocrdash knows no reviewed commit
yet: `fetch_model` then asks for `--revision` (the model runs its repository's own code, so a
branch is never followed). dots.ocr's pin is a commit named in public code that runs its weights;
for dots.mocr and dots.mocr-svg no full commit hash is published anywhere we could find (their
model cards and upstream's code load the default branch), so the admin pins the commit they
reviewed (docs/models.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from core.dots.prompts import (
    GROUNDING,
    IMAGE_TO_SVG,
    LAYOUT_ALL,
    LAYOUT_ONLY,
    QUESTION,
    SCENE_SPOTTING,
    TEXT_ONLY,
    WEB_PARSING,
)
from core.modelfacts import DOTS_OCR, ModelFacts

DOTS_OCR_TASKS = (LAYOUT_ALL, LAYOUT_ONLY, TEXT_ONLY, GROUNDING)
VLLM_FLAGS = ("--trust-remote-code", "--chat-template-content-format", "string")
# 3.04 B parameters in bf16 (core/modelfacts.py).
WEIGHTS_BYTES = DOTS_OCR.weight_bytes("bf16")


@dataclass(frozen=True)
class Sampling:
    temperature: float = 0.1
    top_p: float = 0.9


@dataclass(frozen=True)
class CatalogModel:
    name: str  # what the admin picks and the API names
    repo: str  # Hugging Face repository
    revision: str | None  # pinned commit (40 hex); None: not reviewed yet, give one to fetch_model
    tasks: tuple[str, ...]  # task codes (core.dots.prompts.MODES) it was trained for
    sampling: Sampling = Sampling()
    task_sampling: dict[str, Sampling] = field(default_factory=dict)  # per-task exceptions
    weights_bytes: int = WEIGHTS_BYTES
    vllm_image: str = "vllm/vllm-openai:v0.17.1"
    vllm_flags: tuple[str, ...] = VLLM_FLAGS
    released: str = ""

    @property
    def facts(self) -> ModelFacts:
        """What the planner plans with: dots.ocr's shapes (the same architecture), under this name."""
        return replace(DOTS_OCR, name=self.repo)

    def sampling_for(self, task: str) -> Sampling:
        return self.task_sampling.get(task, self.sampling)

    def supports(self, task: str) -> bool:
        return task in self.tasks

    def folder_name(self) -> str:
        """The hub cache's folder for the repository (huggingface_hub's layout)."""
        return "models--" + self.repo.replace("/", "--")

    def present(self, cache_dir: str | Path | None) -> bool:
        """Whether its weights lie in the hub cache at `cache_dir` (any snapshot with safetensors)."""
        if not cache_dir:
            return False
        snapshots = Path(cache_dir) / self.folder_name() / "snapshots"
        if self.revision:
            return any((snapshots / self.revision).glob("*.safetensors"))
        return snapshots.is_dir() and any(snapshots.glob("*/*.safetensors"))

    def to_dict(self, cache_dir: str | Path | None = None) -> dict:
        return {
            "name": self.name,
            "repo": self.repo,
            "revision": self.revision,
            "tasks": list(self.tasks),
            "sampling": {"temperature": self.sampling.temperature, "top_p": self.sampling.top_p},
            "task_sampling": {
                task: {"temperature": s.temperature, "top_p": s.top_p} for task, s in self.task_sampling.items()
            },
            "weights_bytes": self.weights_bytes,
            "vllm_image": self.vllm_image,
            "vllm_flags": list(self.vllm_flags),
            "released": self.released,
            "present": self.present(cache_dir),
        }


_SVG_SAMPLING = {IMAGE_TO_SVG: Sampling(temperature=0.9, top_p=1.0)}

MODELS: tuple[CatalogModel, ...] = (
    CatalogModel(
        name="dots.ocr",
        repo="rednote-hilab/dots.ocr",
        # The Hugging Face commit that independent ports run the real weights from: Tenstorrent's
        # dots.ocr bring-up tests load the hub cache's snapshots/c0111ce6bc07803dbc267932ffef0ae3a51dc951
        # (DOTS_OCR_CHECKPOINT, "Real-HF-weights PCC tests for rednote-hilab/dots.ocr", 2026).
        revision="c0111ce6bc07803dbc267932ffef0ae3a51dc951",
        tasks=DOTS_OCR_TASKS,
        # dots.ocr's own README: integrated into vLLM since v0.11.0, the image ocrdash was built on.
        vllm_image="vllm/vllm-openai:v0.11.0",
        released="2025-07",
    ),
    CatalogModel(
        name="dots.mocr",
        repo="rednote-hilab/dots.mocr",
        revision=None,
        tasks=DOTS_OCR_TASKS + (WEB_PARSING, SCENE_SPOTTING, QUESTION, IMAGE_TO_SVG),
        task_sampling=_SVG_SAMPLING,
        released="2026-03-19",
    ),
    CatalogModel(
        name="dots.mocr-svg",
        repo="rednote-hilab/dots.mocr-svg",
        revision=None,
        tasks=(IMAGE_TO_SVG,),
        task_sampling=_SVG_SAMPLING,
        released="2026-03-19",
    ),
)
DEFAULT = MODELS[0]


def names() -> list[str]:
    return [m.name for m in MODELS]


def get(name: str) -> CatalogModel:
    for model in MODELS:
        if name in (model.name, model.repo):
            return model
    raise KeyError(f"unknown model {name!r}; the catalog has {', '.join(names())}")


def for_setting(model: str) -> CatalogModel:
    """The catalog model a backend setting (hub id, catalog name or a local folder) stands for.
    A folder is matched by its last part (…/dots.mocr-svg); any other folder is dots.ocr."""
    text = (model or "").strip().rstrip("/")
    try:
        return get(text)
    except KeyError:
        pass
    last = text.rsplit("/", 1)[-1].lower()
    for candidate in sorted(MODELS, key=lambda m: -len(m.name)):
        if last in (candidate.name.lower(), candidate.repo.rsplit("/", 1)[-1].lower()):
            return candidate
    return DEFAULT


def supporting(task: str) -> list[str]:
    """The catalog models trained for `task`."""
    return [m.name for m in MODELS if m.supports(task)]
