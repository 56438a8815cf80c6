"""The Celery app. Jobs go to the queue "gpu", served by one worker with concurrency 1."""

import os

from celery import Celery
from celery.signals import setup_logging, task_postrun, task_prerun

from dashboard import logs

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "dashboard.settings")

app = Celery("ocrdash")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["workers"])


@setup_logging.connect
def use_django_logging(**kwargs) -> None:
    """The worker logs through settings.LOGGING like every other process (plain or JSON lines,
    OCRDASH_LOG_LEVEL), instead of Celery replacing the root logger's handlers."""
    import logging.config

    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)
    # Python's warnings (e.g. Celery's about running as root) as log lines too, in JSON mode.
    logging.captureWarnings(settings.LOG_FORMAT == "json")


# Every line logged while a job runs carries its job_id (dashboard/logs.py).
task_prerun.connect(logs.bind_task_context, weak=False)
task_postrun.connect(logs.unbind_task_context, weak=False)
