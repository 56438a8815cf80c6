"""Uploads of every document a team has, checked by their bytes (ocr_app/validation.py with
core/imageformats.py and core/frames.py): HEIC/HEIF, GIF, AVIF and JPEG 2000 images, and
multi-page TIFFs as documents under the page limit."""

from __future__ import annotations

import pytest

from core import documents, frames
from ocr_app.validation import ACCEPTED_EXTENSIONS, UploadRefused, check_upload
from tests.fixtures.documents import encoded, gif, heic, tiff_pages

LIMITS = {"max_bytes": 10**7, "max_pixels": 10**7, "max_pdf_pages": 5}


def check(name: str, data: bytes, **limits):
    return check_upload(name, data, **{**LIMITS, **limits})


@pytest.mark.parametrize(
    ("name", "make", "detected"),
    [
        ("IMG_0042.HEIC", lambda: heic(["Receipt"]), "HEIF"),
        ("still.gif", lambda: gif([["Notice"]]), "GIF"),
        ("photo.avif", lambda: encoded(["Photo"], "AVIF"), "AVIF"),
        ("scan.jp2", lambda: encoded(["Scan"], "JPEG2000"), "JPEG2000"),
    ],
)
def test_each_new_image_format_is_detected_by_its_bytes_whatever_its_name(name, make, detected):
    data = make()
    assert check(name, data).image_format == detected
    assert check("renamed.png", data).image_format == detected  # the name does not decide


def test_the_upload_form_offers_every_new_format():
    for ext in (".heic", ".heif", ".gif", ".avif", ".jp2", ".tif", ".pdf"):
        assert ext in ACCEPTED_EXTENSIONS.split(", ")


def test_an_animated_gif_is_accepted_as_one_image():
    checked = check("anim.gif", gif([["one"], ["two"], ["three"]]))
    assert (checked.image_format, checked.pages) == ("GIF", 1)


def test_a_multi_page_tiff_is_a_document_of_a_page_per_frame():
    data = tiff_pages([["one"], ["two"], ["three"]], size=(200, 80))
    checked = check("fax.tiff", data)

    assert (checked.image_format, checked.pages) == ("TIFF", 3)
    assert documents.is_document("TIFF", 3) and not documents.is_document("TIFF", 1)
    second, dpi = documents.render_page("TIFF", data, 1)
    assert second.size == (200, 80) and second.mode == "RGB" and dpi is None
    with pytest.raises(IndexError):
        documents.render_page("TIFF", data, 3)


def test_a_tiff_over_the_page_limit_is_refused_naming_the_file_and_the_limit():
    data = tiff_pages([["page"]] * 4, size=(64, 32))
    with pytest.raises(UploadRefused, match=r"fax\.tiff: the image has more than 3 pages .*the limit is 3"):
        check("fax.tiff", data, max_pdf_pages=3)


def test_a_tiff_whose_later_frame_is_too_large_is_refused_before_it_is_decoded():
    from tests.security.hostile import tiff_second_frame_bomb

    with pytest.raises(UploadRefused, match=r"page 2 is 30000×30000"):
        check("scan.tiff", tiff_second_frame_bomb())


def test_a_truncated_multi_page_tiff_is_refused_at_upload():
    data = tiff_pages([["one"], ["two"], ["three"]], size=(200, 80))
    with pytest.raises(UploadRefused, match="scan.tiff"):
        check("scan.tiff", data[: len(data) * 2 // 3])


def test_a_format_that_cannot_be_read_is_refused_naming_the_file_and_the_formats_accepted():
    with pytest.raises(UploadRefused) as refused:
        check("notes.xcf", b"gimp xcf v011" + b"\x00" * 64)
    message = str(refused.value)
    assert message.startswith("notes.xcf:")
    for name in ("PNG", "JPEG", "HEIF", "GIF", "AVIF", "JPEG2000", "PDF"):
        assert name in message


def test_count_frames_stops_at_the_limit_instead_of_walking_every_frame():
    import io

    from PIL import Image

    from tests.security.hostile import tiff_frames

    with Image.open(io.BytesIO(tiff_frames(5000))) as img:
        with pytest.raises(frames.FramesRefused, match="more than 10 pages"):
            frames.count_frames(img, "fax.tiff", 10, 10**6)
        assert img.tell() <= 11
