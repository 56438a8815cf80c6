"""API tokens and idempotency keys in the admin: staff see every user's tokens and can revoke them.
Tokens are made on the profile page only, where the key is shown once."""

from django.contrib import admin, messages
from django.utils import timezone

from ocr_app.models import ApiToken, IdempotencyKey


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("name", "user", "key_start", "created_at", "expires_at", "last_used_at", "last_used_from",
                    "revoked_at")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter),)
    search_fields = ("name", "user__username", "key_start")
    list_select_related = ("user",)
    readonly_fields = ("user", "name", "key_start", "key_hash", "created_at", "expires_at", "last_used_at",
                       "last_used_from", "revoked_at")
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False  # made on the profile page, which shows the key once

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request, queryset):
        count = queryset.filter(revoked_at=None).update(revoked_at=timezone.now())
        messages.success(request, f"Revoked {count} token(s).")


@admin.register(IdempotencyKey)
class IdempotencyKeyAdmin(admin.ModelAdmin):
    list_display = ("key", "user", "created_at", "status_code", "job_ids")
    search_fields = ("key", "user__username")
    readonly_fields = ("user", "key", "request_hash", "created_at", "status_code", "job_ids", "refused")

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
