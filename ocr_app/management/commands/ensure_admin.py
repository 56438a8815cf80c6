import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from dashboard.private_files import write_private_file


def generated_password(user) -> str:
    """A random password that the password validators accept (a random one fails them only by
    bad luck, e.g. all digits)."""
    while True:
        password = secrets.token_urlsafe(12)
        try:
            validate_password(password, user)
        except ValidationError:
            continue
        return password


class Command(BaseCommand):
    help = "Create the first admin account if there is none, and print how to log in."

    def handle(self, *args, **options):
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            return
        username = settings.ADMIN_USERNAME
        user = User(username=username, email="", is_staff=True, is_superuser=True)
        if settings.ADMIN_PASSWORD:
            try:
                validate_password(settings.ADMIN_PASSWORD, user)
            except ValidationError as exc:
                raise CommandError(
                    "OCRDASH_ADMIN_PASSWORD is too weak for the first admin account: " + " ".join(exc.messages)
                ) from None
            password = settings.ADMIN_PASSWORD
        else:
            password = generated_password(user)
        user.set_password(password)
        user.save()
        note = settings.DATA_DIR / "initial-admin-password.txt"
        write_private_file(note, f"user: {username}\npassword: {password}\n")
        url = f"http://{settings.BIND_HOST}:{settings.BIND_PORT}/"
        self.stdout.write(
            self.style.SUCCESS(
                "\n  First start: created the admin account.\n"
                f"  Log in at {url} as  {username}  with password  {password}\n"
                f"  (also saved in {note}; change it under Admin → Users)\n"
            )
        )
