from django.core.management.base import BaseCommand

from dashboard import launcher


class Command(BaseCommand):
    help = "Start the whole dashboard: Redis (embedded if none is configured), web server and worker."

    def add_arguments(self, parser):
        parser.add_argument("--host", help="Address to listen on (default OCRDASH_HOST or 127.0.0.1).")
        parser.add_argument("--port", type=int, help="Port (default OCRDASH_PORT or 8000).")

    def handle(self, *args, host=None, port=None, **options):
        raise SystemExit(launcher.run(host=host, port=port))
