"""The task prompts dots.ocr was trained on.

The wording is the model's own (rednote-hilab/dots.ocr, dots_ocr/utils/prompts.py): the
model answers in the trained format only when asked with these exact sentences, so they
must not be "improved".
"""

from __future__ import annotations

LAYOUT_CATEGORIES = (
    "Caption", "Footnote", "Formula", "List-item", "Page-footer", "Page-header",
    "Picture", "Section-header", "Table", "Text", "Title",
)
_CATEGORY_LIST = "[" + ", ".join(f"'{c}'" for c in LAYOUT_CATEGORIES) + "]"

# ocrdash's mode names → the model's prompt.
LAYOUT_ALL = "layout_all"  # boxes + categories + text (the default)
LAYOUT_ONLY = "layout_only"  # boxes + categories, no text
TEXT_ONLY = "text"  # plain text of the page (page headers/footers left out by the model)
GROUNDING = "grounding"  # text inside one box
MODES = (LAYOUT_ALL, LAYOUT_ONLY, TEXT_ONLY, GROUNDING)

PROMPTS = {
    LAYOUT_ALL: f"""Please output the layout information from the PDF image, including each layout element's bbox, its category, and the corresponding text content within the bbox.

1. Bbox format: [x1, y1, x2, y2]

2. Layout Categories: The possible categories are {_CATEGORY_LIST}.

3. Text Extraction & Formatting Rules:
    - Picture: For the 'Picture' category, the text field should be omitted.
    - Formula: Format its text as LaTeX.
    - Table: Format its text as HTML.
    - All Others (Text, Title, etc.): Format their text as Markdown.

4. Constraints:
    - The output text must be the original text from the image, with no translation.
    - All layout elements must be sorted according to human reading order.

5. Final Output: The entire output must be a single JSON object.
""",  # noqa: E501
    LAYOUT_ONLY: (
        "Please output the layout information from this PDF image, including each layout's bbox and its "
        "category. The bbox should be in the format [x1, y1, x2, y2]. The layout categories for the PDF "
        f"document include {_CATEGORY_LIST}. Do not output the corresponding text. "
        "The layout result should be in JSON format."
    ),
    TEXT_ONLY: "Extract the text content from this image.",
    GROUNDING: (
        "Extract text from the given bounding box on the image (format: [x1, y1, x2, y2]).\nBounding Box:\n"
    ),
}

# vLLM's chat template adds a newline around the image unless the placeholder is spelled out.
IMAGE_PLACEHOLDER = "<|img|><|imgpad|><|endofimg|>"


def prompt_for(mode: str, bbox: list[int] | tuple[int, ...] | None = None) -> str:
    """The prompt for `mode`; grounding needs `bbox` in the pixels of the image sent to the model."""
    if mode not in PROMPTS:
        raise ValueError(f"unknown mode {mode!r}; known: {', '.join(MODES)}")
    if mode == GROUNDING:
        if bbox is None or len(bbox) != 4:
            raise ValueError("grounding needs a box [x1, y1, x2, y2]")
        return PROMPTS[GROUNDING] + str([int(round(v)) for v in bbox])
    if bbox is not None:
        raise ValueError(f"mode {mode!r} takes no box")
    return PROMPTS[mode]
