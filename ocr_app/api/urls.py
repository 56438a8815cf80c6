"""`/api/v1/…`, the OpenAPI document and its interactive docs (served from drf-spectacular-sidecar's
files: no CDN)."""

from django.contrib.auth.decorators import login_required
from django.urls import path, re_path
from drf_spectacular.renderers import (
    OpenApiJsonRenderer,
    OpenApiJsonRenderer2,
    OpenApiYamlRenderer,
    OpenApiYamlRenderer2,
)
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from ocr_app.api import views


class SchemaView(SpectacularAPIView):
    """The OpenAPI document, JSON unless YAML is asked for (Accept: application/yaml)."""

    renderer_classes = [OpenApiJsonRenderer2, OpenApiJsonRenderer, OpenApiYamlRenderer, OpenApiYamlRenderer2]


urlpatterns = [
    path("v1/jobs", views.JobsView.as_view(), name="api-jobs"),
    path("v1/jobs/<int:pk>", views.JobView.as_view(), name="api-job"),
    path("v1/jobs/<int:pk>/result", views.JobResultView.as_view(), name="api-job-result"),
    path("v1/jobs/<int:pk>/wait", views.JobWaitView.as_view(), name="api-job-wait"),
    path("v1/jobs/<int:pk>/cancel", views.JobCancelView.as_view(), name="api-job-cancel"),
    path("v1/jobs/<int:pk>/retry", views.JobRetryView.as_view(), name="api-job-retry"),
    path("v1/jobs/<int:pk>/region", views.JobRegionView.as_view(), name="api-job-region"),
    path("v1/gpu", views.GpuView.as_view(), name="api-gpu"),
    path("v1/backend", views.BackendView.as_view(), name="api-backend"),
    path("schema/", SchemaView.as_view(), name="api-schema"),
    # Pages for people: an anonymous visitor is sent to the login page, as everywhere else.
    path("docs/", login_required(SpectacularSwaggerView.as_view(url_name="api-schema")), name="api-docs"),
    path("redoc/", login_required(SpectacularRedocView.as_view(url_name="api-schema")), name="api-redoc"),
    re_path(r"^(?P<rest>.*)$", views.NoSuchEndpointView.as_view()),
]
