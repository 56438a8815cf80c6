import redis
from django.conf import settings
from django.core.management.base import BaseCommand

from ocr_app.models import queued_jobs_in_order
from ocr_app.queueing import send_to_worker
from workers.queues import GPU_QUEUE


class Command(BaseCommand):
    help = "Send queued jobs to the worker again when the broker lost them (e.g. a fresh Redis)."

    def handle(self, *args, **options):
        client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
        pending = client.llen(GPU_QUEUE) + client.hlen("unacked")
        waiting = list(queued_jobs_in_order().select_related("owner"))
        if pending or not waiting:
            return
        for job in waiting:
            send_to_worker(job, announce=False)
        self.stdout.write(f"Sent {len(waiting)} waiting job(s) to the worker again.")
