"""Fetching a model's GGUF pair for the llama.cpp backend (`manage.py fetch_model --gguf`): each file
downloaded with a progress bar into the GGUF folder, then checked against the SHA-256 the hub
publishes for it (its Git LFS object id) and kept only when it matches.

The files are data, not code (unlike dots.ocr's remote code, which is pinned to a commit), so the
repository's branch may be followed; `--revision` pins one. A file already there with the right
checksum is not downloaded again. On a machine without internet the admin copies the files into
the folder instead; `manage.py fetch_model --gguf --check` then verifies what is there.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from core import gguf_files

CHUNK = 8 * 1024 * 1024
SUMS_FILE = "SHA256SUMS"

Say = Callable[[str], None]


class FetchError(Exception):
    """A download or a check that failed, worded for the admin."""


@dataclass(frozen=True)
class Published:
    name: str
    size: int | None
    sha256: str | None


def sha256_of(path: Path, say: Say | None = None) -> str:
    """The file's SHA-256, reporting every 10% on large files."""
    digest, total, done, step = hashlib.sha256(), path.stat().st_size, 0, 0
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
            done += len(chunk)
            if say and total > 10 * CHUNK and done * 10 // total > step:
                step = done * 10 // total
                say(f"  checking {path.name}: {step * 10}%")
    return digest.hexdigest()


def verify(path: Path, published: Published, say: Say | None = None) -> None:
    """FetchError unless `path` has the published size and checksum."""
    if not path.is_file():
        raise FetchError(f"{path} is not there")
    size = path.stat().st_size
    if published.size is not None and size != published.size:
        raise FetchError(f"{path.name} has {size:,} bytes, the published file {published.size:,}")
    if published.sha256:
        actual = sha256_of(path, say)
        if actual != published.sha256:
            raise FetchError(f"{path.name}'s SHA-256 is {actual}, the published one {published.sha256}")


def published_files(repo: str, names: list[str], revision: str) -> dict[str, Published]:
    """Size and SHA-256 of each file as the hub lists it (LFS files carry their SHA-256)."""
    from huggingface_hub import HfApi

    found = {}
    for info in HfApi().get_paths_info(repo, names, revision=revision):
        lfs = getattr(info, "lfs", None)
        found[info.path] = Published(info.path, getattr(info, "size", None), getattr(lfs, "sha256", None))
    missing = [n for n in names if n not in found]
    if missing:
        raise FetchError(f"{repo} at {revision} has no {', '.join(missing)}")
    return found


def fetch_pair(
    model: gguf_files.GgufModel,
    quantizations: list[str],
    folder: Path,
    *,
    revision: str = "main",
    say: Say = print,
    lister: Callable[[str, list[str], str], dict[str, Published]] = published_files,
    downloader: Callable[..., str] | None = None,
) -> list[Path]:
    """Download (or keep, when already there and intact) the files of `quantizations`; write
    SHA256SUMS beside them. Returns the files' paths."""
    names = sorted({n for q in quantizations for n in (model.pair(q).lm_file, model.pair(q).mmproj_file)})
    if not model.repo:
        raise FetchError(
            f"No published GGUF build of {model.model} is known. Convert its checkpoint with llama.cpp's "
            f"convert_hf_to_gguf.py (the language model, then --mmproj for the projector) and copy "
            f"{', '.join(names)} into {folder}."
        )
    published = lister(model.repo, names, revision)
    if downloader is None:
        from huggingface_hub import hf_hub_download as downloader
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name in names:
        path = folder / name
        try:
            verify(path, published[name])
            say(f"{name} is already here and intact.")
        except FetchError:
            say(f"Downloading {name} from {model.repo} ({(published[name].size or 0) / 1024**3:.2f} GiB) …")
            # huggingface_hub draws a progress bar on the terminal; a partial file is resumed.
            downloader(repo_id=model.repo, filename=name, revision=revision, local_dir=str(folder))
            try:
                verify(path, published[name], say)
            except FetchError as exc:
                path.unlink(missing_ok=True)
                raise FetchError(f"{exc}: the download was removed; run the command again") from None
            say(f"{name}: checksum verified.")
        paths.append(path)
    sums = {n: published[n].sha256 for n in names if published[n].sha256}
    (folder / SUMS_FILE).write_text("".join(f"{sha}  {n}\n" for n, sha in sorted(sums.items())))
    return paths


def check_folder(folder: Path, say: Say = print) -> list[str]:
    """Verify the files listed in the folder's SHA256SUMS; the problems found, in sentences."""
    sums = folder / SUMS_FILE
    if not sums.is_file():
        return [f"{folder} has no {SUMS_FILE}: nothing to check against (copied files are checked when loaded)"]
    problems = []
    for line in sums.read_text().splitlines():
        sha, _, name = line.partition("  ")
        if not name or "/" in name or name.startswith("."):
            problems.append(f"{SUMS_FILE} has a line that is not 'checksum  file name': {line[:80]!r}")
            continue
        try:
            verify(folder / name, Published(name, None, sha.strip()), say)
        except FetchError as exc:
            problems.append(str(exc))
    return problems
