"""What the in-process dots backends send for a page: the task checked, the box scaled with the image."""

import pytest
from PIL import Image

from core.dots import prompts
from core.results import BackendError
from workers.backends.sentpage import check_task, sent_page


@pytest.mark.parametrize(
    ("mode", "bbox", "says"),
    [
        ("poetry", None, "Unknown reading mode"),
        (prompts.GROUNDING, None, "needs the box"),
        (prompts.GROUNDING, [1, 2, 3], "needs the box"),
        (prompts.TEXT_ONLY, [1, 2, 3, 4], "takes no box"),
    ],
)
def test_a_task_without_its_box_or_with_one_it_does_not_take_is_refused(mode, bbox, says):
    with pytest.raises(BackendError, match=says):
        check_task(mode, bbox)


def test_the_box_is_scaled_into_the_resized_image_and_named_in_the_prompt():
    image = Image.new("RGB", (4000, 2000), "white")
    sent = sent_page(image, prompts.GROUNDING, [400, 200, 800, 400], None, max_pixels=1_000_000)
    scale = image.width / sent.image.width
    assert sent.image.width * sent.image.height <= 1_000_000
    assert sent.box == pytest.approx([400 / scale, 200 / scale, 800 / scale, 400 / scale], rel=0.02)
    assert str(int(sent.box[0])) in sent.prompt


def test_a_question_is_sent_as_asked_and_an_svg_prompt_carries_the_original_size():
    image = Image.new("RGB", (3000, 1500))
    asked = sent_page(image, prompts.QUESTION, None, "  What is the total?  ", max_pixels=1_000_000)
    assert asked.prompt == "What is the total?"
    drawing = sent_page(image, prompts.IMAGE_TO_SVG, None, None, max_pixels=1_000_000)
    assert 'viewBox="0 0 3000 1500"' in drawing.prompt and drawing.image.width < 3000
