"""The metadata at the head of a GGUF file, read without llama.cpp, and the checks a pair of files
must pass before llama.cpp is asked to load them.

llama.cpp answers a wrong file with a bare "failed to load model" (or worse, a crash in C code), so
the backend checks first, in Python, what it can: that each file is a GGUF file, that the language
model is a language model and the projector a projector for dots.ocr, and that the projector's
output width is the language model's embedding width (a projector from another model does not fit).

The format (GGUF v2/v3, ggml's docs/gguf.md): the magic `GGUF`, a uint32 version, uint64 tensor and
key-value counts, then the key-values, each a string key, a uint32 type and a value. Only the
key-values are read; every length is bounded, so a hostile or truncated file is an error, not an
endless read or a huge allocation.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
# Bounds far above any real file's (dots.ocr's vocabulary is 151,936 strings) and far below harm.
MAX_KEY_VALUES = 100_000
MAX_STRING_BYTES = 16 * 1024 * 1024
MAX_ARRAY_ITEMS = 10_000_000

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9
# Keys whose values are kept; arrays (the vocabulary) are skipped over.
_WANTED_PREFIXES = ("general.", "clip.")


class GgufError(ValueError):
    """A file that is not a GGUF file llama.cpp can read, worded for the admin."""


@dataclass(frozen=True)
class GgufHeader:
    path: Path
    version: int
    tensor_count: int
    metadata: dict[str, Any]

    @property
    def architecture(self) -> str:
        return str(self.metadata.get("general.architecture", ""))

    @property
    def is_projector(self) -> bool:
        return self.metadata.get("general.type") == "mmproj" or self.architecture == "clip"

    def get(self, key: str, default: Any = None) -> Any:
        return self.metadata.get(key, default)


class _Reader:
    def __init__(self, fh: BinaryIO, path: Path):
        self.fh, self.path = fh, path

    def take(self, n: int) -> bytes:
        data = self.fh.read(n)
        if len(data) != n:
            raise GgufError(f"{self.path.name} is cut short (a download that did not finish?)")
        return data

    def scalar(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        n = self.scalar("<Q")
        if n > MAX_STRING_BYTES:
            raise GgufError(f"{self.path.name} has a {n:,}-byte string in its header: not a GGUF file ocrdash reads")
        return self.take(n).decode("utf-8", errors="replace")

    def value(self, kind: int, keep: bool) -> Any:
        if kind in _SCALARS:
            return self.scalar(_SCALARS[kind])
        if kind == _STRING:
            return self.string()
        if kind == _ARRAY:
            item_kind, count = self.scalar("<I"), self.scalar("<Q")
            if count > MAX_ARRAY_ITEMS or item_kind == _ARRAY:
                raise GgufError(f"{self.path.name} has an array of {count:,} items in its header")
            if item_kind in _SCALARS and not keep:
                self.fh.seek(count * struct.calcsize(_SCALARS[item_kind]), 1)
                return None
            items = [self.value(item_kind, keep) for _ in range(count)]
            return items if keep else None
        raise GgufError(f"{self.path.name} has a value of unknown type {kind} in its header: not a GGUF file")


def read_header(path: str | Path) -> GgufHeader:
    """The version, tensor count and the `general.*`, `clip.*` and `<arch>.*` scalars of a GGUF file."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            r = _Reader(fh, path)
            if fh.read(4) != MAGIC:
                raise GgufError(f"{path.name} is not a GGUF file (it does not start with 'GGUF')")
            version = r.scalar("<I")
            if version not in SUPPORTED_VERSIONS:
                raise GgufError(f"{path.name} is GGUF version {version}; llama.cpp here reads versions 2 and 3")
            tensors, count = r.scalar("<Q"), r.scalar("<Q")
            if count > MAX_KEY_VALUES:
                raise GgufError(f"{path.name} claims {count:,} header entries: not a GGUF file ocrdash reads")
            metadata: dict[str, Any] = {}
            arch = ""
            for _ in range(count):
                key = r.string()
                kind = r.scalar("<I")
                keep = key.startswith(_WANTED_PREFIXES) or bool(arch and key.startswith(arch + "."))
                value = r.value(kind, keep and kind != _ARRAY)
                if keep and kind != _ARRAY:
                    metadata[key] = value
                if key == "general.architecture":
                    arch = str(value)
    except OSError as exc:
        raise GgufError(f"{path.name} cannot be read: {exc.strerror or exc}") from exc
    return GgufHeader(path, version, tensors, metadata)


DOTS_PROJECTOR_TYPE = "dots_ocr"  # clip.projector_type written by llama.cpp's converter (conversion/dotsocr.py)


def check_pair(lm_path: Path, mmproj_path: Path) -> tuple[GgufHeader, GgufHeader]:
    """Both headers when the two files make a dots.ocr pair llama.cpp can load; GgufError saying
    what is wrong otherwise."""
    lm, mmproj = read_header(lm_path), read_header(mmproj_path)
    if lm.is_projector:
        raise GgufError(f"{lm_path.name} is a vision projector (mmproj), not the language model")
    if not mmproj.is_projector:
        raise GgufError(f"{mmproj_path.name} is a language model ({mmproj.architecture}), not the vision projector")
    kind = mmproj.get("clip.projector_type") or mmproj.get("clip.vision.projector_type")
    if kind != DOTS_PROJECTOR_TYPE:
        raise GgufError(
            f"{mmproj_path.name} is a {kind or 'unknown'} projector, not dots.ocr's ({DOTS_PROJECTOR_TYPE})"
        )
    width = lm.get(f"{lm.architecture}.embedding_length")
    projected = mmproj.get("clip.vision.projection_dim")
    if width is not None and projected is not None and int(width) != int(projected):
        raise GgufError(
            f"{mmproj_path.name} projects images to {projected} values per token, but the language model "
            f"{lm_path.name} takes {width}: the two files are from different models"
        )
    return lm, mmproj
