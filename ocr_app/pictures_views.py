"""One Picture element of a page, cropped from the page image, for the job page's rendered view."""

from __future__ import annotations

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_GET

from ocr_app import pictures, serving
from ocr_app.models import Job


@require_GET
def page_picture(request: HttpRequest, pk: int, number: int, index: int) -> HttpResponse:
    job = get_object_or_404(Job, pk=pk)
    png = pictures.picture_png(job, number, index)
    if png is None:
        raise Http404("This page has no picture with that index, or its page image is missing.")
    return serving.user_content(HttpResponse(png, content_type="image/png"))
