"""Every address the app answers, in one place: the pages, files and downloads, the job actions, the
profile, monitoring, the REST API (/api/), the OpenAI-compatible endpoint (/v1/) and the websocket.

dashboard/urls.py adds only login, logout and the admin; dashboard/asgi.py serves
`websocket_urlpatterns`. Each address and name is fixed (tests/web/test_urls.py): scripts and
bookmarks use the paths, templates and code `reverse()` the names.
"""

from csp.constants import SELF, UNSAFE_INLINE
from csp.decorators import csp_update
from django.contrib.auth.decorators import login_required
from django.urls import include, path, re_path

from ocr_app.api import openai
from ocr_app.api import questions as api_questions
from ocr_app.api import views as api
from ocr_app.consumers import EventsConsumer
from ocr_app.views import actions, files, monitoring, pages, profile

# /api/…: the REST API for scripts, its OpenAPI document and the pages that show it.
api_patterns = [
    path("v1/jobs", api.JobsView.as_view(), name="api-jobs"),
    path("v1/jobs/<int:pk>", api.JobView.as_view(), name="api-job"),
    path("v1/jobs/<int:pk>/result", api.JobResultView.as_view(), name="api-job-result"),
    path("v1/jobs/<int:pk>/wait", api.JobWaitView.as_view(), name="api-job-wait"),
    path("v1/jobs/<int:pk>/cancel", api.JobCancelView.as_view(), name="api-job-cancel"),
    path("v1/jobs/<int:pk>/retry", api.JobRetryView.as_view(), name="api-job-retry"),
    path("v1/jobs/<int:pk>/region", api.JobRegionView.as_view(), name="api-job-region"),
    path("v1/jobs/<int:pk>/question", api_questions.JobQuestionView.as_view(), name="api-job-question"),
    path("v1/gpu", api.GpuView.as_view(), name="api-gpu"),
    path("v1/backend", api.BackendView.as_view(), name="api-backend"),
    path("schema/", api.SchemaView.as_view(), name="api-schema"),
    # Pages for people: an anonymous visitor is sent to the login page, as everywhere else.
    path("docs/", login_required(api.SwaggerView.as_view(url_name="api-schema")), name="api-docs"),
    # ReDoc styles itself with <style> elements it writes (styled-components) and runs its search in
    # a worker it makes from a blob: this one page allows both. Scripts stay 'self' only; its
    # "API docs by Redocly" logo from cdn.redoc.ly stays blocked (img-src).
    path(
        "redoc/",
        csp_update({"style-src": [UNSAFE_INLINE], "worker-src": [SELF, "blob:"]})(
            login_required(api.RedocView.as_view(url_name="api-schema"))
        ),
        name="api-redoc",
    ),
    # Anything else under /api/ gets the API's JSON 404.
    re_path(r"^(?P<rest>.*)$", api.NoSuchEndpointView.as_view()),
]

# /v1/…: what a script written for a dots.ocr vLLM server calls.
openai_patterns = [
    path("chat/completions", openai.ChatCompletionsView.as_view(), name="openai-chat-completions"),
    path("models", openai.ModelsView.as_view(), name="openai-models"),
    re_path(r"^(?P<rest>.*)$", openai.NoSuchEndpointView.as_view()),
]

urlpatterns = [
    # Monitoring, without a login: Prometheus (a token or an allowed network) and health checks.
    path("metrics", monitoring.metrics, name="metrics"),
    path("healthz", monitoring.healthz, name="healthz"),
    path("api/", include(api_patterns)),
    path("v1/", include(openai_patterns)),
    # Pages. The dashboard is where a login lands (LOGIN_REDIRECT_URL "home").
    path("", pages.home, name="home"),
    # GET: the upload page; POST: an upload from that page's form or from a script (JSON).
    path("upload/", actions.upload, name="upload"),
    path("history/", pages.history, name="history"),
    path("jobs/<int:pk>/", pages.job_detail, name="job-detail"),
    path("jobs/<int:pk>/status.json", pages.job_status, name="job-status"),
    path("jobs/<int:pk>/pages/", pages.job_pages, name="job-pages"),
    # The layout view: a page's elements and rendered HTML.
    path("jobs/<int:pk>/pages/<int:number>/layout.json", pages.page_layout, name="page-layout"),
    # Files and downloads.
    path("jobs/<int:pk>/image", files.job_image, name="job-image"),
    path("jobs/<int:pk>/original", files.job_original, name="job-original"),
    path("jobs/<int:pk>/thumbnail.jpg", files.job_thumbnail, name="job-thumbnail"),
    path("jobs/<int:pk>/text.txt", files.job_text, name="job-text"),
    path("jobs/<int:pk>/result.json", files.job_result, name="job-result"),
    path("jobs/<int:pk>/pages/<int:number>/image", files.page_image, name="page-image"),
    path("jobs/<int:pk>/pages/<int:number>/pictures/<int:index>.png", files.page_picture, name="page-picture"),
    path("jobs/<int:pk>/pages/<int:number>/text.txt", files.page_text, name="page-text"),
    # Job actions: the buttons of a job's page and of the history rows.
    path("jobs/<int:pk>/cancel", actions.cancel_view, name="job-cancel"),
    path("jobs/<int:pk>/run-again", actions.run_again_view, name="job-run-again"),
    path("jobs/<int:pk>/retry-pages", actions.retry_pages_view, name="job-retry-pages"),
    path("jobs/<int:pk>/region", actions.read_region, name="job-region"),
    path("jobs/<int:pk>/question", actions.ask_question, name="job-question"),
    # API tokens: make, see and revoke your own.
    path("profile/", profile.profile, name="profile"),
    path("profile/tokens/<int:pk>/revoke", profile.revoke_token, name="profile-token-revoke"),
]

# The websocket every page keeps open (dashboard/asgi.py).
websocket_urlpatterns = [path("ws/events/", EventsConsumer.as_asgi())]
