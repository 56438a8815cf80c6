"""What a dots model is sent for one page, made the same way by the backends that run it in this
process (transformers, llama.cpp): the task and its box checked, the image resized within the
plan's pixels, the box scaled into the resized image, and the task's prompt."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

from core.dots import prompts
from core.dots.resize import MIN_PIXELS, fit_for_model
from core.results import BackendError


@dataclass
class SentPage:
    image: Image.Image  # resized for the model
    box: list[float] | None  # grounding: the region in the resized image's pixels
    prompt: str


def check_task(mode: str, bbox: Sequence[float] | None) -> None:
    """BackendError for an unknown task, a grounding task without its box, or a box for any other."""
    if mode not in prompts.MODES:
        raise BackendError(f"Unknown reading mode {mode!r}; known: {', '.join(prompts.MODES)}.")
    if mode == prompts.GROUNDING and (bbox is None or len(bbox) != 4):
        raise BackendError("Reading the text in a box needs the box [x1, y1, x2, y2].")
    if mode != prompts.GROUNDING and bbox is not None:
        raise BackendError(f"The {mode} mode reads the whole page and takes no box.")


def sent_page(
    image: Image.Image, mode: str, bbox: Sequence[float] | None, question: str | None, max_pixels: int
) -> SentPage:
    """The page as the model gets it; `bbox` is in the pixels of `image` (checked by check_task)."""
    try:
        resized, sx, sy = fit_for_model(image, max_pixels=max_pixels, min_pixels=MIN_PIXELS)
    except ValueError as exc:
        raise BackendError(f"This page cannot be sent to dots.ocr: {exc}.") from exc
    box = None
    if bbox is not None:
        x1, y1, x2, y2 = (float(v) for v in bbox)
        box = [x1 / sx, y1 / sy, x2 / sx, y2 / sy]
    try:
        prompt = prompts.prompt_for(mode, box, size=image.size, question=question)
    except ValueError as exc:  # prompt_for's own refusals reach the user as a page error
        raise BackendError(str(exc)) from exc
    return SentPage(resized, box, prompt)
