"""Files and downloads: the uploaded file, page images, picture crops, text and result downloads.

Everything a user uploaded or the model wrote is served as what it was detected to be, sandboxed
(ocr_app/serving.py); a file the retention settings removed answers 410, saying when.
"""

from __future__ import annotations

import io
import json
from pathlib import PurePath

from django.http import FileResponse, Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_GET
from PIL import Image, ImageOps

from core import documents, imageformats
from ocr_app import pictures, retention, serving
from ocr_app.api.results import result_document
from ocr_app.models import Job, Page

# Browsers cannot show these; the page gets a PNG rendition instead.
NOT_BROWSER_FORMATS = imageformats.NOT_BROWSER


def _removed(job: Job, part: str) -> HttpResponse | None:
    """410 Gone, saying when, for a file the retention settings removed."""
    message = retention.removed_message(job, part)
    if message is None:
        return None
    response = HttpResponse(message, status=410, content_type="text/plain; charset=utf-8")
    return serving.user_content(response)


@require_GET
def job_image(request: HttpRequest, pk: int) -> HttpResponse:
    """The uploaded image, shown in the page: its type is the one detected at upload (never the
    name's), and the response is sandboxed (ocr_app.serving)."""
    job = get_object_or_404(Job, pk=pk)
    if job.is_document:
        return page_image(request, pk, 1)
    if gone := _removed(job, retention.ORIGINAL):
        return gone
    if job.image_format in NOT_BROWSER_FORMATS:
        with _open_stored(job.upload) as fh, Image.open(fh) as img:
            out = io.BytesIO()
            img = ImageOps.exif_transpose(img)
            img.convert("RGBA" if "A" in img.getbands() else "RGB").save(out, "PNG")
        return serving.user_content(HttpResponse(out.getvalue(), content_type="image/png"))
    response = FileResponse(_open_stored(job.upload), content_type=serving.content_type(job.image_format))
    return serving.user_content(response)


@require_GET
def page_image(request: HttpRequest, pk: int, number: int) -> HttpResponse:
    """A page as the model saw it: a document's page as rendered (the first is rendered here while
    it waits, for the job page's preview), an image job's one page is its image."""
    page = get_object_or_404(Page.objects.select_related("job"), job_id=pk, number=number)
    job = page.job
    if not job.is_document:
        return job_image(request, pk)
    if page.image:
        return serving.user_content(FileResponse(_open_stored(page.image), content_type="image/png"))
    if number != 1 or not job.upload:  # the first page is drawn from the upload while it is there
        if gone := _removed(job, retention.PAGES) or _removed(job, retention.ORIGINAL):
            return gone
    if number != 1:
        raise Http404("This page has not been rendered yet.")
    with _open_stored(job.upload) as fh:
        try:
            image, _dpi = documents.render_page(job.image_format, fh.read(), 0, name=job.original_name, preview=True)
        except documents.PageRefused as refused:
            return HttpResponse(str(refused), status=422, content_type="text/plain; charset=utf-8")
    out = io.BytesIO()
    image.save(out, "PNG")
    return serving.user_content(HttpResponse(out.getvalue(), content_type="image/png"))


@require_GET
def page_text(request: HttpRequest, pk: int, number: int) -> HttpResponse:
    page = get_object_or_404(Page.objects.select_related("job"), job_id=pk, number=number)
    if gone := _removed(page.job, retention.RESULT):
        return gone
    response = HttpResponse(page.text, content_type="text/plain; charset=utf-8")
    name = _download_name(page.job, f"-page{number}.txt")
    response["Content-Disposition"] = content_disposition_header(True, name)
    return serving.user_content(response)


def _open_stored(field):
    try:
        return field.open("rb")
    except (FileNotFoundError, ValueError):
        raise Http404("The stored file is missing from the server's storage.") from None


@require_GET
def job_original(request: HttpRequest, pk: int) -> FileResponse:
    """The file as uploaded, as an attachment of its detected type, under the user's name with
    the detected extension (a PNG sent as x.html downloads as x.png)."""
    job = get_object_or_404(Job, pk=pk)
    if gone := _removed(job, retention.ORIGINAL):
        return gone
    response = FileResponse(
        _open_stored(job.upload),
        as_attachment=True,
        filename=serving.download_name(job.original_name, job.image_format),
        content_type=serving.content_type(job.image_format),
    )
    return serving.user_content(response)


@require_GET
def job_thumbnail(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(Job.objects.only("thumbnail", "pruned"), pk=pk)
    if not job.thumbnail:
        return _removed(job, retention.THUMBNAIL) or HttpResponse(status=404)
    response = FileResponse(_open_stored(job.thumbnail), content_type="image/jpeg")
    response["Cache-Control"] = "private, max-age=86400"
    return serving.user_content(response)


def _download_name(job: Job, suffix: str) -> str:
    return f"{PurePath(job.original_name).stem or 'job'}-{job.pk}{suffix}"


@require_GET
def job_text(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(Job, pk=pk)
    if gone := _removed(job, retention.RESULT):
        return gone
    response = HttpResponse(job.text, content_type="text/plain; charset=utf-8")
    response["Content-Disposition"] = content_disposition_header(True, _download_name(job, ".txt"))
    return serving.user_content(response)


@require_GET
def job_result(request: HttpRequest, pk: int) -> HttpResponse:
    job = get_object_or_404(Job.objects.select_related("owner"), pk=pk)
    if gone := _removed(job, retention.RESULT):
        return gone
    body = result_document(job)  # the same document as the API's ?format=json
    response = HttpResponse(
        json.dumps(body, ensure_ascii=False, indent=2), content_type="application/json; charset=utf-8"
    )
    response["Content-Disposition"] = content_disposition_header(True, _download_name(job, ".json"))
    return serving.user_content(response)


@require_GET
def page_picture(request: HttpRequest, pk: int, number: int, index: int) -> HttpResponse:
    job = get_object_or_404(Job, pk=pk)
    if gone := _removed(job, retention.RESULT) or _removed(job, retention.PAGES):
        return gone
    png = pictures.picture_png(job, number, index)
    if png is None:
        raise Http404("This page has no picture with that index, or its page image is missing.")
    return serving.user_content(HttpResponse(png, content_type="image/png"))
