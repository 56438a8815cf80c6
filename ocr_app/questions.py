"""Asking a question about a job's page: a question job on that page's image.

The job page's "Ask about this image" form and POST /api/v1/jobs/{id}/question both come here. The
new job reads the image the job page shows (an image job's own image, or a document's page as the
worker rendered it, so a document's page must have been read first), asks the question with
upstream's general-question system prompt (core/dots/prompts.py) and belongs to whoever asked; the
source job is left as it is. Only a model trained for questions can answer (core/catalog.py): the
others are refused with a message naming the models that can.
"""

from __future__ import annotations

from django.conf import settings

from core.dots.prompts import QUESTION
from ocr_app import taskchoice
from ocr_app.delivery import require_broker
from ocr_app.models import Job, Page
from ocr_app.queueing import create_job
from ocr_app.regions import RegionError, page_file
from ocr_app.validation import UploadRefused, check_upload


class QuestionError(ValueError):
    """The question or the page cannot be asked about; the message says why."""


def create_question_job(source: Job, number: int, question, owner) -> Job:
    """A queued (or, with the same file, question and settings as an earlier one, reused) question job.
    Raises QuestionError, delivery.BrokerUnavailable or files.DiskFull."""
    text = question.strip() if isinstance(question, str) else ""
    if why := taskchoice.problem(QUESTION, text):
        raise QuestionError(why)
    if source.is_document:
        # A page rendered ahead has an image before it is read; the question waits for the reading.
        row = source.pages.filter(number=number).first()
        if row is not None and row.state in (Page.PENDING, Page.RUNNING):
            raise QuestionError(f"Page {number} has not been read yet: ask once the worker has read it.")
    try:
        name, data = page_file(source, number)
    except RegionError as exc:
        raise QuestionError(str(exc)) from None
    try:
        checked = check_upload(name, data, settings.MAX_UPLOAD_BYTES, settings.MAX_IMAGE_PIXELS, settings.MAX_PDF_PAGES)
    except UploadRefused as exc:
        raise QuestionError(f"The page image cannot be read again: {exc}") from None
    require_broker()
    try:
        return create_job(owner, name, data, checked, source.language, mode=QUESTION, question=text)
    except UploadRefused as exc:
        raise QuestionError(f"The page image cannot be read again: {exc}") from None
