"""A job's result as `txt` (the recognized text), `md` and `html` (rendered by the dots.ocr
renderer: text escaped, tables sanitized), and `json` (everything: text, lines with boxes and
scores, file facts, timings, GPU memory — the same document as the job page's download).
A format is added by adding an entry to FORMATS.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import PurePath

from django.http import HttpResponse
from django.utils.http import content_disposition_header

from ocr_app import documents
from ocr_app.events import job_payload
from ocr_app.models import Job
from workers.dots import render


def download_name(job: Job, suffix: str) -> str:
    return f"{PurePath(job.original_name).stem or 'job'}-{job.pk}{suffix}"


def result_document(job: Job) -> dict:
    return {
        "job": job_payload(job),
        "file": {
            "name": job.original_name,
            "format": job.image_format,
            "width": job.width,
            "height": job.height,
            "sha256": job.sha256,
            "size_bytes": job.size_bytes,
        },
        "created_at": job.created_at.isoformat(),
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "gpu": {"peak_bytes": job.peak_gpu_bytes, "free_at_start_bytes": job.gpu_free_at_start_bytes},
        "text": job.text,
        "result": job.result,
    }


def as_txt(job: Job) -> HttpResponse:
    response = HttpResponse(job.text, content_type="text/plain; charset=utf-8")
    response["Content-Disposition"] = content_disposition_header(False, download_name(job, ".txt"))
    return response


def as_json(job: Job) -> HttpResponse:
    body = json.dumps(result_document(job), ensure_ascii=False, indent=2)
    response = HttpResponse(body, content_type="application/json")
    response["Content-Disposition"] = content_disposition_header(False, download_name(job, ".json"))
    return response


def as_markdown(job: Job) -> HttpResponse:
    response = HttpResponse(render.to_markdown(documents.parsed_page(job)), content_type="text/markdown; charset=utf-8")
    response["Content-Disposition"] = content_disposition_header(False, download_name(job, ".md"))
    return response


def as_html(job: Job) -> HttpResponse:
    body = render.to_html(documents.parsed_page(job), title=job.original_name)
    response = HttpResponse(body, content_type="text/html; charset=utf-8")
    response["Content-Disposition"] = content_disposition_header(False, download_name(job, ".html"))
    return response


FORMATS: dict[str, Callable[[Job], HttpResponse]] = {"txt": as_txt, "md": as_markdown, "html": as_html, "json": as_json}
DEFAULT_FORMAT = "json"
