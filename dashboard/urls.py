from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    # Everything else is the app's: pages, files, actions, the API, /v1/, /metrics, /healthz.
    path("", include("ocr_app.urls")),
]

# A request Django cannot read (a broken upload): a sentence saying why, not a bare "Bad Request".
handler400 = "ocr_app.errors.bad_request"
