"""The one interface every OCR backend implements.

The worker keeps one backend loaded between jobs (loading dots.ocr takes
minutes) and unloads it on a switch or an idle timeout, because the GPU is
shared and memory must be given back.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from PIL import Image

from core.results import CancelCheck, OcrResult, ProgressCallback
from workers.backends.pagereading import PageEvent, PageInput, read_serially


class OcrBackend(ABC):
    """A backend as the worker holds it (workers/holder.py): loaded once with a plan's arguments,
    then asked to read one page at a time, then unloaded. What each backend is called, needs and
    costs is its entry in the registry (core/backends.py)."""

    #: Its registry name (core/backends.py), stored on each job.
    name: str = ""

    @abstractmethod
    def load(self, plan: dict[str, Any], progress: ProgressCallback | None = None) -> None:
        """Make the backend ready to run; may download or allocate memory. `plan` is what
        ocr_app/backendconfig.py `load_args` gives (the Plan's keys and where the model is);
        `progress(done, total, message)` is told about long steps."""

    @abstractmethod
    def unload(self) -> None:
        """Give back every resource load() took."""

    @abstractmethod
    def ocr(
        self,
        image: Image.Image,
        mode: str,
        cancel: CancelCheck,
        *,
        bbox: Sequence[float] | None = None,
        question: str | None = None,
    ) -> OcrResult:
        """Read one page image.

        `mode` is one of core.dots.prompts.MODES (the tasks of core/dots/tasks.py). `bbox` is passed
        for GROUNDING only, and required there: the region [x1, y1, x2, y2] to read, in the pixels of
        `image` (BackendError without one). `question` is the user's question for QUESTION.
        `cancel()` turns True once the job is cancelled: a backend asks it between its steps
        and raises JobCancelled. Failures worded for the user are BackendError (OutOfMemory when
        CUDA ran out of memory, so the worker can retry smaller)."""

    def pages_at_once(self) -> int:
        """How many pages this backend reads at the same time (the plan's `pages_at_once`)."""
        return 1

    def read_pages(
        self,
        pages: Iterable[PageInput],
        mode: str,
        cancel: CancelCheck,
        *,
        bbox: Sequence[float] | None = None,
        question: str | None = None,
    ) -> Iterator[PageEvent]:
        """Read a document's pages (`(key, image)` pairs from a page source), yielding each page's
        start and end as they happen (workers/backends/pagereading.py). A page's own BackendError
        fails that page; a cancel or CUDA running out of memory is raised. This default reads one
        page after another; backends that read several at once override it."""
        def read_one(image: Image.Image, check: CancelCheck) -> OcrResult:
            return self.ocr(image, mode, check, bbox=bbox, question=question)

        return read_serially(pages, read_one, cancel)

    def memory_estimate(self) -> int:
        """Bytes of GPU memory this backend holds once loaded."""
        return 0

    @property
    def loaded(self) -> bool:
        return False
