from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.core.validators import URLValidator
from django.db import models
from django.urls import reverse
from django.utils import timezone

from core import backends, documents, jobstate, textlayer
from core.dots import prompts


def upload_path(job: Job, filename: str) -> str:
    # The stored name is ours; the user's name is kept in original_name only.
    return f"uploads/{timezone.now():%Y/%m}/{job.sha256[:16]}-{filename[-80:]}"


MODE_CHOICES = [
    (prompts.LAYOUT_ALL, "Full layout: boxes, categories and text"),
    (prompts.LAYOUT_ONLY, "Layout only: boxes and categories, no text"),
    (prompts.TEXT_ONLY, "Text only: the page's plain text"),
    (prompts.GROUNDING, "Text of one region"),
    (prompts.WEB_PARSING, "Web page: layout elements and text"),
    (prompts.SCENE_SPOTTING, "Scene text: outlines and text"),
    (prompts.IMAGE_TO_SVG, "Image to SVG"),
    (prompts.QUESTION, "A question about the image"),
]

TEXT_LAYER_CHOICES = [
    (textlayer.AUTO, "Auto: a PDF page's own text for the text task, OCR for layouts"),
    (textlayer.OCR, "OCR every page"),
    (textlayer.TEXT_LAYER, "A PDF page's own text wherever it has one"),
]


class Job(models.Model):
    STATE_CHOICES = [(s, s) for s in jobstate.STATES]

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="jobs")
    original_name = models.CharField(max_length=255)
    upload = models.FileField(upload_to=upload_path, max_length=300)
    thumbnail = models.FileField(upload_to="thumbs/%Y/%m", max_length=300, blank=True)
    image_format = models.CharField(max_length=10)
    size_bytes = models.PositiveBigIntegerField()
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64, db_index=True)

    state = models.CharField(max_length=12, choices=STATE_CHOICES, default=jobstate.QUEUED)
    # Backend asked for at upload ("" = the server's choice) and the one that ran it.
    backend = models.CharField(max_length=32, blank=True, default="")
    language = models.CharField(max_length=32, blank=True, default="")
    # The task: dots.ocr's prompt mode (core.dots.prompts.MODES). rapidocr reads it as the shape
    # of the result: line boxes as Text elements for the layout modes, plain text for `text`.
    mode = models.CharField(max_length=20, choices=MODE_CHOICES, default=prompts.LAYOUT_ALL)
    # The question asked (task `question` only; core.dots.prompts.MAX_QUESTION_CHARS).
    question = models.TextField(blank=True, default="")
    # grounding: the region to read, [x1, y1, x2, y2] in the pixels of the uploaded image.
    region = models.JSONField(null=True, blank=True)
    # Celery hostname of the worker that ran it, to recover jobs a dead worker left running.
    worker = models.CharField(max_length=200, blank=True, default="")
    # The worker process reading it now, and when its worker last said that process is alive
    # (ocr_app/recovery.py): a running job whose process is gone is queued again or failed.
    worker_pid = models.PositiveIntegerField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    # Times a worker started it. Each start is a new attempt, and the worker's writes name theirs,
    # so a process that was taken for dead cannot overwrite the attempt that replaced it.
    attempts = models.PositiveIntegerField(default=0)
    # Times it was queued again because the process reading it died (OCRDASH_JOB_RETRIES at most),
    # and what happened to that process.
    retries = models.PositiveIntegerField(default=0)
    last_fault = models.TextField(blank=True, default="")
    # What the retention settings removed, and when: {"original" | "pages" | "thumbnail" | "result": ISO time}.
    pruned = models.JSONField(default=dict, blank=True)
    progress = models.FloatField(default=0.0)
    message = models.TextField(blank=True, default="", help_text="What the user should know, e.g. why it failed.")
    # What decides the result: the file's hash, the backend settings, task, model, revision, image
    # cap and (for rapidocr) language. An upload with the key of a succeeded job reuses its result.
    cache_key = models.CharField(max_length=64, blank=True, default="", db_index=True)
    reused_from = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="reused_by",
        help_text="The job whose result this one took instead of running.",
    )
    # Pages to read (1 for an image) and the one being read now (1-based; null when none is).
    page_count = models.PositiveIntegerField(default=1)
    current_page = models.PositiveIntegerField(null=True, blank=True)
    # How a PDF's text layer is used (core/textlayer.py): auto, ocr or text-layer.
    text_layer = models.CharField(max_length=12, choices=TEXT_LAYER_CHOICES, default=textlayer.AUTO)

    # The plan the worker chose for it: backend, launch parameters, and the reasons in words.
    plan = models.JSONField(null=True, blank=True)
    text = models.TextField(blank=True, default="")
    # First characters of the text, so the history never loads whole texts.
    text_preview = models.CharField(max_length=200, blank=True, default="")
    result = models.JSONField(null=True, blank=True)

    # GPU memory: free on the device when the job started, and the most ocrdash held while it ran.
    gpu_free_at_start_bytes = models.BigIntegerField(null=True, blank=True)
    peak_gpu_bytes = models.BigIntegerField(null=True, blank=True)

    created_at = models.DateTimeField(default=timezone.now)
    # When it last joined the queue: the upload, or a later retry. Orders the queue.
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["-created_at", "-id"], name="job_newest"),
            models.Index(fields=["state", "-created_at"], name="job_state_newest"),
            models.Index(fields=["backend", "-created_at"], name="job_backend_newest"),
            models.Index(fields=["owner", "-created_at"], name="job_owner_newest"),
            models.Index(fields=["state", "queued_at", "id"], name="job_queue_order"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.original_name} ({self.state})"

    def save(self, *args, **kwargs):
        if self.queued_at is None:
            self.queued_at = self.created_at
        super().save(*args, **kwargs)

    def get_absolute_url(self) -> str:
        return reverse("job-detail", args=[self.pk])

    @property
    def is_document(self) -> bool:
        """A PDF or a multi-frame TIFF: its pages are rendered one by one (core/documents.py)."""
        return documents.is_document(self.image_format, self.page_count)

    @property
    def ended(self) -> bool:
        return self.state in jobstate.ENDED

    @property
    def waited_seconds(self) -> float | None:
        if self.started_at is None:
            return None
        return (self.started_at - (self.queued_at or self.created_at)).total_seconds()

    @property
    def ran_seconds(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    def queue_position(self) -> int | None:
        """1 = the next job to run. Derived from the queue, never stored."""
        if self.state != jobstate.QUEUED:
            return None
        ahead = Job.objects.filter(state=jobstate.QUEUED).filter(
            models.Q(queued_at__lt=self.queued_at) | models.Q(queued_at=self.queued_at, id__lt=self.id)
        )
        return ahead.count() + 1

    def move_to(self, new_state: str, if_attempt: int | None = None, **fields) -> bool:
        """The one way a job changes state.

        Checks the move, then updates the row only if it is still in the state
        this object saw, so a cancel racing with the worker cannot be lost.
        With `if_attempt`, only if the row is still at that attempt (see `attempts`).
        Returns False when another process moved the job first.
        """
        old_state = self.state
        jobstate.check_move(old_state, new_state)
        now = timezone.now()
        if new_state == jobstate.RUNNING:
            fields.setdefault("started_at", now)
        if new_state in jobstate.ENDED:
            fields.setdefault("finished_at", now)
        if new_state == jobstate.QUEUED:
            fields = {"message": "", **fields, "started_at": None, "finished_at": None, "progress": 0.0}
            fields.setdefault("queued_at", now)
        rows = Job.objects.filter(pk=self.pk, state=old_state)
        if if_attempt is not None:
            rows = rows.filter(attempts=if_attempt)
        changed = rows.update(state=new_state, **fields)
        if changed:
            self.state = new_state
            for name, value in fields.items():
                setattr(self, name, value)
        return bool(changed)


def page_image_path(page: Page, filename: str) -> str:
    return f"pages/{timezone.now():%Y/%m}/{page.job_id}/{filename}"


class Page(models.Model):
    """One page of a job: the page of an image, or one page of a PDF, read in turn by the worker."""

    PENDING, RUNNING, SUCCEEDED, FAILED = "pending", "running", "succeeded", "failed"
    STATES = (PENDING, RUNNING, SUCCEEDED, FAILED)

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="pages")
    number = models.PositiveIntegerField(help_text="1-based, in the document's order.")
    state = models.CharField(max_length=10, choices=[(s, s) for s in STATES], default=PENDING)
    # A document's page as rendered for the model; empty for an image (the upload is the page).
    image = models.FileField(upload_to=page_image_path, max_length=300, blank=True)
    # A PDF page's text layer as classified at upload (core/textlayer.py: text, image, mixed; empty
    # for images), and where its text came from: "text-layer" or "ocr" (empty until read).
    kind = models.CharField(max_length=8, blank=True, default="")
    source = models.CharField(max_length=12, blank=True, default="")
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    dpi = models.PositiveIntegerField(null=True, blank=True)
    # The engine's answer (OcrResult.as_json) with "page": the ParsedPage (to_dict), "image_size".
    result = models.JSONField(null=True, blank=True)
    text = models.TextField(blank=True, default="")
    message = models.TextField(blank=True, default="")
    seconds = models.FloatField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["job", "number"]
        constraints = [models.UniqueConstraint(fields=["job", "number"], name="page_number_per_job")]

    def __str__(self) -> str:
        return f"job {self.job_id} page {self.number} ({self.state})"


def queued_jobs_in_order():
    return Job.objects.filter(state=jobstate.QUEUED).order_by("queued_at", "id")


class GpuAction(models.Model):
    """The audit log of the GPU memory manager: who freed what, and how much it freed."""

    FREE = "free"
    STOP_CONTAINER = "stop_container"
    ACTION_CHOICES = [(FREE, "free ocrdash's GPU memory"), (STOP_CONTAINER, "stop a container")]

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    # Kept as text too, so the log still says who it was after the account is deleted.
    username = models.CharField(max_length=150)
    via = models.CharField(max_length=10, help_text="web or cli")
    action = models.CharField(max_length=20, choices=ACTION_CHOICES)
    target = models.CharField(max_length=200, blank=True, default="")
    ok = models.BooleanField(default=True)
    freed_bytes = models.BigIntegerField(null=True, blank=True)
    steps = models.JSONField(default=list, help_text="What was done, step by step, with outcomes.")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M} {self.username}: {self.action} {self.target}".strip()


class BackendSettings(models.Model):
    """Which backend runs dots.ocr and within what limits: one row, edited in the admin.

    A change applies to the next job: the worker reads this row for every job, plans against
    the GPU as it is then, and unloads the old backend when the plan changes.
    """

    AUTO = backends.AUTO
    # From the registry (core/backends.py); its labels are the choices' texts of migration 0004.
    BACKEND_CHOICES = backends.choices(with_auto=True)

    backend = models.CharField(max_length=20, choices=BACKEND_CHOICES, default=AUTO)
    model = models.CharField(
        max_length=300,
        default="rednote-hilab/dots.ocr",
        help_text="Hugging Face model id, or a folder on the worker that holds the model.",
    )
    revision = models.CharField(
        max_length=64,
        blank=True,
        default="",
        help_text="The model repository's commit hash. Required for a hub id: the model runs its own code "
        "(trust_remote_code), so it must not change under you.",
    )
    vllm_url = models.CharField(
        max_length=300,
        blank=True,
        validators=[URLValidator(schemes=["http", "https"])],
        default="",
        help_text="An external vLLM server (e.g. http://gpu-host:8000). Empty: ocrdash starts its own "
        "vLLM container through Docker when vLLM is chosen.",
    )
    allow_vllm = models.BooleanField(default=True, help_text="Consider vLLM at all.")
    allow_fp8 = models.BooleanField(default=True, help_text="Let vLLM quantize the weights to fp8 to fit.")
    allow_cpu = models.BooleanField(
        default=False, help_text="Let auto fall back to dots.ocr on the CPU (minutes per page) before rapidocr."
    )
    reserve_mib = models.PositiveIntegerField(
        default=512, help_text="GPU memory (MiB) always left for other programs, plus the percentage below."
    )
    reserve_percent = models.PositiveSmallIntegerField(default=5)
    max_pixels = models.PositiveIntegerField(
        default=11_289_600, help_text="Largest page image sent to dots.ocr, in pixels (its own limit: 11,289,600)."
    )
    max_new_tokens = models.PositiveIntegerField(default=24_000, help_text="Output budget per page, in tokens.")
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.CharField(max_length=150, blank=True, default="")

    class Meta:
        verbose_name = "backend settings"
        verbose_name_plural = "backend settings"

    def __str__(self) -> str:
        return f"Backend: {self.get_backend_display()}"

    def save(self, *args, **kwargs):
        self.pk = 1  # one row only
        super().save(*args, **kwargs)

    def clean(self):
        from django.core.exceptions import ValidationError

        from ocr_app.backend_limits import model_problem, vllm_host_problem

        problems = {}
        if why := model_problem(self.model):
            problems["model"] = why[0].upper() + why[1:] + "."
        if why := vllm_host_problem(self.vllm_url):
            problems["vllm_url"] = why[0].upper() + why[1:] + "."
        if problems:
            raise ValidationError(problems)

    @classmethod
    def load(cls) -> BackendSettings:
        obj, _ = cls.objects.get_or_create(pk=1)
        return obj


class ApiToken(models.Model):
    """A key a script sends as `Authorization: Bearer <key>` (or `Token <key>`).

    Only the key's SHA-256 is stored: the key itself is shown once, when it is made. A plain hash
    is enough because the key is 256 random bits, not a password a person chose.
    """

    KEY_PREFIX = "ocrd_"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, help_text="What the token is for, e.g. the script's name.")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    # The key's first characters, shown so a user can tell their tokens apart.
    key_start = models.CharField(max_length=16, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    # From the address of the last use (a token seen from somewhere unexpected is worth revoking).
    last_used_from = models.GenericIPAddressField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # None: until revoked.
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.name} ({self.user}, {self.key_start}…)"

    @staticmethod
    def hash_key(key: str) -> str:
        return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()

    @classmethod
    def create_for(cls, user, name: str, expires_at=None) -> tuple[ApiToken, str]:
        """A new token and its key; the key is not kept anywhere."""
        key = cls.KEY_PREFIX + secrets.token_urlsafe(32)
        token = cls.objects.create(
            user=user, name=name, key_hash=cls.hash_key(key), key_start=key[:12], expires_at=expires_at
        )
        return token, key

    @property
    def expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= timezone.now()

    @property
    def active(self) -> bool:
        return self.revoked_at is None and not self.expired

    def revoke(self) -> bool:
        """False when it was revoked already."""
        if self.revoked_at is not None:
            return False
        self.revoked_at = timezone.now()
        ApiToken.objects.filter(pk=self.pk, revoked_at=None).update(revoked_at=self.revoked_at)
        return True


class IdempotencyKey(models.Model):
    """The answer to a `POST /api/v1/jobs` sent with an `Idempotency-Key` header, so that the same
    request sent again (a retry after a lost answer) gets the same jobs instead of new ones."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    # SHA-256 of the options and of each file's name and bytes: the same key with another body is an error.
    request_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    status_code = models.PositiveSmallIntegerField(default=202)
    job_ids = models.JSONField(default=list)
    refused = models.JSONField(default=list)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "key"], name="idempotency_key_per_user")]

    def __str__(self) -> str:
        return f"{self.user}: {self.key}"


class JobOrigin(models.Model):
    """How a job came in through the API, and what it asked for that Job has no field for yet.

    `mode` is the dots.ocr task the request asked for (from the prompt of a chat completion); the
    task the worker runs is Job.mode.
    """

    API = "api"
    OPENAI = "openai"
    VIA_CHOICES = [(API, "REST API"), (OPENAI, "OpenAI-compatible endpoint")]

    job = models.OneToOneField(Job, on_delete=models.CASCADE, related_name="origin")
    via = models.CharField(max_length=10, choices=VIA_CHOICES)
    token = models.ForeignKey(ApiToken, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs")
    mode = models.CharField(max_length=20, blank=True, default="")
    options = models.JSONField(default=dict, blank=True)

    def __str__(self) -> str:
        return f"job {self.job_id} via {self.via}"
