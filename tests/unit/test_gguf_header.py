"""The GGUF header check that runs before llama.cpp sees a file: a wrong, broken, hostile or
mismatched pair is refused with a sentence, never loaded."""

from __future__ import annotations

import struct

import pytest

from tests.fixtures.gguf_headers import LANGUAGE_MODEL, PROJECTOR, header_bytes, write_header
from workers.backends.llamacpp.gguf_header import GgufError, check_pair, read_header


@pytest.fixture
def pair(tmp_path):
    return write_header(tmp_path / "lm.gguf", LANGUAGE_MODEL), write_header(tmp_path / "mmproj.gguf", PROJECTOR)


def test_a_matching_pair_passes_and_its_metadata_is_read(pair):
    lm, mmproj = check_pair(*pair)
    assert lm.architecture == "qwen2" and lm.get("qwen2.embedding_length") == 64
    assert mmproj.is_projector and mmproj.get("clip.projector_type") == "dots_ocr"
    assert "tokenizer.ggml.tokens" not in lm.metadata  # arrays are skipped, not kept


def test_a_projector_of_another_width_is_refused_as_from_another_model(pair, tmp_path):
    other = write_header(tmp_path / "other.gguf", {**PROJECTOR, "clip.vision.projection_dim": 2048})
    with pytest.raises(GgufError, match="projects images to 2048 values per token.*different models"):
        check_pair(pair[0], other)


def test_swapped_files_are_named_for_what_they_are(pair):
    with pytest.raises(GgufError, match="lm.gguf is a language model"):
        check_pair(pair[0], pair[0])
    with pytest.raises(GgufError, match="mmproj.gguf is a vision projector"):
        check_pair(pair[1], pair[1])


def test_a_projector_of_another_kind_is_refused(pair, tmp_path):
    qwen = write_header(tmp_path / "qwen-mmproj.gguf", {**PROJECTOR, "clip.projector_type": "qwen2vl_merger"})
    with pytest.raises(GgufError, match="is a qwen2vl_merger projector, not dots.ocr's"):
        check_pair(pair[0], qwen)


@pytest.mark.parametrize(
    "data,message",
    [
        (b"", "not a GGUF file"),
        (b"PK\x03\x04 a zip file", "not a GGUF file"),
        (b"GGUF" + struct.pack("<I", 1), "GGUF version 1"),
        (header_bytes(LANGUAGE_MODEL)[:-7], "cut short"),
        (b"GGUF" + struct.pack("<IQQ", 3, 0, 1 << 40), "claims"),
        (b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1 << 40), "string in its header"),
        (b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1) + b"k" + struct.pack("<I", 99), "unknown type"),
        (
            b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 1) + b"k" + struct.pack("<IIQ", 9, 4, 1 << 40),
            "array of",
        ),
    ],
    ids=["empty", "zip", "old-version", "truncated", "huge-count", "huge-string", "unknown-type", "huge-array"],
)
def test_broken_and_hostile_files_are_refused_without_reading_on(tmp_path, data, message):
    path = tmp_path / "bad.gguf"
    path.write_bytes(data)
    with pytest.raises(GgufError, match=message):
        read_header(path)


def test_an_unreadable_path_is_an_error_not_a_crash(tmp_path):
    with pytest.raises(GgufError, match="cannot be read"):
        read_header(tmp_path)  # a folder
