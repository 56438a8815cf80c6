"""What the API sends and accepts. Output serializers are read-only and exist so that the OpenAPI
document describes every answer exactly (schemathesis checks each answer against it)."""

from __future__ import annotations

from django.conf import settings
from django.urls import reverse
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from core import backends, jobstate, languages, textlayer
from core.dots import tasks
from core.dots.prompts import MAX_QUESTION_CHARS, MODES
from ocr_app.models import BackendSettings, Job

KNOWN_BACKENDS = list(backends.names())
# Task modes an upload can ask for; grounding (the text of one region) needs a box.
AVAILABLE_MODES = [t.code for t in tasks.uploadable()]


def language_codes() -> list[str]:
    return [lang.code for lang in languages.all_languages()]


class ErrorSerializer(serializers.Serializer):
    error = serializers.CharField(help_text="A sentence that names the problem.")
    code = serializers.CharField(help_text="A short machine-readable code, e.g. `invalid`, `not_found`.")
    field_errors = serializers.DictField(
        child=serializers.ListField(child=serializers.CharField()),
        required=False,
        help_text="Validation errors by parameter name.",
    )
    available = serializers.ListField(child=serializers.CharField(), required=False)
    state = serializers.CharField(required=False)
    refused = serializers.ListField(child=serializers.DictField(), required=False)


class FileSerializer(serializers.Serializer):
    name = serializers.CharField(source="original_name")
    format = serializers.CharField(source="image_format")
    width = serializers.IntegerField()
    height = serializers.IntegerField()
    size_bytes = serializers.IntegerField()
    sha256 = serializers.CharField()


class JobUrlsSerializer(serializers.Serializer):
    """Absolute addresses of what a script does next with the job."""

    self = serializers.SerializerMethodField()
    page = serializers.SerializerMethodField(help_text="The job's page in the dashboard.")
    result = serializers.SerializerMethodField(help_text="Add `?format=txt` or `?format=json`.")
    wait = serializers.SerializerMethodField()
    cancel = serializers.SerializerMethodField()
    retry = serializers.SerializerMethodField()
    original = serializers.SerializerMethodField(help_text="The uploaded file.")

    def _url(self, name: str, job: Job) -> str:
        path = reverse(name, args=[job.pk])
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path

    def get_self(self, job) -> str:
        return self._url("api-job", job)

    def get_page(self, job) -> str:
        return self._url("job-detail", job)

    def get_result(self, job) -> str:
        return self._url("api-job-result", job)

    def get_wait(self, job) -> str:
        return self._url("api-job-wait", job)

    def get_cancel(self, job) -> str:
        return self._url("api-job-cancel", job)

    def get_retry(self, job) -> str:
        return self._url("api-job-retry", job)

    def get_original(self, job) -> str:
        return self._url("job-original", job)


class PrunedSerializer(serializers.Serializer):
    original = serializers.DateTimeField(required=False, help_text="The uploaded file was removed.")
    pages = serializers.DateTimeField(required=False, help_text="The rendered page images were removed.")
    thumbnail = serializers.DateTimeField(required=False, help_text="The thumbnail was removed.")
    result = serializers.DateTimeField(required=False, help_text="The recognized text and layout were removed.")

    def to_representation(self, instance):
        return {part: stamp for part, stamp in (instance or {}).items() if part in self.fields}


class JobSerializer(serializers.Serializer):
    """A job as lists show it. `queue_position` comes from the context (one query for a whole page)."""

    id = serializers.IntegerField(source="pk")
    name = serializers.CharField(source="original_name")
    state = serializers.ChoiceField(choices=jobstate.STATES)
    ended = serializers.BooleanField()
    progress = serializers.FloatField(help_text="0 to 1.")
    message = serializers.CharField(help_text="What the owner should know, e.g. why it failed.")
    owner = serializers.CharField(source="owner.get_username")
    backend = serializers.CharField(help_text="The backend asked for while queued (empty: the server's choice), "
                                    "then the one that ran it.")
    language = serializers.CharField(help_text="Recognition language of the CPU engine (rapidocr).")
    mode = serializers.ChoiceField(choices=MODES, help_text="The task the job runs (see POST /api/v1/jobs).")
    region = serializers.ListField(
        child=serializers.IntegerField(), min_length=4, max_length=4, allow_null=True,
        help_text="grounding: the region read, [x1, y1, x2, y2] in the image's pixels; null otherwise.",
    )
    question = serializers.CharField(help_text="question: what was asked about the image; empty otherwise.")
    pages = serializers.IntegerField(source="page_count", help_text="Pages to read: 1 for an image; a PDF's "
                                     "pages or a multi-page TIFF's frames.")
    text_layer = serializers.ChoiceField(choices=textlayer.CHOICES, help_text="How a PDF's own text is used "
                                         "(see POST /api/v1/jobs).")
    page = serializers.SerializerMethodField(help_text="The page being read now (1-based); null unless running.")
    reused_from = serializers.IntegerField(source="reused_from_id", allow_null=True,
                                           help_text="The job whose result this one reused instead of running.")
    queue_position = serializers.SerializerMethodField(help_text="1 = next to run; null unless queued.")
    text_preview = serializers.CharField()
    file = FileSerializer(source="*")
    created_at = serializers.DateTimeField()
    queued_at = serializers.DateTimeField(allow_null=True, help_text="When it last joined the queue.")
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    waited_seconds = serializers.FloatField(allow_null=True)
    ran_seconds = serializers.FloatField(allow_null=True)
    retries = serializers.IntegerField(
        help_text="Times the job was queued again because the worker process reading it died (killed, out of "
        "memory, machine stopped); see `last_fault`."
    )
    last_fault = serializers.CharField(help_text="What happened to the worker process the last time; empty if nothing.")
    pruned = PrunedSerializer(
        help_text="What the retention settings removed from this ended job, and when (absent keys: kept)."
    )
    urls = JobUrlsSerializer(source="*")

    @extend_schema_field(serializers.IntegerField(allow_null=True, min_value=1))
    def get_page(self, job) -> int | None:
        return job.current_page if job.state == jobstate.RUNNING else None

    @extend_schema_field(serializers.IntegerField(allow_null=True, min_value=1))
    def get_queue_position(self, job) -> int | None:
        if job.state != jobstate.QUEUED:
            return None
        positions = self.context.get("positions")
        if positions is not None and job.pk in positions:
            return positions[job.pk]
        return job.queue_position()


class JobPageSerializer(serializers.Serializer):
    next = serializers.URLField(allow_null=True, help_text="The next (older) page; null on the last page.")
    previous = serializers.URLField(allow_null=True, help_text="The previous (newer) page; null on the first.")
    results = JobSerializer(many=True)


class EtaSerializer(serializers.Serializer):
    seconds = serializers.FloatField(allow_null=True, help_text="Seconds until the job is expected to end.")
    at = serializers.DateTimeField(allow_null=True)
    basis = serializers.CharField(help_text="How the estimate was worked out, in words.")


class GpuMemorySerializer(serializers.Serializer):
    peak_bytes = serializers.IntegerField(source="peak_gpu_bytes", allow_null=True,
                                          help_text="The most GPU memory ocrdash held while the job ran.")
    free_at_start_bytes = serializers.IntegerField(source="gpu_free_at_start_bytes", allow_null=True,
                                                   help_text="Free GPU memory when the job started.")


class OriginSerializer(serializers.Serializer):
    via = serializers.ChoiceField(choices=["api", "openai"])
    mode = serializers.CharField(help_text="The task mode the request asked for (from a chat completion's prompt).")


class PermissionsSerializer(serializers.Serializer):
    cancel = serializers.BooleanField(help_text="You may cancel it (your job, or you are staff) and it has not ended.")
    retry = serializers.BooleanField(help_text="You may queue it again (your job, or you are staff) and it has ended.")


class JobDetailSerializer(JobSerializer):
    worker = serializers.CharField(help_text="The worker that ran it.")
    plan = serializers.JSONField(allow_null=True, help_text="The plan the worker chose: backend, launch "
                                 "parameters and the reasons in sentences.")
    gpu = GpuMemorySerializer(source="*")
    eta = serializers.SerializerMethodField()
    origin = serializers.SerializerMethodField()
    permissions = serializers.SerializerMethodField()
    text_layer_pages = serializers.SerializerMethodField(
        help_text="The pages read from the PDF's own text layer (no OCR), 1-based."
    )

    @extend_schema_field(serializers.ListField(child=serializers.IntegerField(min_value=1)))
    def get_text_layer_pages(self, job) -> list[int]:
        return list(job.pages.filter(source=textlayer.TEXT_LAYER).order_by("number").values_list("number", flat=True))

    @extend_schema_field(EtaSerializer)
    def get_eta(self, job):
        estimator = self.context.get("estimator")
        if estimator is None:
            from ocr_app.api.eta import Estimator

            estimator = self.context["estimator"] = Estimator()
        return EtaSerializer(estimator.estimate(job, self.get_queue_position(job))).data

    @extend_schema_field(OriginSerializer(allow_null=True))
    def get_origin(self, job):
        try:
            origin = job.origin
        except Job.origin.RelatedObjectDoesNotExist:
            return None
        return {"via": origin.via, "mode": origin.mode}

    @extend_schema_field(PermissionsSerializer)
    def get_permissions(self, job):
        from ocr_app.jobactions import may_change

        request = self.context.get("request")
        allowed = request is not None and may_change(request.user, job)
        return {"cancel": allowed and not job.ended, "retry": allowed and job.ended}


class JobListFilterSerializer(serializers.Serializer):
    state = serializers.ChoiceField(choices=jobstate.STATES, required=False, allow_blank=True)
    backend = serializers.ChoiceField(choices=KNOWN_BACKENDS, required=False, allow_blank=True,
                                      help_text="The backend that ran the job (or was asked for, while queued).")
    owner = serializers.CharField(required=False, allow_blank=True, max_length=150, help_text="A user name.")
    q = serializers.CharField(
        required=False,
        allow_blank=True,
        max_length=200,
        help_text="Text searched in file names and in recognized text (case-insensitive).",
    )
    created_after = serializers.DateTimeField(required=False, input_formats=["iso-8601", "%Y-%m-%d"],
                                              help_text="ISO 8601 date or date and time; jobs created at or after it.")
    created_before = serializers.DateTimeField(required=False, input_formats=["iso-8601", "%Y-%m-%d"],
                                               help_text="ISO 8601 date or date and time; jobs created before it.")

    def validate(self, data):
        after, before = data.get("created_after"), data.get("created_before")
        if after and before and after >= before:
            raise serializers.ValidationError({"created_before": "must be later than created_after."})
        return data


class UploadOptionsSerializer(serializers.Serializer):
    """The form fields of POST /api/v1/jobs besides the files."""

    file = serializers.FileField(required=False, help_text="One image. Repeat the field, or use `files`, for more.")
    files = serializers.ListField(child=serializers.FileField(), required=False, help_text="One or more images.")
    language = serializers.ChoiceField(choices=(), required=False, help_text="Recognition language of the CPU "
                                       "engine (rapidocr); default: the server's OCRDASH_OCR_LANGUAGE.")
    backend = serializers.ChoiceField(
        choices=[backends.AUTO, *KNOWN_BACKENDS],
        required=False,
        help_text="The backend you would like. Checked against the known backends and recorded on the job; "
        "the worker still runs what the admin's backend settings plan for the GPU now.",
    )
    reuse = serializers.BooleanField(
        required=False, default=True,
        help_text="Reuse the result of a job that succeeded with the same file and settings (default); "
        "false runs it again.",
    )
    mode = serializers.ChoiceField(
        choices=AVAILABLE_MODES, required=False,
        help_text="The task: `layout_all` (default; boxes, categories and text), `layout_only` (boxes and "
        "categories), `text` (plain text); with dots.mocr `web_parsing`, `scene_spotting`, `question`, "
        "`image_to_svg` (core/dots/tasks.py). rapidocr gives its text lines as boxes for the layout tasks "
        "and as outlines for scene text.",
    )
    question = serializers.CharField(
        required=False, allow_blank=True, max_length=MAX_QUESTION_CHARS, trim_whitespace=True,
        help_text="The question to ask about the image (task `question` only).",
    )
    text_layer = serializers.ChoiceField(
        choices=textlayer.CHOICES, required=False,
        help_text="How a PDF page's own text (a born-digital PDF's text layer) is used: `auto` (pages with a "
        "usable text layer are read from it for `text`, OCR'd for the layout tasks), `ocr` (every page is "
        "OCR'd) or `text-layer` (read from it wherever a page has one). Default: the server's "
        "OCRDASH_PDF_TEXT_LAYER.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["language"].choices = language_codes()

    def validate_language(self, value: str) -> str:
        return value or settings.OCRDASH_OCR_LANGUAGE


class RegionRequestSerializer(serializers.Serializer):
    page = serializers.IntegerField(min_value=1, default=1, help_text="The page the box is on (1-based).")
    bbox = serializers.ListField(
        child=serializers.FloatField(), min_length=4, max_length=4,
        help_text="[x1, y1, x2, y2] in the pixels of the page image (GET /jobs/{id}/pages/{n}/image).",
    )


class QuestionRequestSerializer(serializers.Serializer):
    page = serializers.IntegerField(min_value=1, default=1, help_text="The page the question is about (1-based).")
    question = serializers.CharField(
        max_length=MAX_QUESTION_CHARS, allow_blank=True, trim_whitespace=True,
        help_text=f"What to ask about the page's image, at most {MAX_QUESTION_CHARS:,} characters.",
    )


class RefusedFileSerializer(serializers.Serializer):
    name = serializers.CharField()
    error = serializers.CharField(help_text="Why the file was refused, in a sentence.")
    code = serializers.ChoiceField(choices=["too_large", "refused"])


class JobsCreatedSerializer(serializers.Serializer):
    jobs = JobSerializer(many=True)
    refused = RefusedFileSerializer(many=True, help_text="Files of this upload that were not queued, and why.")


class WorkerSerializer(serializers.Serializer):
    hostname = serializers.CharField()
    state = serializers.CharField(help_text="unloaded, loading, ready or failed.")
    backend = serializers.CharField()
    detail = serializers.CharField()
    progress = serializers.FloatField(allow_null=True)
    memory_bytes = serializers.IntegerField(allow_null=True)
    plan = serializers.JSONField(allow_null=True)
    gpu_index = serializers.IntegerField(allow_null=True)
    seen_at = serializers.FloatField(allow_null=True, help_text="Unix seconds of the worker's last report.")


class BackendSettingsSerializer(serializers.ModelSerializer):
    class Meta:
        model = BackendSettings
        fields = [
            "backend", "model", "revision", "vllm_url", "allow_vllm", "allow_fp8", "allow_cpu", "reserve_mib",
            "reserve_percent", "max_pixels", "max_new_tokens", "updated_at", "updated_by",
        ]
        read_only_fields = fields


class PlanRefusalSerializer(serializers.Serializer):
    headline = serializers.CharField()
    reasons = serializers.ListField(child=serializers.CharField())


class BackendSerializer(serializers.Serializer):
    settings = BackendSettingsSerializer()
    plan = serializers.JSONField(allow_null=True, help_text="The plan these settings give on the GPU as the "
                                 "last sample saw it (what the admin page shows); null when refused.")
    plan_refused = PlanRefusalSerializer(allow_null=True)
    workers = WorkerSerializer(many=True)
    live_state_problem = serializers.CharField(help_text="Empty, or why the live state (Redis) could not be read.")


class GpuSampleSerializer(serializers.Serializer):
    sample = serializers.JSONField(allow_null=True, help_text="The GPU monitor's latest sample (the `gpu.sample` "
                                   "event: taken_at, driver_version, error, devices with memory and processes).")
    age_seconds = serializers.FloatField(allow_null=True)
    message = serializers.CharField(help_text="Empty, or why there is no sample.")
