"""The one interface every OCR backend implements.

The worker keeps one backend loaded between jobs (loading dots.ocr takes
minutes) and unloads it on a switch or an idle timeout, because the GPU is
shared and memory must be given back.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from PIL import Image

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


class OcrBackend(ABC):
    #: Short stable name stored on each job ("rapidocr", "transformers", ...).
    name: str = ""

    @abstractmethod
    def load(self, plan: dict[str, Any], progress: ProgressCallback | None = None) -> None:
        """Make the backend ready to run; may download or allocate memory."""

    @abstractmethod
    def unload(self) -> None:
        """Give back every resource load() took."""

    @abstractmethod
    def ocr(self, image: Image.Image, mode: str, cancel: CancelCheck) -> OcrResult:
        """Recognize one page image."""

    def memory_estimate(self) -> int:
        """Bytes of GPU memory this backend holds once loaded."""
        return 0

    @property
    def loaded(self) -> bool:
        return False
