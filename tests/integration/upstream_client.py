"""The code path of dots.ocr's own client, written again from upstream so that a test can point it at
ocrdash's /v1 without fetching anything: rednote-hilab/dots.ocr at
36d7248878f181c6257dc1cbd799ae940970444f.

- `inference_with_vllm`: dots_ocr/model/inference.py lines 7-46 (the OpenAI client, one user message:
  the image as a PNG data URL, then "<|img|><|imgpad|><|endofimg|>" + the prompt; an optional
  system message first), called as dots_ocr/parser.py `DotsOCRParser._inference_with_vllm` calls it
  with the parser's defaults (lines 22-31: model_name "model", temperature 0.1, top_p 1.0,
  max_completion_tokens 16384);
- `parse_single_image`: dots_ocr/parser.py `_parse_single_image` (lines 145-253) for the layout
  prompts: `fetch_image` without pixel limits (dots_ocr/utils/image_utils.py: RGB, no resize),
  `smart_resize` of the image for input_width/height, `post_process_output`
  (dots_ocr/utils/layout_utils.py lines 202-231: json.loads, then `post_process_cells` scales each
  bbox from smart_resize(input) to the original image; an exception means "filtered", the JSON
  could not be used) and `layoutjson2md` (dots_ocr/utils/format_transformer.py lines 145-180);
- `load_images_from_pdf`: dots_ocr/utils/doc_utils.py lines 20-60 (PyMuPDF at 200 dpi).

Only what the layout path touches is here; the Picture crops and formula cleaning of layoutjson2md
are left out (rapidocr answers Text cells only).
"""

from __future__ import annotations

import base64
import json
import os
from io import BytesIO
from pathlib import Path

from PIL import Image

from core.dots.resize import smart_resize  # upstream's smart_resize (dots_ocr/utils/image_utils.py)


def pil_image_to_base64(image: Image.Image, fmt: str = "PNG") -> str:
    buffered = BytesIO()
    image.save(buffered, format=fmt)
    return f"data:image/{fmt.lower()};base64,{base64.b64encode(buffered.getvalue()).decode('utf-8')}"


def inference_with_vllm(
    image,
    prompt,
    base_url: str,
    temperature=0.1,
    top_p=1.0,
    max_completion_tokens=16384,
    model_name="model",
    system_prompt=None,
) -> str:
    from openai import OpenAI

    client = OpenAI(api_key=os.environ.get("API_KEY", "0"), base_url=base_url)
    messages = []
    if system_prompt:
        messages.append({"role": "system", "content": system_prompt})
    messages.append(
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": pil_image_to_base64(image)}},
                {"type": "text", "text": f"<|img|><|imgpad|><|endofimg|>{prompt}"},
            ],
        }
    )
    response = client.chat.completions.create(
        messages=messages,
        model=model_name,
        max_completion_tokens=max_completion_tokens,
        temperature=temperature,
        top_p=top_p,
    )
    return response.choices[0].message.content


def post_process_cells(origin_image: Image.Image, cells: list, input_width: int, input_height: int) -> list:
    assert isinstance(cells, list) and len(cells) > 0 and isinstance(cells[0], dict)
    input_height, input_width = smart_resize(input_height, input_width)
    scale_x = input_width / origin_image.width
    scale_y = input_height / origin_image.height
    out = []
    for cell in cells:
        bbox = cell["bbox"]
        copy = dict(cell)
        copy["bbox"] = [
            int(float(bbox[0]) / scale_x),
            int(float(bbox[1]) / scale_y),
            int(float(bbox[2]) / scale_x),
            int(float(bbox[3]) / scale_y),
        ]
        out.append(copy)
    return out


def post_process_output(response: str, origin_image: Image.Image, input_image: Image.Image):
    """(cells, filtered): filtered means upstream gave up on the JSON ("JSON parsing failed")."""
    try:
        cells = json.loads(response)
        return post_process_cells(origin_image, cells, input_image.width, input_image.height), False
    except Exception:
        return response, True


def layoutjson2md(cells: list, text_key: str = "text", no_page_hf: bool = False) -> str:
    items = []
    for cell in cells:
        if no_page_hf and cell["category"] in ("Page-header", "Page-footer"):
            continue
        items.append(cell.get(text_key, "").strip())
    return "\n\n".join(items)


def parse_single_image(
    origin_image: Image.Image,
    prompt: str,
    save_dir: Path,
    save_name: str,
    base_url: str,
    model_name: str = "model",
    layout_only: bool = False,
) -> dict:
    """What `_parse_single_image` writes for a layout prompt: {name}.json and, unless layout only,
    {name}.md; returns its result record."""
    image = origin_image.convert("RGB")
    input_height, input_width = smart_resize(image.height, image.width)
    response = inference_with_vllm(image, prompt, base_url, model_name=model_name)
    result = {"input_height": input_height, "input_width": input_width, "response": response}
    cells, filtered = post_process_output(response, origin_image, image)
    result["filtered"] = filtered
    json_path = save_dir / f"{save_name}.json"
    json_path.write_text(json.dumps(cells, ensure_ascii=False), encoding="utf-8")
    result["layout_info_path"] = json_path
    if not filtered and not layout_only:
        md_path = save_dir / f"{save_name}.md"
        md_path.write_text(layoutjson2md(cells), encoding="utf-8")
        result["md_content_path"] = md_path
    result["cells"] = cells
    return result


def load_images_from_pdf(pdf_file: Path, dpi: int = 200) -> list[Image.Image]:
    import fitz

    images = []
    with fitz.open(pdf_file) as doc:
        for page in doc:
            matrix = fitz.Matrix(dpi / 72, dpi / 72)
            pixmap = page.get_pixmap(matrix=matrix, alpha=False)
            if pixmap.width > 4500 or pixmap.height > 4500:
                pixmap = page.get_pixmap(matrix=fitz.Matrix(1, 1), alpha=False)
            images.append(Image.frombytes("RGB", (pixmap.width, pixmap.height), pixmap.samples))
    return images
