"""dots.mocr's prompts are upstream's, byte for byte; the catalog says which model runs which task; the
task registry refuses a task naming the models that can run it."""

from __future__ import annotations

import pytest

from core import catalog
from core.dots import prompts, tasks

# rednote-hilab/dots.ocr at 36d7248878f181c6257dc1cbd799ae940970444f, dots_ocr/utils/prompts.py
# (identical in rednote-hilab/dots.mocr at 23f3e5612fb8, dots_mocr/utils/prompts.py), as Python reads
# the triple-quoted strings there.
UPSTREAM = {
    "prompt_layout_all_en": "Please output the layout information from the PDF image, including each layout element's bbox, its category, and the corresponding text content within the bbox.\n\n1. Bbox format: [x1, y1, x2, y2]\n\n2. Layout Categories: The possible categories are ['Caption', 'Footnote', 'Formula', 'List-item', 'Page-footer', 'Page-header', 'Picture', 'Section-header', 'Table', 'Text', 'Title'].\n\n3. Text Extraction & Formatting Rules:\n    - Picture: For the 'Picture' category, the text field should be omitted.\n    - Formula: Format its text as LaTeX.\n    - Table: Format its text as HTML.\n    - All Others (Text, Title, etc.): Format their text as Markdown.\n\n4. Constraints:\n    - The output text must be the original text from the image, with no translation.\n    - All layout elements must be sorted according to human reading order.\n\n5. Final Output: The entire output must be a single JSON object.\n",  # noqa: E501
    "prompt_layout_only_en": "Please output the layout information from this PDF image, including each layout's "
    "bbox and its category. The bbox should be in the format [x1, y1, x2, y2]. The layout categories for the "
    "PDF document include ['Caption', 'Footnote', 'Formula', 'List-item', 'Page-footer', 'Page-header', "
    "'Picture', 'Section-header', 'Table', 'Text', 'Title']. Do not output the corresponding text. The layout "
    "result should be in JSON format.",
    "prompt_ocr": "Extract the text content from this image.",
    "prompt_grounding_ocr": "Extract text from the given bounding box on the image (format: [x1, y1, x2, y2])."
    "\nBounding Box:\n",
    "prompt_web_parsing": "Parsing the layout info of this webpage image with format json:\n",
    "prompt_scene_spotting": "Detect and recognize the text in the image.",
    "prompt_image_to_svg": 'Please generate the SVG code based on the image.viewBox="0 0 {width} {height}"',
}
OURS = {
    "prompt_layout_all_en": prompts.LAYOUT_ALL,
    "prompt_layout_only_en": prompts.LAYOUT_ONLY,
    "prompt_ocr": prompts.TEXT_ONLY,
    "prompt_grounding_ocr": prompts.GROUNDING,
    "prompt_web_parsing": prompts.WEB_PARSING,
    "prompt_scene_spotting": prompts.SCENE_SPOTTING,
    "prompt_image_to_svg": prompts.IMAGE_TO_SVG,
}


@pytest.mark.parametrize("upstream_name", sorted(UPSTREAM))
def test_each_prompt_is_upstreams_byte_for_byte(upstream_name):
    assert prompts.PROMPTS[OURS[upstream_name]].encode() == UPSTREAM[upstream_name].encode()


def test_the_svg_prompt_carries_the_original_size_and_a_question_its_own_text_and_system_prompt():
    # dots_mocr/parser.py get_prompt: {width} and {height} replaced by the original image's size.
    assert prompts.prompt_for(prompts.IMAGE_TO_SVG, size=(640, 480)) == (
        'Please generate the SVG code based on the image.viewBox="0 0 640 480"'
    )
    assert prompts.prompt_for(prompts.QUESTION, question="  What is the total?  ") == "What is the total?"
    assert prompts.prompt_for(prompts.QUESTION) == "Please describe the content of this image."
    assert prompts.system_prompt_for(prompts.QUESTION) == "You are a helpful assistant."
    assert {prompts.system_prompt_for(m) for m in prompts.MODES if m != prompts.QUESTION} == {None}
    with pytest.raises(ValueError, match="size"):
        prompts.prompt_for(prompts.IMAGE_TO_SVG)


def test_the_catalog_lists_the_three_models_with_their_tasks_and_sampling():
    listed = {m.name: m for m in catalog.MODELS}
    assert set(listed) == {"dots.ocr", "dots.mocr", "dots.mocr-svg"}
    assert {"web_parsing", "scene_spotting", "question"} <= set(listed["dots.mocr"].tasks)
    assert listed["dots.mocr-svg"].tasks == ("image_to_svg",)
    assert "scene_spotting" not in listed["dots.ocr"].tasks
    svg = listed["dots.mocr-svg"].sampling_for("image_to_svg")
    assert (svg.temperature, svg.top_p) == (0.9, 1.0)
    layout = listed["dots.mocr"].sampling_for("layout_all")
    assert (layout.temperature, layout.top_p) == (0.1, 0.9)
    assert listed["dots.mocr"].vllm_image == "vllm/vllm-openai:v0.17.1"
    assert "--trust-remote-code" in listed["dots.mocr"].vllm_flags


@pytest.mark.parametrize(
    "setting, name",
    [
        ("rednote-hilab/dots.mocr", "dots.mocr"),
        ("dots.mocr-svg", "dots.mocr-svg"),
        ("/srv/models/dots.mocr-svg/", "dots.mocr-svg"),
        ("/srv/models/DotsOCR", "dots.ocr"),
        ("", "dots.ocr"),
    ],
)
def test_a_backend_setting_names_its_catalog_model(setting, name):
    assert catalog.for_setting(setting).name == name


def test_a_model_is_present_once_its_pinned_weights_lie_in_the_hub_cache(tmp_path):
    model = catalog.get("dots.mocr")
    assert not model.present(tmp_path)
    snapshot = tmp_path / "models--rednote-hilab--dots.mocr" / "snapshots" / ("a" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text("{}")
    assert not model.present(tmp_path)  # the configuration alone is not the weights
    (snapshot / "model-00001-of-00002.safetensors").write_bytes(b"x")
    assert model.present(tmp_path) and model.to_dict(tmp_path)["present"] is True


def test_each_pin_is_a_full_commit_fetch_model_accepts_and_only_its_snapshot_counts(tmp_path):
    from ocr_app.management.commands.fetch_model import COMMIT

    pinned = {m.name: m.revision for m in catalog.MODELS if m.revision}
    assert pinned == {"dots.ocr": "c0111ce6bc07803dbc267932ffef0ae3a51dc951"}  # dots.mocr's: none published
    assert all(COMMIT.match(revision) for revision in pinned.values())
    model = catalog.get("dots.ocr")
    snapshots = tmp_path / "models--rednote-hilab--dots.ocr" / "snapshots"
    for commit in ("b" * 40, model.revision):
        (snapshots / commit).mkdir(parents=True)
        (snapshots / commit / "model.safetensors").write_bytes(b"x")
        # weights of another commit are not the pinned ones
        assert model.present(tmp_path) is (commit == model.revision)


def test_a_task_is_refused_naming_the_models_that_run_it():
    assert tasks.refusal("scene_spotting", "dots.mocr") is None
    why = tasks.refusal("scene_spotting", "dots.ocr")
    assert "needs dots.mocr" in why and "configured model is dots.ocr" in why
    assert "dots.mocr or dots.mocr-svg" in tasks.refusal("image_to_svg", "dots.ocr")
    assert [t.code for t in tasks.offered_by("dots.mocr-svg")] == ["image_to_svg"]
    assert "grounding" not in [t.code for t in tasks.offered_by("dots.mocr")]  # a region, not an upload


def test_the_planner_plans_each_catalog_model_with_its_own_name_and_the_shared_shapes():
    from core.modelfacts import DOTS_OCR

    for model in catalog.MODELS:
        assert model.facts.name == model.repo
        assert model.facts.weight_bytes("bf16") == DOTS_OCR.weight_bytes("bf16") == model.weights_bytes
