"""The one interface every OCR backend implements.

The worker keeps one backend loaded between jobs (loading dots.ocr takes
minutes) and unloads it on a switch or an idle timeout, because the GPU is
shared and memory must be given back.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from PIL import Image

from core.results import CancelCheck, OcrResult, ProgressCallback


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
