"""The worker's tasks keep the names their queued messages already carry in Redis: a message sent
before an update must still find its task after it."""

from __future__ import annotations

from dashboard.celery import app

STABLE_NAMES = {"workers.tasks.run_job", "workers.tasks.unload_backend"}


def test_the_worker_registers_its_tasks_under_their_stable_names():
    import workers.tasks  # noqa: F401  (registers the tasks, as the worker's autodiscovery does)

    assert STABLE_NAMES <= set(app.tasks)


def test_the_task_routes_still_match_them():
    from django.conf import settings

    routes = settings.CELERY_TASK_ROUTES
    assert all(any(name.startswith(pattern.rstrip("*")) for pattern in routes) for name in STABLE_NAMES)
