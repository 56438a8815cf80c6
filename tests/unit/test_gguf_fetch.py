"""fetch_model --gguf's downloads, with the hub replaced by a double of its two calls (the machine has
no registry): each file is kept only when its SHA-256 is the published one."""

from __future__ import annotations

import hashlib

import pytest

from core import gguf_files
from ocr_app.gguf_fetch import SUMS_FILE, FetchError, Published, check_folder, fetch_pair

MODEL = gguf_files.GGUF_MODELS[gguf_files.DEFAULT_MODEL]
PAIR = MODEL.pair(gguf_files.Q4_K_M)
CONTENT = {PAIR.lm_file: b"GGUF language model bytes", PAIR.mmproj_file: b"GGUF projector bytes"}


class Hub:
    """hf_hub_download's and get_paths_info's answers for two files; `serve` may differ from `publish`."""

    def __init__(self, serve=None):
        self.publish = CONTENT
        self.serve = serve or CONTENT
        self.downloads = []

    def lister(self, repo, names, revision):
        assert repo == MODEL.repo
        return {n: Published(n, len(self.publish[n]), hashlib.sha256(self.publish[n]).hexdigest()) for n in names}

    def downloader(self, *, repo_id, filename, revision, local_dir):
        self.downloads.append(filename)
        path = f"{local_dir}/{filename}"
        with open(path, "wb") as fh:
            fh.write(self.serve[filename])
        return path


def test_the_pair_is_downloaded_verified_and_listed_then_kept(tmp_path):
    hub, said = Hub(), []
    paths = fetch_pair(MODEL, [gguf_files.Q4_K_M], tmp_path, say=said.append, lister=hub.lister,
                       downloader=hub.downloader)  # fmt: skip
    assert sorted(p.name for p in paths) == sorted(CONTENT) and sorted(hub.downloads) == sorted(CONTENT)
    assert sum("checksum verified" in s for s in said) == 2
    assert (tmp_path / SUMS_FILE).read_text().count("  ") == 2
    fetch_pair(MODEL, [gguf_files.Q4_K_M], tmp_path, say=said.append, lister=hub.lister, downloader=hub.downloader)
    assert len(hub.downloads) == 2  # intact files are not fetched again
    assert check_folder(tmp_path, said.append) == []


def test_a_download_with_the_wrong_checksum_is_removed_and_reported(tmp_path):
    hub = Hub(serve={**CONTENT, PAIR.lm_file: b"GGUF language model bytez"})
    with pytest.raises(FetchError, match="SHA-256 is .* the published one .*removed"):
        fetch_pair(MODEL, [gguf_files.Q4_K_M], tmp_path, say=lambda s: None, lister=hub.lister,
                   downloader=hub.downloader)  # fmt: skip
    assert not (tmp_path / PAIR.lm_file).exists()


def test_check_finds_a_changed_file_and_refuses_odd_lines(tmp_path):
    hub = Hub()
    fetch_pair(MODEL, [gguf_files.Q4_K_M], tmp_path, say=lambda s: None, lister=hub.lister, downloader=hub.downloader)
    (tmp_path / PAIR.mmproj_file).write_bytes(b"GGUF projector bytex")
    with (tmp_path / SUMS_FILE).open("a") as fh:
        fh.write(f"{'0' * 64}  ../../etc/passwd\n")
    problems = check_folder(tmp_path, lambda s: None)
    assert any(PAIR.mmproj_file in p and "SHA-256" in p for p in problems)
    assert any("not 'checksum  file name'" in p for p in problems)


def test_a_folder_without_sums_says_so(tmp_path):
    assert "has no SHA256SUMS" in check_folder(tmp_path)[0]


def test_a_file_the_hub_does_not_list_is_named(monkeypatch):
    import huggingface_hub

    from ocr_app import gguf_fetch

    class Api:
        def get_paths_info(self, repo, names, revision):
            return []

    monkeypatch.setattr(huggingface_hub, "HfApi", Api)
    with pytest.raises(FetchError, match=f"has no {PAIR.lm_file}"):
        gguf_fetch.published_files(MODEL.repo, [PAIR.lm_file], "main")
