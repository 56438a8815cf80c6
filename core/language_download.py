"""Fetching a recognition model of the CPU engine: over HTTP, with progress, checked against the
SHA-256 rapidocr publishes, written whole or not at all (the catalogue is core/languages.py)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import requests

from core import languages
from core.languages import OcrLanguage
from core.results import BackendError, ProgressCallback

_CHUNK = 64 * 1024
_MIN_STEP = 256 * 1024


def _mb(n: int) -> str:
    return f"{n / 1_000_000:.1f} MB"


def download_language(
    lang: str | OcrLanguage,
    model_dir: str | os.PathLike[str],
    progress: ProgressCallback | None = None,
    url: str | None = None,
    sha256: str | None = None,
    timeout: float = 30,
    mirror: str | None = None,
) -> Path:
    """Download the recognition model of ``lang`` into ``model_dir``; return its path.

    ``url`` and ``sha256`` replace the catalog's values (a mirror, a test server);
    ``mirror`` is a base URL under which the model's file name is fetched.
    The file is written to ``<name>.part`` and renamed once its SHA-256 matches,
    so a model file that exists is always complete.
    """
    lang = languages.get_language(lang)
    dest = languages.model_path(lang, model_dir)
    if lang.bundled and url is None and mirror is None:
        return dest
    if lang.bundled:
        raise BackendError(f"The {lang.label} model comes with the program and is not downloaded.")

    if url is None:
        url = f"{mirror.rstrip('/')}/{lang.filename}" if mirror else lang.url
    expected = (sha256 if sha256 is not None else lang.sha256).strip().lower()
    by_hand = f"To install it by hand, download {url} on a machine with internet access and copy the file to {dest}."
    part = dest.with_name(dest.name + ".part")

    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BackendError(f"Cannot create the model folder {dest.parent}: {exc.strerror or exc}.") from exc

    def report(done: int, total: int) -> None:
        if progress is not None:
            size = f"{_mb(done)} of {_mb(total)}" if total else _mb(done)
            progress(done, total, f"Downloading the {lang.label} text model: {size}")

    digest = hashlib.sha256()
    done = 0
    try:
        try:
            with requests.get(url, stream=True, timeout=timeout) as response:
                response.raise_for_status()
                total = int(response.headers.get("Content-Length") or 0)
                step = max(total // 100, _MIN_STEP)
                report(0, total)
                last = 0
                with open(part, "wb") as fh:
                    for chunk in response.iter_content(chunk_size=_CHUNK):
                        if not chunk:
                            continue
                        fh.write(chunk)
                        digest.update(chunk)
                        done += len(chunk)
                        if done - last >= step:
                            last = done
                            report(done, total)
        except requests.HTTPError as exc:
            status = exc.response.status_code if exc.response is not None else "an error"
            raise BackendError(
                f"Could not download the {lang.label} text model: {url} answered with HTTP status {status}. {by_hand}"
            ) from exc
        except requests.RequestException as exc:
            raise BackendError(
                f"Could not download the {lang.label} text model from {url} ({_reason(exc)}). {by_hand}"
            ) from exc
        except OSError as exc:
            raise BackendError(f"Could not save the {lang.label} text model to {part}: {exc.strerror or exc}.") from exc

        if total and done != total:
            raise BackendError(f"The download of {url} stopped after {done} of {total} bytes. Try again. {by_hand}")
        got = digest.hexdigest()
        if expected and got != expected:
            raise BackendError(
                f"The file downloaded from {url} is not the expected {lang.label} model "
                f"(its SHA-256 is {got}, expected {expected}), so it was deleted. "
                f"Try again or use another mirror. {by_hand}"
            )
        if done == 0:
            raise BackendError(f"{url} sent an empty file. {by_hand}")
        os.replace(part, dest)
    finally:
        if part.exists():
            try:
                part.unlink()
            except OSError:
                pass
    report(done, done)
    return dest


def _reason(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.ConnectTimeout):
        return "the server did not answer in time"
    if isinstance(exc, requests.Timeout):
        return "the download stalled"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "the connection broke during the download"
    if isinstance(exc, requests.ConnectionError):
        return "no connection could be made; is this machine offline?"
    return str(exc) or type(exc).__name__
