from django.core.management.base import BaseCommand

from ocr_app import delivery


class Command(BaseCommand):
    help = "Send queued jobs to the worker again when the broker lost them (e.g. a fresh Redis)."

    def handle(self, *args, **options):
        # At start no worker runs yet: a job whose task Redis does not hold is sent at once.
        sent = delivery.resend_lost(older_than=0)
        if sent:
            self.stdout.write(f"Sent {sent} waiting job(s) to the worker again.")
