"""A page written back in the format its prompt asks the model for (pure: no Django).

The OpenAI-compatible endpoint (ocr_app/api/openai.py) answers a dots prompt as a dots model on
vLLM would, whichever backend read the page, so a client written for dots.ocr / dots.mocr parses
the answer with its own code. Upstream's client (rednote-hilab/dots.ocr at 36d7248878f1,
dots_ocr/parser.py `_parse_single_image` and dots_ocr/utils/layout_utils.py `post_process_cells`;
dots.mocr at 23f3e5612fb8, `post_process_scene_text`) reads boxes in the pixels the model saw:
the sent image after `smart_resize` (sides multiples of 28, within the pixel limits), and scales
them back to the image it sent. So boxes and outlines are written in those pixels here:

- layout_all, web_parsing: a JSON list of {"bbox": [x1, y1, x2, y2], "category", "text"}
  (no text for a Picture, as the prompt says);
- layout_only: the same without text;
- scene_spotting: one `(x1, y1), (x2, y2), (x3, y3), (x4, y4) text` line per text instance;
- image_to_svg: the (sanitized) SVG code;
- text, grounding, question: the text.
"""

from __future__ import annotations

import json

from core.dots import boxes, prompts, scene
from core.dots.parse import ParsedPage


def model_size(original_size: tuple[int, int]) -> tuple[int, int]:
    """(width, height) of the image a dots model sees for an image of `original_size`."""
    return boxes.sent_size(original_size)


def _scaled(box, sx: float, sy: float, size: tuple[int, int]) -> list[int]:
    x1, y1, x2, y2 = box
    w, h = size
    out = [round(x1 / sx), round(y1 / sy), round(x2 / sx), round(y2 / sy)]
    return [min(max(out[0], 0), w), min(max(out[1], 0), h), min(max(out[2], 0), w), min(max(out[3], 0), h)]


def layout_cells(page: ParsedPage, with_text: bool = True) -> list[dict]:
    """The page's elements that have a box, in the model's pixels."""
    original = page.original_size
    seen = model_size(original) if original else None
    sx, sy = boxes.scale_factors(seen, original) if seen else (1.0, 1.0)
    cells = []
    for element in page.elements:
        if element.bbox is None:
            continue
        cell: dict = {
            "bbox": _scaled(element.bbox, sx, sy, seen) if seen else list(element.bbox),
            "category": element.category,
        }
        if with_text and element.category != "Picture":
            cell["text"] = element.text
        cells.append(cell)
    return cells


def model_answer(page: ParsedPage, mode: str) -> str:
    """`page` in the format the prompt of `mode` asks for."""
    if mode in (prompts.LAYOUT_ALL, prompts.WEB_PARSING, prompts.LAYOUT_ONLY):
        return json.dumps(layout_cells(page, with_text=mode != prompts.LAYOUT_ONLY), ensure_ascii=False)
    if mode == prompts.SCENE_SPOTTING:
        seen = model_size(page.original_size) if page.original_size else None
        return scene.as_lines(ParsedPage(elements=page.elements, sent_size=seen, original_size=page.original_size))
    if mode == prompts.IMAGE_TO_SVG:
        return page.svg if page.svg is not None else page.text
    return page.text
