"""`/api/v1/…`, the OpenAPI document and its interactive docs (served from drf-spectacular-sidecar's
files: no CDN)."""

from csp.constants import SELF, UNSAFE_INLINE
from csp.decorators import csp_update
from django.contrib.auth.decorators import login_required
from django.urls import path, re_path
from drf_spectacular.renderers import (
    OpenApiJsonRenderer,
    OpenApiJsonRenderer2,
    OpenApiYamlRenderer,
    OpenApiYamlRenderer2,
)
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from ocr_app.api import views


class SchemaView(SpectacularAPIView):
    """The OpenAPI document, JSON unless YAML is asked for (Accept: application/yaml)."""

    renderer_classes = [OpenApiJsonRenderer2, OpenApiJsonRenderer, OpenApiYamlRenderer, OpenApiYamlRenderer2]


class SwaggerView(SpectacularSwaggerView):
    """Swagger UI from our own template: no inline script or style (the pages' CSP allows none)."""

    template_name = "api/swagger_ui.html"

    @extend_schema(exclude=True)
    def get(self, request, *args, **kwargs):
        response = super().get(request, *args, **kwargs)
        response["Cross-Origin-Opener-Policy"] = "same-origin"  # no OAuth pop-ups here
        return response


class RedocView(SpectacularRedocView):
    """ReDoc from our own template: no inline script, no web fonts from another site."""

    template_name = "api/redoc.html"


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
    path("docs/", login_required(SwaggerView.as_view(url_name="api-schema")), name="api-docs"),
    # ReDoc styles itself with <style> elements it writes (styled-components) and runs its search in
    # a worker it makes from a blob: this one page allows both. Scripts stay 'self' only; its
    # "API docs by Redocly" logo from cdn.redoc.ly stays blocked (img-src).
    path(
        "redoc/",
        csp_update({"style-src": [UNSAFE_INLINE], "worker-src": [SELF, "blob:"]})(
            login_required(RedocView.as_view(url_name="api-schema"))
        ),
        name="api-redoc",
    ),
    re_path(r"^(?P<rest>.*)$", views.NoSuchEndpointView.as_view()),
]
