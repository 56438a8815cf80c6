import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the first admin account if there is none, and print how to log in."

    def handle(self, *args, **options):
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            return
        username = settings.ADMIN_USERNAME
        password = settings.ADMIN_PASSWORD or secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email="", password=password)
        note = settings.DATA_DIR / "initial-admin-password.txt"
        note.write_text(f"user: {username}\npassword: {password}\n")
        note.chmod(0o600)
        url = f"http://{settings.BIND_HOST}:{settings.BIND_PORT}/"
        self.stdout.write(
            self.style.SUCCESS(
                "\n  First start: created the admin account.\n"
                f"  Log in at {url} as  {username}  with password  {password}\n"
                f"  (also saved in {note}; change it under Admin → Users)\n"
            )
        )
