from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("", include("ocr_app.metrics")),  # /metrics (Prometheus) and /healthz, without a login
    path("api/", include("ocr_app.api.urls")),  # the REST API (/api/v1/), its schema and docs
    path("v1/", include("ocr_app.openai_compat")),  # OpenAI-compatible: /v1/chat/completions, /v1/models
    path("", include("ocr_app.urls")),
]

# A request Django cannot read (a broken upload): a sentence saying why, not a bare "Bad Request".
handler400 = "ocr_app.errors.bad_request"
