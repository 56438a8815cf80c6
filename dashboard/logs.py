"""Log lines with context: one JSON object per line when OCRDASH_LOG_FORMAT=json.

Every process (web, worker, GPU monitor, manage.py commands) logs through settings.LOGGING:
one console handler whose `ContextFilter` puts the context of the moment on each record, and
whose formatter is plain text or `JsonFormatter`.

The context is a contextvar, so it follows the code that set it and nothing else:

    with log_context(job_id=job.pk):
        log.info("reading page")   # {"message": "reading page", "job_id": 12, ...}

The Celery worker binds `job_id` for the whole of each `workers.tasks.run_job` on its own
(`bind_task_context`, connected to Celery's task_prerun / task_postrun in dashboard/celery.py),
so every line the job's code logs carries it without that code knowing. A value given with
`extra={"job_id": ...}` in one call wins over the context.

A JSON line:

    {"ts": "2026-01-05T10:11:12.345Z", "level": "INFO", "logger": "workers.tasks",
     "message": "unloading transformers: idle for 600 s", "process": 812,
     "job_id": 12, "task_id": "4f0c…", "task": "workers.tasks.run_job"}

plus "exc" (the traceback) when there is one, and any other `extra` fields.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from core.queues import RUN_JOB_TASK

# Holds a mapping that is replaced, never changed in place (set() a new one), so one default is safe.
_EMPTY: dict[str, Any] = {}
_CONTEXT: contextvars.ContextVar[dict[str, Any]] = contextvars.ContextVar("ocrdash_log_context")

# Tasks whose first argument is a job id.
JOB_TASKS = frozenset({RUN_JOB_TASK})

# Attributes every LogRecord has; anything else on a record came from `extra` or a filter.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def current_context() -> dict[str, Any]:
    return dict(_CONTEXT.get(_EMPTY))


@contextlib.contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add `fields` (e.g. job_id=12) to every record logged inside the block."""
    token = _CONTEXT.set({**_CONTEXT.get(_EMPTY), **fields})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def bind(**fields: Any) -> contextvars.Token:
    """Like log_context, for code that cannot wrap a block: pass the token to `unbind`."""
    return _CONTEXT.set({**_CONTEXT.get(_EMPTY), **fields})


def unbind(token: contextvars.Token) -> None:
    _CONTEXT.reset(token)


# -- Celery ----------------------------------------------------------------------------------------

_TASK_TOKENS: dict[str, contextvars.Token] = {}


def job_id_of(task_name: str, args: Any, kwargs: Any) -> Any:
    if kwargs and "job_id" in kwargs:
        return kwargs["job_id"]
    if task_name in JOB_TASKS and args:
        return args[0]
    return None


def bind_task_context(task_id: str | None = None, task: Any = None, args: Any = None, kwargs: Any = None, **_):
    """Celery task_prerun receiver: job_id for the task's whole run."""
    job_id = job_id_of(getattr(task, "name", ""), args, kwargs)
    if job_id is not None and task_id:
        _TASK_TOKENS[task_id] = bind(job_id=job_id)


def unbind_task_context(task_id: str | None = None, **_):
    """Celery task_postrun receiver."""
    token = _TASK_TOKENS.pop(task_id or "", None)
    if token is not None:
        try:
            unbind(token)
        except ValueError:  # set in another context (should not happen): drop it instead
            _CONTEXT.set({})


def _celery_task() -> tuple[str, str] | None:
    try:
        from celery import current_task
    except ImportError:
        return None
    task = current_task._get_current_object() if current_task else None
    request = getattr(task, "request", None)
    task_id = getattr(request, "id", None)
    if not task_id:
        return None
    return str(task_id), str(getattr(task, "name", ""))


# -- logging ---------------------------------------------------------------------------------------


class ContextFilter(logging.Filter):
    """Puts the log context (job_id, ...) on each record, without overriding `extra`."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _CONTEXT.get(_EMPTY).items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line. Values JSON cannot hold are written as their str()."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
            "process": record.process,
        }
        task = _celery_task()
        if task:
            data["task_id"], data["task"] = task
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_") and key not in data:
                data[key] = value
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            data["exc"] = record.exc_text
        if record.stack_info:
            data["stack"] = self.formatStack(record.stack_info)
        return json.dumps(data, default=str, ensure_ascii=False)
