"""ocrdash settings. Everything a deployment changes comes from OCRDASH_* variables."""

from __future__ import annotations

import ipaddress
from datetime import timedelta
from pathlib import Path

import dj_database_url
from csp.constants import NONE, SELF
from django.core.management.utils import get_random_secret_key

from dashboard.env import PREFIX, ConfigError, env_bool, env_int, env_list, env_path, env_str
from dashboard.private_files import create_private_file

BASE_DIR = Path(__file__).resolve().parent.parent

DATA_DIR = env_path("DATA_DIR", BASE_DIR / "data", "Folder for the SQLite database, uploads and models.", "./data")
DEBUG = env_bool("DEBUG", False, "Django debug pages. Never in production.")


def _secret_key() -> str:
    key = env_str("SECRET_KEY", None, "Django secret key. Generated once into DATA_DIR when unset.", secret=True)
    if key:
        return key
    # A first start on a laptop should not need configuration: keep a generated key.
    key_file = DATA_DIR / "secret_key"
    if not key_file.exists():
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        return create_private_file(key_file, get_random_secret_key()).strip()
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"], "Host names the server answers to.")
CSRF_TRUSTED_ORIGINS = env_list(
    "CSRF_TRUSTED_ORIGINS", [], "Origins (https://host) allowed to post forms, behind a proxy."
)

# HTTPS. Off by default, so the start command keeps working over http on a laptop; a deployment
# that is reached over HTTPS (itself or through a TLS proxy) declares it and gets the rest.
HTTPS = env_bool(
    "HTTPS",
    False,
    "The site is reached over HTTPS (directly or through a TLS proxy): secure cookies, HSTS and a "
    "redirect from http. Leave false for plain http.",
)
_proxy_ssl_header = env_str(
    "SECURE_PROXY_SSL_HEADER",
    None,
    "With HTTPS behind a TLS proxy: the header and value the proxy sets on HTTPS requests, e.g. "
    "X-Forwarded-Proto:https. Only if the proxy always sets or removes that header.",
)
# Read by docker/entrypoint.sh (the web role passes uvicorn --proxy-headers); declared here to be documented.
BEHIND_PROXY = env_bool(
    "BEHIND_PROXY",
    False,
    "A reverse proxy forwards to the web server: take client addresses from X-Forwarded-For. The web "
    "port must then be reachable only through the proxy. Read by the container's web role.",
)
_ssl_redirect = env_bool(
    "SECURE_SSL_REDIRECT", True, "With HTTPS: redirect http requests to https (/healthz and /metrics excepted)."
)
_hsts_seconds = env_int(
    "SECURE_HSTS_SECONDS",
    31_536_000,
    "With HTTPS: how long browsers must use https only (HSTS), in seconds; 0 turns it off. Try 3600 first.",
    0,
)
_hsts_subdomains = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False, "With HTTPS: HSTS covers every subdomain too.")
_hsts_preload = env_bool(
    "SECURE_HSTS_PRELOAD", False, "With HTTPS: allow browsers to preload HSTS for the domain (hard to undo)."
)


def _proxy_header(value: str) -> tuple[str, str]:
    """ "X-Forwarded-Proto:https" (or "=") → ("HTTP_X_FORWARDED_PROTO", "https")."""
    name, sep, expected = value.replace("=", ":", 1).partition(":")
    name, expected = name.strip(), expected.strip()
    if not sep or not name or not expected or " " in name:
        raise ConfigError(
            f"{PREFIX}SECURE_PROXY_SSL_HEADER={value!r} is not 'Header-Name:value' (e.g. X-Forwarded-Proto:https)"
        )
    return "HTTP_" + name.upper().replace("-", "_"), expected


if HTTPS:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = _ssl_redirect
    # Health checks and Prometheus talk plain http to the container, not through the proxy.
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^metrics$"]
    SECURE_HSTS_SECONDS = _hsts_seconds
    SECURE_HSTS_INCLUDE_SUBDOMAINS = _hsts_subdomains
    SECURE_HSTS_PRELOAD = _hsts_preload
    if _proxy_ssl_header:
        SECURE_PROXY_SSL_HEADER = _proxy_header(_proxy_ssl_header)
elif _proxy_ssl_header:
    raise ConfigError(f"{PREFIX}SECURE_PROXY_SSL_HEADER is set but {PREFIX}HTTPS is not: set {PREFIX}HTTPS=true")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "channels",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and ReDoc files, served from here (no CDN)
    "csp",  # the Content-Security-Policy header
    "axes",  # failed logins, counted per username and per address; lock-outs
    "ocr_app",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "ocr_app.middleware.LoginRequired",
    # Last, as django-axes asks: it turns a locked-out login into the lock-out answer.
    "axes.middleware.AxesMiddleware",
]

# Every page: no inline script or style, nothing from another origin. Responses that carry a
# user's bytes or the model's output replace it with ocr_app.serving.USER_CONTENT_CSP (sandboxed).
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],  # Picture crops and page images as data: URIs
        "font-src": [SELF],
        "connect-src": [SELF],  # fetch() and the websocket, to this origin only
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"

ROOT_URLCONF = "dashboard.urls"
ASGI_APPLICATION = "dashboard.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

_database_url = env_str(
    "DATABASE_URL",
    None,
    "Database URL, e.g. postgres://user:pass@host:5432/ocrdash. Unset: SQLite in DATA_DIR.",
    secret=True,
)
_database_password = env_str(
    "DATABASE_PASSWORD",
    None,
    "Database password, in place of the one in DATABASE_URL (so the URL can stay free of secrets).",
    secret=True,
)
if _database_url:
    DATABASES = {"default": dj_database_url.parse(_database_url, conn_max_age=60)}
    if _database_password:
        DATABASES["default"]["PASSWORD"] = _database_password
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": DATA_DIR / "ocrdash.sqlite3",
            # WAL lets the web server read while the worker writes.
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
            "TEST": {"NAME": str(DATA_DIR / "test-ocrdash.sqlite3")},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str(
    "REDIS_URL",
    None,
    "Redis URL for the queue and live events. Unset: the start command runs an embedded Redis.",
)
# Only the start command leaves REDIS_URL unset for long; a bare manage.py gets a local default.
_redis = REDIS_URL or "redis://127.0.0.1:6379/0"

CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # channels-redis blocks on Redis for 5 s at a time; redis-py's default read timeout is also
        # 5 s, which cut every websocket after 5 s. A longer socket timeout lets the wait finish.
        "CONFIG": {"hosts": [{"address": _redis, "socket_timeout": 30}], "prefix": "ocrdash"},
    }
}

CELERY_BROKER_URL = _redis
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
# A pool process that dies mid-job: Celery acknowledges the task and reports WorkerLostError, and
# the worker queues the job again or fails it with the reason (ocr_app/recovery.py), instead of
# the broker handing the same message back.
CELERY_TASK_REJECT_ON_WORKER_LOST = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_SEND_TASK_EVENTS = True
CELERY_TASK_SEND_SENT_EVENT = True
CELERY_TASK_TRACK_STARTED = True
CELERY_TASK_DEFAULT_QUEUE = "gpu"
CELERY_TASK_ROUTES = {"workers.tasks.*": {"queue": "gpu"}}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
JOB_TIME_LIMIT = env_int("JOB_TIME_LIMIT", 3600, "Seconds one job may run before it is stopped and marked failed.", 10)
JOB_RETRIES = env_int(
    "JOB_RETRIES",
    1,
    "Times a job is queued again when the worker process reading it dies (killed, out of memory, machine "
    "stopped); after that it fails with the reason.",
    0,
)
# Every accepted job ends (ocr_app/recovery.py, ocr_app/delivery.py). Each worker's main process
# looks every RECOVERY_SWEEP_SECONDS; a running job whose worker gave no sign of life for
# RUNNER_LOST_SECONDS is taken for lost (so a dead worker is noticed within 40 s); a queued job whose
# task Redis does not hold after RESEND_AFTER_SECONDS is sent again.
RECOVERY_SWEEP_SECONDS = 5
RUNNER_LOST_SECONDS = 30
RESEND_AFTER_SECONDS = 15
CELERY_TASK_SOFT_TIME_LIMIT = JOB_TIME_LIMIT
CELERY_TASK_TIME_LIMIT = JOB_TIME_LIMIT + 30
# acks_late with a long job: the broker must not hand the task to a second worker meanwhile.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": JOB_TIME_LIMIT + 600}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# Failed logins (the login form, the admin's, and API tokens) are counted by django-axes per
# username and per client address; at the limit both are locked out until the failures are
# LOGIN_LOCKOUT_MINUTES old, or an admin deletes them (Admin → Axes → Access attempts).
LOGIN_FAILURE_LIMIT = env_int(
    "LOGIN_FAILURE_LIMIT",
    10,
    "Failed logins allowed per username and per client address before both are locked out; also the wrong tries "
    "allowed per API token key.",
    1,
)
LOGIN_LOCKOUT_MINUTES = env_int(
    "LOGIN_LOCKOUT_MINUTES",
    15,
    "Minutes failed logins are counted for, and a lock-out lasts after the last failure.",
    1,
)
TOKEN_ADDRESS_FAILURE_LIMIT = env_int(
    "TOKEN_ADDRESS_FAILURE_LIMIT",
    50,
    "Wrong API token tries allowed from one client address before it is locked out (a key is locked out after "
    "LOGIN_FAILURE_LIMIT). Higher than the per-key limit: a whole team may share one address.",
    1,
)
AUTHENTICATION_BACKENDS = [
    "ocr_app.lockout.LoginThrottleBackend",  # first: refuses a locked-out login before the password is checked
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = LOGIN_FAILURE_LIMIT
# Token tries counted apart from logins, per key and (higher) per address: ocr_app/lockout.py.
AXES_HANDLER = "ocr_app.lockout.LockoutHandler"
AXES_COOLOFF_TIME = timedelta(minutes=LOGIN_LOCKOUT_MINUTES)
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
# Never reset on success: an attacker with an account of their own would log in between guesses.
AXES_RESET_ON_SUCCESS = False
# The address the web server gives (the proxy's X-Forwarded-For only with OCRDASH_BEHIND_PROXY), never a header
# a client could set itself.
AXES_CLIENT_IP_CALLABLE = "ocr_app.lockout.client_address"
AXES_LOCKOUT_CALLABLE = "ocr_app.lockout.lockout_response"
AXES_HTTP_RESPONSE_CODE = 429
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC", "Time zone for dates shown on pages.")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = env_path(
    "STATIC_ROOT",
    DATA_DIR / "staticfiles",
    "Folder collectstatic fills and the web server serves /static/ from (the image fills it at build).",
    "DATA_DIR/staticfiles",
)
# Uploaded files are private to logged-in users: served by a view, never by URL prefix.
MEDIA_ROOT = DATA_DIR / "media"
MEDIA_URL = "/media-not-public/"
WHITENOISE_USE_FINDERS = True
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # whitenoise warns on every start without it

# What users may send.
MAX_UPLOAD_BYTES = env_int("MAX_UPLOAD_MB", 50, "Largest file accepted, in megabytes.", 1) * 1024 * 1024
MAX_FILES_PER_UPLOAD = env_int("MAX_FILES_PER_UPLOAD", 50, "Most files in one upload.", 1)
MAX_IMAGE_PIXELS = env_int(
    "MAX_IMAGE_PIXELS",
    100_000_000,
    "Largest image accepted, in pixels (width × height); guards against decompression bombs.",
    1,
)
MAX_PDF_PAGES = env_int(
    "MAX_PDF_PAGES", 200, "Most pages in one PDF or multi-page TIFF; each page is rendered and read in turn.", 1
)
PDF_TEXT_LAYER = env_str(
    "PDF_TEXT_LAYER",
    "auto",
    "How a PDF page's own text is used, unless an upload says: auto (text pages read from it for the text "
    "task, OCR for layouts), ocr (always OCR) or text-layer (read from it wherever there is text).",
)
if PDF_TEXT_LAYER not in ("auto", "ocr", "text-layer"):
    raise ConfigError(f"{PREFIX}PDF_TEXT_LAYER={PDF_TEXT_LAYER!r} is none of auto, ocr, text-layer")
_max_request_mb = env_int(
    "MAX_REQUEST_MB",
    0,
    "Largest request body an upload may send, in megabytes, refused (413) before it is read. 0: MAX_UPLOAD_MB + 1 "
    "(one file and the form); the upload page sends several files in batches that fit. Raise it for scripts "
    "that send many files in one request; the reverse proxy's limit should match.",
    0,
)
# One file of the largest size, its multipart headers and the form's fields.
MAX_REQUEST_BYTES = _max_request_mb * 1024 * 1024 if _max_request_mb else MAX_UPLOAD_BYTES + 1024 * 1024
# Every other request (forms, JSON) is small: Django's own limit for form data.
MAX_FORM_REQUEST_BYTES = 2_621_440
MIN_FREE_DISK_MB = env_int(
    "MIN_FREE_DISK_MB",
    1024,
    "Uploads are refused (507) while the data folder's disk has less free space than this, in megabytes.",
    0,
)
# Retention: files and results of ended jobs are kept forever unless a number of days is set.
KEEP_ORIGINALS_DAYS = env_int(
    "KEEP_ORIGINALS_DAYS", None, "Days an ended job's uploaded file is kept (unset: forever).", 1
)
KEEP_PAGE_IMAGES_DAYS = env_int(
    "KEEP_PAGE_IMAGES_DAYS", None, "Days an ended job's rendered PDF page images are kept (unset: forever).", 1
)
KEEP_THUMBNAILS_DAYS = env_int(
    "KEEP_THUMBNAILS_DAYS", None, "Days an ended job's thumbnail is kept (unset: forever).", 1
)
KEEP_RESULTS_DAYS = env_int(
    "KEEP_RESULTS_DAYS", None, "Days an ended job's recognized text and layout are kept (unset: forever).", 1
)
# The worker applies the retention settings this often (also: manage.py prune).
PRUNE_EVERY_SECONDS = 3600
# Django refuses a request with more files before our form sees it; leave room for our own message.
DATA_UPLOAD_MAX_NUMBER_FILES = MAX_FILES_PER_UPLOAD + 50
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024

# OCR engine.
OCRDASH_MODEL_DIR = env_path("MODEL_DIR", DATA_DIR / "models", "Folder for downloaded models.", "DATA_DIR/models")
OCRDASH_OCR_LANGUAGE = env_str(
    "OCR_LANGUAGE",
    "multi",
    "Default recognition language of the CPU engine (rapidocr): multi, eslav, cyrillic, ...",
)
OCRDASH_ALLOW_MODEL_DOWNLOAD = env_bool(
    "ALLOW_MODEL_DOWNLOAD", True, "Let the worker fetch a missing language model on first use."
)

HISTORY_PAGE_SIZE = 50
BACKEND_IDLE_UNLOAD = env_int(
    "BACKEND_IDLE_UNLOAD", 600, "Seconds a loaded model may sit idle before the worker unloads it (0: never).", 0
)

# Throughput and the loop guard (core/loopguard.py, core/planner/).
MAX_PAGES_AT_ONCE = env_int(
    "MAX_PAGES_AT_ONCE",
    4,
    "Most pages of one document read at the same time (vLLM requests in flight, transformers batch); "
    "the planner takes fewer when the memory holds fewer.",
    1,
)
LOOP_WINDOW = env_int(
    "LOOP_WINDOW",
    400,
    "A page whose last this-many output tokens are one piece repeated is stopped early, its text kept (0: never).",
    0,
)
LOOP_NGRAM = env_int(
    "LOOP_NGRAM", 100, "Longest repeating piece, in tokens, the loop guard looks for (at most half the window).", 1
)
PAGE_TIME_LIMIT = env_int(
    "PAGE_TIME_LIMIT", 0, "Seconds one page may take before it is stopped, its text so far kept (0: no limit).", 0
)
FAST_DECODE = env_bool(
    "FAST_DECODE",
    False,
    "transformers backend: a static KV cache and torch.compile for decoding (falls back, logged, where it cannot).",
)
if LOOP_WINDOW and LOOP_NGRAM * 2 > LOOP_WINDOW:
    raise ConfigError(f"{PREFIX}LOOP_NGRAM={LOOP_NGRAM} must be at most half of {PREFIX}LOOP_WINDOW={LOOP_WINDOW}")

# The GPU.
GPU_INDEX = env_int("GPU_INDEX", 0, "NVML index of the GPU this worker plans for and measures (one worker per GPU).", 0)

LOG_FORMAT = env_str(
    "LOG_FORMAT",
    "plain",
    "Log lines as plain text, or json: one JSON object per line, with job_id while a job runs.",
)
if LOG_FORMAT not in ("plain", "json"):
    raise ConfigError(f"{PREFIX}LOG_FORMAT={LOG_FORMAT!r} is neither plain nor json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "dashboard.logs.ContextFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {"()": "dashboard.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["context"]},
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO", "Log level.")},
    # The web server (uvicorn) sets up its own handlers before Django starts; these replace them, so
    # its start-up and access lines come out in LOG_FORMAT like every other line.
    "loggers": {
        "uvicorn": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "uvicorn.access": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}

# Monitoring: GET /metrics (Prometheus) answers a right bearer token, or a client in these networks.
METRICS_TOKEN = env_str(
    "METRICS_TOKEN",
    None,
    "Bearer token for GET /metrics (Authorization: Bearer <token>). Unset: only the networks below.",
    secret=True,
)


def _networks(items: list[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    if [i.lower() for i in items] == ["none"]:
        return []
    try:
        return [ipaddress.ip_network(item, strict=False) for item in items]
    except ValueError as exc:
        raise ConfigError(f"{PREFIX}METRICS_ALLOW_FROM: {exc}") from None


METRICS_ALLOW_FROM = _networks(
    env_list(
        "METRICS_ALLOW_FROM",
        ["127.0.0.1/32", "::1/128"],
        "Networks (CIDR) whose clients may read /metrics without the token; none: the token only.",
    )
)

# A fixed vLLM server for every worker (the compose file's `vllm` profile); see docs/deploy.md.
VLLM_URL = env_str(
    "VLLM_URL",
    None,
    "An external vLLM server for dots.ocr (e.g. http://vllm:8000), in place of the admin's vLLM URL.",
)
VLLM_ALLOWED_HOSTS = [
    host.lower()
    for host in env_list(
        "VLLM_ALLOWED_HOSTS",
        [],
        "Host names (or addresses) the admin's vLLM URL may point at, comma-separated; unset: any host.",
    )
]

# The API for scripts (/api/v1/, ocr_app/api/) and its OpenAPI document (/api/schema/, /api/docs/).
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "ocr_app.api.auth.ApiTokenAuthentication",  # Authorization: Bearer <key>, made on /profile/
        "rest_framework.authentication.SessionAuthentication",  # the pages' own calls (CSRF checked)
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser", "rest_framework.parsers.MultiPartParser"],
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "ocr_app.api.errors.LenientContentNegotiation",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "ocr_app.api.errors.exception_handler",
    # ?format= chooses a result's format (txt, json), not DRF's renderer.
    "URL_FORMAT_OVERRIDE": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "ocrdash API",
    "DESCRIPTION": "Upload images for OCR, follow and wait for the jobs, download their text; the GPU and the "
    "backend. Authenticate with a token from your profile page: `Authorization: Bearer <key>`.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "JobStateEnum": "core.jobstate.STATES",
        "JobModeEnum": "core.dots.prompts.MODES",
        "UploadModeEnum": "ocr_app.api.serializers.AVAILABLE_MODES",
    },
}
CHAT_COMPLETION_TIMEOUT = env_int(
    "CHAT_COMPLETION_TIMEOUT",
    600,
    "Seconds POST /v1/chat/completions waits for its job to end; then the job is cancelled and the answer is 504.",
    1,
)

# The start command (python manage.py start).
BIND_HOST = env_str("HOST", "127.0.0.1", "Address the web server listens on (0.0.0.0 for every interface).")
BIND_PORT = env_int("PORT", 8000, "Port of the web server.", 1)
ADMIN_USERNAME = env_str("ADMIN_USERNAME", "admin", "Admin account created on the first start.")
ADMIN_PASSWORD = env_str(
    "ADMIN_PASSWORD", None, "Its password. Unset: a random one, printed and saved in DATA_DIR.", secret=True
)
