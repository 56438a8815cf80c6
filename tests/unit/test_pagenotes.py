"""The words a finished document job says about its pages."""

from core.pagenotes import document_message, text_layer_note


def test_the_text_layer_note_names_the_pages_read_without_ocr():
    assert text_layer_note(1, [1]) == "The page was read from the PDF's own text layer, without OCR."
    assert text_layer_note(3, [2]).startswith("Page 2 was read")
    assert text_layer_note(3, [1, 3]).startswith("Pages 1, 3 were read")
    assert text_layer_note(3, []) is None


def test_a_document_message_names_failed_pages_with_the_first_reason_and_the_warned_ones():
    message = document_message(["Ran on rapidocr."], 5, [(2, "unreadable"), (4, "too large")], [1])
    assert message == (
        "Ran on rapidocr. Pages 2, 4 of 5 failed (unreadable); retry to read them again. See the warnings on page 1."
    )
    assert document_message([], 3, [(3, "x")], []) == "Page 3 of 3 failed (x); retry to read it again."
    assert document_message([], 3, [], []) == ""
