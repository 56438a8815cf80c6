"""The job page's layout view: one page's elements (boxes in the page image's pixels) and its
rendered HTML, and reading a region drawn on that page."""

from __future__ import annotations

import json

from django.http import HttpRequest, JsonResponse
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from core import jobstate
from core.dots import render
from core.dots.parse import ParsedPage
from ocr_app import documents, regions
from ocr_app.delivery import BrokerUnavailable
from ocr_app.files import DiskFull
from ocr_app.models import Job


def _page_read(job: Job, number: int) -> ParsedPage | None:
    """The page as it was parsed, or None while it has no result."""
    if job.page_count <= 1 and job.state != jobstate.SUCCEEDED:
        return None
    return documents.parsed_page_number(job, number)


def page_document(job: Job, number: int) -> dict:
    row = job.pages.filter(number=number).first()
    page = _page_read(job, number)
    if page is not None and page.original_size:
        size = page.original_size
    elif row is not None and row.width and row.height:
        size = (row.width, row.height)
    else:
        size = ((job.result or {}).get("image_size") or (job.width, job.height))

    def picture(_page_number, element):
        return reverse("page-picture", args=[job.pk, number, element.index])

    body = {
        "job": job.pk,
        "page": number,
        "pages": job.page_count,
        "state": row.state if row is not None else job.state,
        "image_url": reverse("page-image", args=[job.pk, number]),
        "width": int(size[0]),
        "height": int(size[1]),
        "mode": job.mode,
        "elements": [],
        "html": "",
        "text": "",
        "warnings": [],
    }
    if page is not None:
        body.update(
            elements=[e.to_dict() for e in page.elements],
            html=render.page_html(page, pictures=picture, page_number=number),
            text=page.text,
            warnings=list(page.warnings),
        )
    return body


@require_GET
def page_layout(request: HttpRequest, pk: int, number: int) -> JsonResponse:
    job = get_object_or_404(Job, pk=pk)
    if not 1 <= number <= max(job.page_count, 1):
        return JsonResponse({"error": f"Page {number} does not exist."}, status=404)
    return JsonResponse(page_document(job, number))


@require_POST
def read_region(request: HttpRequest, pk: int) -> JsonResponse:
    """Body (JSON or form): page, bbox = [x1, y1, x2, y2] in the page image's pixels."""
    source = get_object_or_404(Job, pk=pk)
    if request.content_type == "application/json":
        try:
            data = json.loads(request.body or b"{}")
        except (json.JSONDecodeError, UnicodeDecodeError):
            return JsonResponse({"error": "The body is not valid JSON."}, status=400)
        if not isinstance(data, dict):
            return JsonResponse({"error": "Send an object: {\"page\": 1, \"bbox\": [x1, y1, x2, y2]}."}, status=400)
    else:
        data = request.POST
    try:
        number = int(data.get("page", 1))
    except (TypeError, ValueError):
        return JsonResponse({"error": "page must be a page number."}, status=400)
    try:
        job = regions.create_region_job(source, number, data.get("bbox"), request.user)
    except regions.RegionError as exc:
        return JsonResponse({"error": str(exc)}, status=400)
    except BrokerUnavailable as exc:
        return JsonResponse({"error": str(exc)}, status=503, headers={"Retry-After": str(exc.retry_after)})
    except DiskFull as exc:
        return JsonResponse({"error": str(exc)}, status=507)
    return JsonResponse(
        {
            "id": job.pk,
            "state": job.state,
            "region": job.region,
            "reused": bool(job.reused_from_id),
            "url": reverse("job-detail", args=[job.pk]),
            "text_url": reverse("job-text", args=[job.pk]),
            "text": job.text if job.state == jobstate.SUCCEEDED else None,
        },
        status=201,
    )
