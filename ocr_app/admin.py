from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.html import format_html, format_html_join

from core import catalog
from core.dots import tasks
from core.events import BackendSettingsNotice
from core.gpu import gib
from core.planner import PlanRefused
from ocr_app import backendconfig, events, gpumanager, livestate
from ocr_app.models import BackendSettings, GpuAction, Job


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


class BackendSettingsForm(forms.ModelForm):
    """The model picked from the catalog (core/catalog.py) fills in its repository and pinned
    revision; "as typed" keeps the model field as written (another hub id or a local folder)."""

    catalog_model = forms.ChoiceField(
        label="Catalog model",
        required=False,
        choices=[("", "as typed below")] + [(m.name, f"{m.name} ({m.repo})") for m in catalog.MODELS],
        help_text="dots.ocr reads documents; dots.mocr adds web pages, scene text, SVG and questions; "
        "dots.mocr-svg draws SVG best. Fetch its weights first: python3 ocrdash.py manage fetch_model --model NAME.",
    )

    class Meta:
        model = BackendSettings
        fields = ("backend", "model", "revision", "vllm_url", "allow_vllm", "allow_fp8", "allow_cpu", "reserve_mib",
                  "reserve_percent", "max_pixels", "max_new_tokens")

    def clean(self):
        cleaned = super().clean()
        if "catalog_model" in self.fields and (name := cleaned.get("catalog_model")):
            entry = catalog.get(name)
            cleaned["model"] = entry.repo
            cleaned["revision"] = entry.revision or cleaned.get("revision") or ""
            self.instance.model, self.instance.revision = cleaned["model"], cleaned["revision"]
        return cleaned


@admin.register(BackendSettings)
class BackendSettingsAdmin(admin.ModelAdmin):
    """One row; the page shows the plan these settings give on the GPU as it is now."""

    form = BackendSettingsForm
    readonly_fields = ("current_plan", "model_tasks", "updated_at", "updated_by")
    fieldsets = (
        (None, {"fields": ("current_plan", "backend")}),
        ("Model", {"fields": ("catalog_model", "model", "revision", "model_tasks")}),
        ("vLLM", {"fields": ("allow_vllm", "vllm_url", "allow_fp8")}),
        ("Limits", {"fields": ("reserve_mib", "reserve_percent", "max_pixels", "max_new_tokens", "allow_cpu")}),
        ("Changed", {"fields": ("updated_at", "updated_by")}),
    )

    # Where the model's code and the pages go: a superuser's decision (the model runs its own code,
    # trust_remote_code, in the worker; the vLLM server receives every page).
    SUPERUSER_FIELDS = ("model", "revision", "vllm_url")

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_fieldsets(self, request, obj=None):
        if request.user.is_superuser:
            return self.fieldsets
        # The catalog choice sets the model: like the model field, a superuser's (shown read-only to staff).
        return tuple(
            (name, {**opts, "fields": tuple(f for f in opts["fields"] if f != "catalog_model")})
            for name, opts in self.fieldsets
        )

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        if not request.user.is_superuser:
            form.base_fields.pop("catalog_model", None)  # a new class per call: nothing shared is changed
        return form

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        if not request.user.is_superuser:
            fields += [f for f in self.SUPERUSER_FIELDS if f not in fields]
        return fields

    def changelist_view(self, request, extra_context=None):
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        obj = BackendSettings.load()
        return redirect("admin:ocr_app_backendsettings_change", obj.pk)

    @admin.display(description="What it can do")
    def model_tasks(self, obj):
        entry = catalog.for_setting(obj.model)
        return format_html("{}: {}", entry.name, ", ".join(tasks.get(t).label for t in entry.tasks))

    @admin.display(description="Plan on the GPU now")
    def current_plan(self, obj):
        sample = livestate_sample()
        try:
            plan = backendconfig.plan_now(obj, backendconfig.devices_from_sample(sample))
        except PlanRefused as refused:
            return format_html(
                '<strong class="errornote">Refused: {}</strong><ul>{}</ul>',
                refused.headline,
                format_html_join("", "<li>{}</li>", ((r,) for r in refused.reasons)),
            )
        return format_html(
            "<strong>{}</strong><ul>{}</ul><p>{}</p>",
            plan.summary,
            format_html_join("", "<li>{}</li>", ((r,) for r in plan.reasons)),
            "Measured by the GPU monitor just now." if sample else "No GPU sample yet (is the monitor running?).",
        )

    def save_model(self, request, obj, form, change):
        obj.updated_by = request.user.get_username()
        super().save_model(request, obj, form, change)
        notice: BackendSettingsNotice = {
            "worker": "",
            "state": "settings",
            "backend": obj.backend,
            "detail": f"{obj.updated_by} changed the backend settings ({obj.get_backend_display()}); "
            "they apply from the next job.",
            "progress": None,
            "memory_bytes": 0,
            "plan": None,
        }
        events.publish_backend_status(notice)
        messages.info(request, "Saved. The running job finishes as it is; the next job uses these settings.")


def livestate_sample():
    try:
        return livestate.latest_gpu_sample()
    except Exception:
        return None


@admin.register(GpuAction)
class GpuActionAdmin(admin.ModelAdmin):
    """The log of the GPU memory manager, and the "Free GPU memory" page."""

    list_display = ("created_at", "username", "via", "action", "target", "freed", "ok")
    list_filter = ("action", "via", "ok")
    readonly_fields = [f.name for f in GpuAction._meta.fields]
    change_list_template = "admin/ocr_app/gpuaction/change_list.html"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="freed")
    def freed(self, obj):
        return gib(obj.freed_bytes)

    def get_urls(self):
        return [
            path("free/", self.admin_site.admin_view(self.free_view), name="ocr_app_gpu_free"),
            path("stop/", self.admin_site.admin_view(self.stop_view), name="ocr_app_gpu_stop"),
            *super().get_urls(),
        ]

    def free_view(self, request):
        snapshot = gpumanager.labelled_snapshot()
        if request.method == "POST":
            try:
                action = gpumanager.free(request.user, "web")
            except gpumanager.NotAllowed as exc:
                raise PermissionDenied(str(exc)) from None
            level = messages.SUCCESS if action.ok else messages.WARNING
            messages.add_message(request, level, f"Freed {gib(action.freed_bytes)} of GPU memory.")
            return redirect("admin:ocr_app_gpuaction_change", action.pk)
        try:
            workers = livestate.live_workers()
        except Exception:
            workers = {}
        steps = gpumanager.free_plan(snapshot, workers)
        expected = sum(s.expected_bytes or 0 for s in steps)
        others = sorted(
            {(p.container, p.used_bytes or 0) for d in snapshot.devices for p in d.processes
             if p.container and p.role is None}
        )
        context = {
            **self.admin_site.each_context(request),
            "title": "Free GPU memory",
            "snapshot": snapshot,
            "steps": steps,
            "expected": gib(expected) if expected else None,
            "others": [(name, gib(used)) for name, used in others],
            "can_stop_others": request.user.is_superuser,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/ocr_app/gpu_free_confirm.html", context)

    def stop_view(self, request):
        if request.method != "POST":
            return redirect("admin:ocr_app_gpu_free")
        name = request.POST.get("container", "").strip()
        try:
            action = gpumanager.stop_container(request.user, name, "web")
        except gpumanager.NotAllowed as exc:
            raise PermissionDenied(str(exc)) from None
        except ValueError as exc:
            messages.error(request, str(exc))
            return redirect("admin:ocr_app_gpu_free")
        messages.add_message(
            request,
            messages.SUCCESS if action.ok else messages.ERROR,
            f"{action.steps[0]['what']}: {action.steps[0]['outcome']}; freed {gib(action.freed_bytes)}.",
        )
        return redirect("admin:ocr_app_gpuaction_change", action.pk)


from ocr_app.api import admin as _api_admin  # noqa: E402,F401  (the API token admin lives with the API)
