"""The CPU engine's language catalog and model downloads (against a local HTTP server)."""

from __future__ import annotations

import hashlib
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from core import language_download, languages
from core.results import BackendError

PAYLOAD = os.urandom(700 * 1024)
PAYLOAD_SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"
    requests_seen: list[str] = []

    def log_message(self, format, *args):  # keep test output quiet
        pass

    def do_GET(self):
        self.requests_seen.append(self.path)
        name = self.path.rsplit("/", 1)[-1]
        if self.path.startswith("/short/"):
            # Promise the whole file, send a third, hang up.
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD[: len(PAYLOAD) // 3])
            return
        if self.path.startswith("/nolength/"):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(PAYLOAD)
            return
        if name.endswith(".onnx") or name == "model.bin":
            self.send_response(200)
            self.send_header("Content-Length", str(len(PAYLOAD)))
            self.end_headers()
            self.wfile.write(PAYLOAD)
            return
        self.send_error(404, "Not Found")


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _package_yaml() -> dict:
    path = languages.package_dir() / "default_models.yaml"
    return yaml.safe_load(path.read_text(encoding="utf-8"))


# -- catalog ---------------------------------------------------------------


def test_catalog_lists_the_built_in_model_first_then_the_other_scripts():
    codes = [lang.code for lang in languages.all_languages()]
    assert codes[0] == "multi"
    for code in ("eslav", "cyrillic", "korean", "arabic", "el", "th", "devanagari", "ta", "te"):
        assert code in codes
    assert len(codes) == len(set(codes))
    assert [lang.code for lang in languages.all_languages() if lang.bundled] == ["multi"]


def test_built_in_language_file_is_in_the_installed_package():
    multi = languages.get_language("multi")
    assert multi.bundled
    assert "built in" in multi.label
    path = languages.model_path(multi, None)
    assert path.is_file() and path.stat().st_size > 0
    assert languages.is_installed(multi, None)


def test_addresses_and_hashes_come_from_rapidocrs_own_yaml():
    models = _package_yaml()["onnxruntime"]["PP-OCRv5"]["rec"]
    eslav = languages.get_language("eslav")
    assert eslav.model_key == "eslav_PP-OCRv5_rec_mobile"
    assert eslav.url == models["eslav_PP-OCRv5_rec_mobile"]["model_dir"]
    assert eslav.sha256 == models["eslav_PP-OCRv5_rec_mobile"]["SHA256"].lower()
    assert eslav.filename == "eslav_PP-OCRv5_rec_mobile.onnx"
    assert not eslav.bundled


def test_every_language_says_what_it_reads():
    for lang in languages.all_languages():
        assert lang.label and lang.reads.endswith(".")
        assert lang.url.endswith(lang.filename)
        assert len(lang.sha256) == 64
    assert "Russian" in languages.get_language("eslav").reads


def test_unknown_language_code_error_lists_valid_codes():
    with pytest.raises(ValueError) as err:
        languages.get_language("klingon")
    message = str(err.value)
    assert "klingon" in message
    for lang in languages.all_languages():
        assert lang.code in message


def test_language_codes_ignore_case_and_spaces():
    assert languages.get_language(" ESLAV ").code == "eslav"


def test_support_models_are_bundled():
    paths = languages.support_model_paths()
    assert set(paths) == {"det", "cls"}
    assert all(path.is_file() for path in paths.values())


def test_a_downloadable_language_is_installed_only_with_a_non_empty_file(tmp_path):
    eslav = languages.get_language("eslav")
    assert not languages.is_installed("eslav", tmp_path)
    assert not languages.is_installed("eslav", None)
    path = languages.model_path(eslav, tmp_path)
    assert path == tmp_path / eslav.filename
    path.write_bytes(b"")
    assert not languages.is_installed("eslav", tmp_path)
    path.write_bytes(b"model")
    assert languages.is_installed("eslav", tmp_path)


# -- downloads -------------------------------------------------------------


def test_download_reports_increasing_progress_up_to_the_total(server, tmp_path):
    calls = []
    language_download.download_language(
        "eslav",
        tmp_path,
        progress=lambda done, total, msg: calls.append((done, total, msg)),
        url=f"{server}/files/eslav.onnx",
        sha256=PAYLOAD_SHA,
    )
    dones = [done for done, _total, _msg in calls]
    assert len(calls) >= 3
    assert dones == sorted(dones)
    assert dones[-1] == len(PAYLOAD)
    assert all(total == len(PAYLOAD) for _done, total, _msg in calls)
    # Throttled: far fewer calls than 64 KiB chunks.
    assert len(calls) <= len(PAYLOAD) // (256 * 1024) + 3
    assert "Russian" in calls[0][2]


def test_downloaded_model_lands_in_model_dir_and_counts_as_installed(server, tmp_path):
    model_dir = tmp_path / "models" / "nested"
    assert not languages.is_installed("korean", model_dir)
    path = language_download.download_language(
        "korean", model_dir, url=f"{server}/files/k.onnx", sha256=PAYLOAD_SHA.upper()
    )
    assert path == model_dir / "korean_PP-OCRv5_rec_mobile.onnx"
    assert path.read_bytes() == PAYLOAD
    assert languages.is_installed("korean", model_dir)
    assert sorted(p.name for p in model_dir.iterdir()) == [path.name]


def test_mirror_base_url_fetches_the_file_by_its_name(server, tmp_path):
    _Handler.requests_seen.clear()
    language_download.download_language("th", tmp_path, mirror=f"{server}/mirror/", sha256=PAYLOAD_SHA)
    assert _Handler.requests_seen == ["/mirror/th_PP-OCRv5_rec_mobile.onnx"]


def test_checksum_mismatch_raises_and_leaves_no_file(server, tmp_path):
    url = f"{server}/files/el.onnx"
    with pytest.raises(BackendError) as err:
        language_download.download_language("el", tmp_path, url=url, sha256="0" * 64)
    message = str(err.value)
    assert url in message
    assert "SHA-256" in message
    assert list(tmp_path.iterdir()) == []
    assert not languages.is_installed("el", tmp_path)


def test_catalog_checksum_is_used_when_none_is_given(server, tmp_path):
    with pytest.raises(BackendError, match="not the expected"):
        language_download.download_language("ta", tmp_path, url=f"{server}/files/ta.onnx")
    assert list(tmp_path.iterdir()) == []


def test_refused_connection_names_the_url_and_the_by_hand_path(tmp_path):
    url = f"http://127.0.0.1:{_unused_port()}/eslav_PP-OCRv5_rec_mobile.onnx"
    with pytest.raises(BackendError) as err:
        language_download.download_language("eslav", tmp_path, url=url, timeout=5)
    message = str(err.value)
    assert url in message
    assert str(tmp_path / "eslav_PP-OCRv5_rec_mobile.onnx") in message
    assert "copy" in message
    assert list(tmp_path.iterdir()) == []


def test_http_error_status_is_reported_with_the_url(server, tmp_path):
    url = f"{server}/missing/file.txt"
    with pytest.raises(BackendError) as err:
        language_download.download_language("te", tmp_path, url=url)
    assert "404" in str(err.value)
    assert url in str(err.value)
    assert list(tmp_path.iterdir()) == []


def test_a_download_cut_short_leaves_no_file(server, tmp_path):
    with pytest.raises(BackendError):
        language_download.download_language(
            "devanagari", tmp_path, url=f"{server}/short/x.onnx", sha256=PAYLOAD_SHA
        )
    assert list(tmp_path.iterdir()) == []


def test_download_without_a_length_header_still_completes(server, tmp_path):
    calls = []
    path = language_download.download_language(
        "cyrillic",
        tmp_path,
        progress=lambda done, total, msg: calls.append((done, total)),
        url=f"{server}/nolength/model.bin",
        sha256=PAYLOAD_SHA,
    )
    assert path.read_bytes() == PAYLOAD
    assert calls[0] == (0, 0)
    assert calls[-1] == (len(PAYLOAD), len(PAYLOAD))


def test_a_finished_download_replaces_an_older_file(server, tmp_path):
    old = tmp_path / "el_PP-OCRv5_rec_mobile.onnx"
    old.write_bytes(b"stale")
    language_download.download_language("el", tmp_path, url=f"{server}/f/el.onnx", sha256=PAYLOAD_SHA)
    assert old.read_bytes() == PAYLOAD


def test_the_built_in_language_needs_no_download(tmp_path):
    path = language_download.download_language("multi", tmp_path)
    assert path == languages.model_path("multi", None)
    assert list(Path(tmp_path).iterdir()) == []
