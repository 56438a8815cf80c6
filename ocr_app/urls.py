from django.urls import path

from ocr_app import cancel, layout, pictures_views, profile, views

urlpatterns = [
    # The GPU dashboard, where a login lands (LOGIN_REDIRECT_URL "home").
    path("", views.home, name="home"),
    # GET: the upload page; POST: an upload from that page's form or from a script (JSON).
    path("upload/", views.upload, name="upload"),
    path("history/", views.history, name="history"),
    path("jobs/<int:pk>/", views.job_detail, name="job-detail"),
    path("jobs/<int:pk>/status.json", views.job_status, name="job-status"),
    path("jobs/<int:pk>/image", views.job_image, name="job-image"),
    path("jobs/<int:pk>/original", views.job_original, name="job-original"),
    path("jobs/<int:pk>/thumbnail.jpg", views.job_thumbnail, name="job-thumbnail"),
    path("jobs/<int:pk>/text.txt", views.job_text, name="job-text"),
    path("jobs/<int:pk>/result.json", views.job_result, name="job-result"),
    path("jobs/<int:pk>/cancel", cancel.cancel_view, name="job-cancel"),
    path("jobs/<int:pk>/run-again", cancel.run_again_view, name="job-run-again"),
    path("jobs/<int:pk>/retry-pages", cancel.retry_pages_view, name="job-retry-pages"),
    path("jobs/<int:pk>/pages/", views.job_pages, name="job-pages"),
    path("jobs/<int:pk>/pages/<int:number>/image", views.page_image, name="page-image"),
    path("jobs/<int:pk>/pages/<int:number>/pictures/<int:index>.png", pictures_views.page_picture, name="page-picture"),
    path("jobs/<int:pk>/pages/<int:number>/text.txt", views.page_text, name="page-text"),
    # The layout view: a page's elements and rendered HTML; reading a region drawn on it.
    path("jobs/<int:pk>/pages/<int:number>/layout.json", layout.page_layout, name="page-layout"),
    path("jobs/<int:pk>/region", layout.read_region, name="job-region"),
    # API tokens: make, see and revoke your own.
    path("profile/", profile.profile, name="profile"),
    path("profile/tokens/<int:pk>/revoke", profile.revoke_token, name="profile-token-revoke"),
]
