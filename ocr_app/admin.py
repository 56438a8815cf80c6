from django.contrib import admin

from ocr_app.models import Job


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = (
        "id", "original_name", "owner", "state", "backend", "language", "created_at", "finished_at"
    )
    list_filter = ("state", "backend", "language")
    search_fields = ("original_name", "owner__username")
    list_select_related = ("owner",)
    date_hierarchy = "created_at"
    show_full_result_count = False  # a COUNT(*) over every job on each admin page is wasted
    readonly_fields = [f.name for f in Job._meta.fields]

    def has_add_permission(self, request):
        return False  # jobs come from uploads, not from a form
