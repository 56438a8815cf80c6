import redis
from django.conf import settings
from django.core.management.base import BaseCommand

from ocr_app.models import queued_jobs_in_order
from ocr_app.queueing import TASK_NAME


class Command(BaseCommand):
    help = "Send queued jobs to the worker again when the broker lost them (e.g. a fresh Redis)."

    def handle(self, *args, **options):
        from dashboard.celery import app

        client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
        pending = client.llen("gpu") + client.hlen("unacked")
        waiting = list(queued_jobs_in_order().values_list("pk", flat=True))
        if pending or not waiting:
            return
        for job_id in waiting:
            app.send_task(TASK_NAME, args=[job_id], queue="gpu")
        self.stdout.write(f"Sent {len(waiting)} waiting job(s) to the worker again.")
