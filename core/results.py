"""What every OCR engine gives back and how it fails, worded for the person who sent the job.

The worker's backends (workers/backends/) produce these; page reading (core/readpage.py), the
language downloads and the web app read them. Pure: no engine is imported here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

# Called by long operations with (done, total, message); total may be 0 when unknown.
ProgressCallback = Callable[[int, int, str], None]
# Returns True once the user asked to stop; backends poll it between steps.
CancelCheck = Callable[[], bool]


class BackendError(Exception):
    """A failure worded for the person who submitted the job."""


class OutOfMemory(BackendError):
    """CUDA ran out of memory: the worker retries smaller, then falls back to the next backend."""


class JobCancelled(Exception):
    """Raised by a backend that noticed the cancel flag."""


@dataclass
class TextLine:
    text: str
    # Four corner points [[x, y], ...] in the pixels of the image given to ocr().
    box: list[list[float]]
    score: float


@dataclass
class OcrResult:
    text: str
    lines: list[TextLine] = field(default_factory=list)
    # What the engine produced before any parsing, kept for later re-parsing.
    raw: str = ""
    # Facts worth showing on the job page, e.g. {"language": "eslav"}.
    details: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)
