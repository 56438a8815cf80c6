"""Which tasks an upload may ask for: those the model the backend settings choose was trained for
(core/catalog.py, core/dots/tasks.py). The upload page offers only those; the page's form and the
API refuse the others with a message naming the models that can run them."""

from __future__ import annotations

from core import catalog
from core.dots import prompts, tasks
from ocr_app.models import BackendSettings


def configured_model() -> catalog.CatalogModel:
    return catalog.for_setting(BackendSettings.load().model)


def offered() -> list[tasks.Task]:
    return tasks.offered_by(configured_model().name)


def problem(mode: str, question: str = "") -> str | None:
    """Why an upload with task `mode` (and `question`) cannot be queued, or None."""
    if mode not in tasks.CODES or not tasks.get(mode).uploadable:
        known = ", ".join(t.code for t in tasks.uploadable())
        return f"Unknown task {mode!r}; an upload can ask for {known}."
    if why := tasks.refusal(mode, configured_model().name):
        return why
    question = question.strip()
    if mode == prompts.QUESTION and not question:
        return "The task 'question' needs the question to ask (the field `question`)."
    if mode != prompts.QUESTION and question:
        return f"A question is asked with the task 'question', not '{mode}'."
    if len(question) > prompts.MAX_QUESTION_CHARS:
        return f"The question is {len(question):,} characters long; the limit is {prompts.MAX_QUESTION_CHARS:,}."
    return None
