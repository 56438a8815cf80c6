"""Account changes that must reach open websockets at once (ocr_app.consumers)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver

from ocr_app import events


@receiver(user_logged_out)
def logged_out(sender, request=None, user=None, **kwargs):
    if user is not None:
        transaction.on_commit(lambda: events.publish_session_check(user.pk))


def account_saved(sender, instance, created=False, update_fields=None, **kwargs):
    # A new password, a deactivation: not a login's own last_login stamp, not a new account.
    if created or (update_fields is not None and set(update_fields) <= {"last_login"}):
        return
    transaction.on_commit(lambda: events.publish_session_check(instance.pk))


def connect() -> None:
    post_save.connect(account_saved, sender=get_user_model(), dispatch_uid="ocrdash-account-saved")
