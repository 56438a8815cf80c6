"""The registry of tasks a job can run: each one's code, its words for people, how its answer is
read, what it shows and downloads, and which models (core/catalog.py) were trained for it.

Every list of tasks reads this registry: the upload form and the API's `mode`, the worker, result
reading (core/readpage.py) and the OpenAI-compatible endpoint. Prompts are in
core/dots/prompts.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from core import catalog
from core.dots import prompts, scene, svg
from core.dots.parse import ParsedPage, parse_output

LAYOUT = "layout"  # elements with boxes, rendered like documents
TEXT = "text"  # plain text
SCENE = "scene"  # text instances with quadrilaterals
SVG = "svg"  # an SVG drawing


@dataclass(frozen=True)
class Task:
    code: str
    label: str
    help: str
    result: str  # LAYOUT, TEXT, SCENE or SVG: how the job page shows it and what it downloads as
    uploadable: bool = True  # grounding runs on a region of a page, not an upload
    rapidocr: bool = True  # the CPU text engine can answer it (from its lines)

    @property
    def models(self) -> list[str]:
        return catalog.supporting(self.code)


TASKS: tuple[Task, ...] = (
    Task(
        prompts.LAYOUT_ALL,
        "Full layout",
        "boxes, categories (title, table, formula…) and text, in reading order",
        LAYOUT,
    ),
    Task(prompts.LAYOUT_ONLY, "Layout only", "boxes and categories without the text: faster", LAYOUT),
    Task(prompts.TEXT_ONLY, "Text only", "the page's plain text, without page headers and footers", TEXT),
    Task(prompts.GROUNDING, "Region", "the text inside one box", TEXT, uploadable=False),
    Task(prompts.WEB_PARSING, "Web page", "a screenshot of a web page: its layout elements and their text", LAYOUT),
    Task(prompts.SCENE_SPOTTING, "Scene text", "text in a photo: each line's outline and its text", SCENE),
    Task(prompts.IMAGE_TO_SVG, "Image to SVG", "a chart or diagram redrawn as SVG code", SVG, rapidocr=False),
    Task(prompts.QUESTION, "Question", "ask a question about the image; the answer is text", TEXT, rapidocr=False),
)
CODES = tuple(t.code for t in TASKS)


def get(code: str) -> Task:
    for task in TASKS:
        if task.code == code:
            return task
    raise KeyError(f"unknown task {code!r}; known: {', '.join(CODES)}")


def uploadable() -> list[Task]:
    return [t for t in TASKS if t.uploadable]


def offered_by(model_name: str) -> list[Task]:
    """The upload tasks the catalog model `model_name` can run."""
    model = catalog.get(model_name)
    return [t for t in TASKS if t.uploadable and model.supports(t.code)]


def refusal(code: str, model_name: str) -> str | None:
    """Why `model_name` cannot run task `code` (naming the models that can), or None."""
    task = get(code)
    model = catalog.get(model_name)
    if model.supports(code):
        return None
    able = task.models
    return (
        f"The task '{code}' ({task.label.lower()}) needs {' or '.join(able)}; the configured model is "
        f"{model.name}. An admin chooses the model in the backend settings."
    )


def parse(
    raw: str,
    mode: str,
    sent_size: Sequence[int] | None,
    original_size: Sequence[int] | None,
    *,
    grounding_box: Sequence[float] | None = None,
    hit_token_limit: bool = False,
) -> ParsedPage:
    """A dots model's answer for `mode` as a page, boxes and outlines in original-image pixels."""
    if mode == prompts.SCENE_SPOTTING:
        return scene.parse_scene(raw, sent_size, original_size, hit_token_limit=hit_token_limit)
    if mode == prompts.IMAGE_TO_SVG:
        return svg.parse_svg(raw, original_size, hit_token_limit=hit_token_limit)
    # Web pages are answered in the layout format; a question like the text task.
    like = {prompts.WEB_PARSING: prompts.LAYOUT_ALL, prompts.QUESTION: prompts.TEXT_ONLY}.get(mode, mode)
    page = parse_output(
        raw, like, sent_size, original_size, grounding_box=grounding_box, hit_token_limit=hit_token_limit
    )
    page.mode = mode
    return page
