"""Which GGUF files the llama.cpp backend reads for each model, and how big they are.

One table: per model, per quantization of the language model, the file names of the pair llama.cpp
needs (the language model and the vision projector, `mmproj`) and where `fetch_model --gguf`
downloads them from. The admin may instead copy the two files into the GGUF folder
(`<OCRDASH_MODEL_DIR>/gguf/<folder>/`); `find_pair` says what is there and what is missing.

The sizes are those of the published files (measured): they are what the planner budgets before
any file is on disk. The layer split follows from them (core/planner/llamacpp.py).

Pure: no llama.cpp here, so the planner and the web app read this without the engine installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core import catalog

GiB = 1024**3

# The language model's quantizations the planner chooses between, best first.
Q8_0 = "Q8_0"
Q4_K_M = "Q4_K_M"
QUANTIZATIONS = (Q8_0, Q4_K_M)

# Bits per weight of the tensors llama.cpp keeps apart from the repeating layers: the token
# embeddings (always on the CPU) and the output layer (offloaded like a layer). ggml's block
# sizes: Q8_0 34 bytes per 32 weights, Q4_K 144 per 256, Q6_K 210 per 256.
BITS_PER_WEIGHT = {"Q8_0": 8.5, "Q4_K": 4.5, "Q6_K": 6.5625, "F16": 16.0}


@dataclass(frozen=True)
class GgufPair:
    """A language model GGUF and the vision projector GGUF it runs with."""

    quantization: str  # the language model's (Q8_0, Q4_K_M)
    lm_file: str
    mmproj_file: str
    projector_type: str  # the projector's weights (F16)
    lm_bytes: int
    mmproj_bytes: int
    # The tensor types of the token embeddings and the output layer in this file.
    embedding_type: str
    output_type: str


@dataclass(frozen=True)
class GgufModel:
    """One model's GGUF builds: the hub repository they are fetched from and the folder they live in."""

    model: str  # the catalog's model name
    repo: str  # hub repository of the GGUF files
    folder: str  # under <OCRDASH_MODEL_DIR>/gguf/
    pairs: tuple[GgufPair, ...]

    def pair(self, quantization: str) -> GgufPair:
        for p in self.pairs:
            if p.quantization == quantization:
                return p
        known = ", ".join(p.quantization for p in self.pairs)
        raise ValueError(f"{self.model} has no {quantization} GGUF; known: {known}")


# ggml-org/dots.ocr-GGUF is the build llama.cpp's dots.ocr support was merged with (llama.cpp pull
# request 17575); it publishes dots.ocr-Q8_0.gguf with mmproj-dots.ocr-f16.gguf (and a Q8_0
# projector). The Q4_K_M name follows the same pattern; where the repository has no such file,
# fetch_model --gguf says so and the admin copies one made with llama.cpp's llama-quantize from an
# F16 conversion. Sizes measured on converted files: Q8_0 language model 1.762 GiB, Q4_K_M
# 1.038 GiB, F16 projector 2.351 GiB.
_MMPROJ_F16 = "mmproj-dots.ocr-f16.gguf"
GGUF_MODELS: dict[str, GgufModel] = {
    "rednote-hilab/dots.ocr": GgufModel(
        model="rednote-hilab/dots.ocr",
        repo="ggml-org/dots.ocr-GGUF",
        folder="dots.ocr",
        pairs=(
            GgufPair(
                Q8_0, "dots.ocr-Q8_0.gguf", _MMPROJ_F16, "F16", int(1.762 * GiB), int(2.351 * GiB), "Q8_0", "Q8_0"
            ),
            GgufPair(
                Q4_K_M, "dots.ocr-Q4_K_M.gguf", _MMPROJ_F16, "F16", int(1.038 * GiB), int(2.351 * GiB), "Q4_K", "Q6_K"
            ),
        ),
    ),
}
DEFAULT_MODEL = "rednote-hilab/dots.ocr"


def _converted(repo: str) -> GgufModel:
    """A model of dots.ocr's architecture with no GGUF repository pinned here (`repo` empty): the
    admin converts its checkpoint with llama.cpp's converter (tests/fixtures/tiny_dots/gguf.py shows
    how) and copies the pair into its folder; fetch_model --gguf says so. Same shapes, same sizes."""
    name = repo.rsplit("/", 1)[-1]
    base = GGUF_MODELS[DEFAULT_MODEL]
    pairs = tuple(
        GgufPair(p.quantization, f"{name}-{p.quantization}.gguf", f"mmproj-{name}-f16.gguf", p.projector_type,
                 p.lm_bytes, p.mmproj_bytes, p.embedding_type, p.output_type)
        for p in base.pairs
    )  # fmt: skip
    return GgufModel(model=repo, repo="", folder=name, pairs=pairs)


# The newer family (dots.mocr, dots.mocr-svg) has dots.ocr's architecture.
for _model in catalog.MODELS:
    GGUF_MODELS.setdefault(_model.repo, _converted(_model.repo))


def gguf_model(model: str | None) -> GgufModel:
    """The GGUF builds of `model`: a catalog name or hub id (core/catalog.py), or a local folder
    named like one; anything else gets dots.ocr's."""
    text = (model or "").strip()
    if text in GGUF_MODELS:
        return GGUF_MODELS[text]
    return GGUF_MODELS.get(catalog.for_setting(text).repo, GGUF_MODELS[DEFAULT_MODEL])


@dataclass(frozen=True)
class FoundPair:
    pair: GgufPair
    lm_path: Path
    mmproj_path: Path
    missing: tuple[str, ...]  # file names not in the folder

    @property
    def complete(self) -> bool:
        return not self.missing


def find_pair(folder: Path, pair: GgufPair) -> FoundPair:
    """The pair's two files in `folder`, and the names of those that are not there (or empty)."""
    lm, mmproj = folder / pair.lm_file, folder / pair.mmproj_file
    missing = tuple(p.name for p in (lm, mmproj) if not p.is_file() or p.stat().st_size == 0)
    return FoundPair(pair, lm, mmproj, missing)


def available_quantizations(folder: Path, model: GgufModel) -> tuple[str, ...]:
    """The quantizations whose two files are both in `folder`, best first."""
    return tuple(p.quantization for p in model.pairs if find_pair(folder, p).complete)
