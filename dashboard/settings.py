"""ocrdash settings. Everything a deployment changes comes from OCRDASH_* variables."""

from __future__ import annotations

from pathlib import Path

import dj_database_url
from django.core.management.utils import get_random_secret_key

from dashboard.env import env_bool, env_int, env_list, env_path, env_str

BASE_DIR = Path(__file__).resolve().parent.parent

DATA_DIR = env_path(
    "DATA_DIR", BASE_DIR / "data", "Folder for the SQLite database, uploads and models.", "./data"
)
DEBUG = env_bool("DEBUG", False, "Django debug pages. Never in production.")


def _secret_key() -> str:
    key = env_str("SECRET_KEY", None, "Django secret key. Generated once into DATA_DIR when unset.")
    if key:
        return key
    # A first start on a laptop should not need configuration: keep a generated key.
    key_file = DATA_DIR / "secret_key"
    if not key_file.exists():
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        key_file.write_text(get_random_secret_key())
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = env_list(
    "ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"], "Host names the server answers to."
)
CSRF_TRUSTED_ORIGINS = env_list(
    "CSRF_TRUSTED_ORIGINS", [], "Origins (https://host) allowed to post forms, behind a proxy."
)

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "channels",
    "ocr_app",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "ocr_app.middleware.LoginRequired",
]

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
)
if _database_url:
    DATABASES = {"default": dj_database_url.parse(_database_url, conn_max_age=60)}
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
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_SEND_TASK_EVENTS = True
CELERY_TASK_SEND_SENT_EVENT = True
CELERY_TASK_TRACK_STARTED = True
CELERY_TASK_DEFAULT_QUEUE = "gpu"
CELERY_TASK_ROUTES = {"workers.tasks.*": {"queue": "gpu"}}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
JOB_TIME_LIMIT = env_int(
    "JOB_TIME_LIMIT", 3600, "Seconds one job may run before it is stopped and marked failed.", 10
)
CELERY_TASK_SOFT_TIME_LIMIT = JOB_TIME_LIMIT
CELERY_TASK_TIME_LIMIT = JOB_TIME_LIMIT + 30
# acks_late with a long job: the broker must not hand the task to a second worker meanwhile.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": JOB_TIME_LIMIT + 600}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC", "Time zone for dates shown on pages.")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = DATA_DIR / "staticfiles"
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
# Django refuses a request with more files before our form sees it; leave room for our own message.
DATA_UPLOAD_MAX_NUMBER_FILES = MAX_FILES_PER_UPLOAD + 50
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024

# OCR engine.
OCRDASH_MODEL_DIR = env_path(
    "MODEL_DIR", DATA_DIR / "models", "Folder for downloaded models.", "DATA_DIR/models"
)
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

# The GPU.
GPU_INDEX = env_int(
    "GPU_INDEX", 0, "NVML index of the GPU this worker plans for and measures (one worker per GPU).", 0
)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO", "Log level.")},
}

# The start command (python manage.py start).
BIND_HOST = env_str("HOST", "127.0.0.1", "Address the web server listens on (0.0.0.0 for every interface).")
BIND_PORT = env_int("PORT", 8000, "Port of the web server.", 1)
ADMIN_USERNAME = env_str("ADMIN_USERNAME", "admin", "Admin account created on the first start.")
ADMIN_PASSWORD = env_str(
    "ADMIN_PASSWORD", None, "Its password. Unset: a random one, printed and saved in DATA_DIR."
)
