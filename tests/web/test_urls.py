"""Every page, download and API endpoint keeps its address and its name: scripts and bookmarks use
the paths, templates and code `reverse()` the names. (The websocket's address, /ws/events/, is
test_events_consumer's.)"""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, get_resolver, resolve, reverse

ADDRESSES = {
    "login": "login/",
    "logout": "logout/",
    "metrics": "metrics",
    "healthz": "healthz",
    "api-jobs": "api/v1/jobs",
    "api-job": "api/v1/jobs/<int:pk>",
    "api-job-result": "api/v1/jobs/<int:pk>/result",
    "api-job-wait": "api/v1/jobs/<int:pk>/wait",
    "api-job-cancel": "api/v1/jobs/<int:pk>/cancel",
    "api-job-retry": "api/v1/jobs/<int:pk>/retry",
    "api-job-region": "api/v1/jobs/<int:pk>/region",
    "api-job-question": "api/v1/jobs/<int:pk>/question",
    "api-gpu": "api/v1/gpu",
    "api-backend": "api/v1/backend",
    "api-schema": "api/schema/",
    "api-docs": "api/docs/",
    "api-redoc": "api/redoc/",
    "openai-chat-completions": "v1/chat/completions",
    "openai-models": "v1/models",
    "home": "",
    "upload": "upload/",
    "history": "history/",
    "job-detail": "jobs/<int:pk>/",
    "job-status": "jobs/<int:pk>/status.json",
    "job-image": "jobs/<int:pk>/image",
    "job-original": "jobs/<int:pk>/original",
    "job-thumbnail": "jobs/<int:pk>/thumbnail.jpg",
    "job-text": "jobs/<int:pk>/text.txt",
    "job-result": "jobs/<int:pk>/result.json",
    "job-cancel": "jobs/<int:pk>/cancel",
    "job-run-again": "jobs/<int:pk>/run-again",
    "job-retry-pages": "jobs/<int:pk>/retry-pages",
    "job-pages": "jobs/<int:pk>/pages/",
    "page-image": "jobs/<int:pk>/pages/<int:number>/image",
    "page-picture": "jobs/<int:pk>/pages/<int:number>/pictures/<int:index>.png",
    "page-text": "jobs/<int:pk>/pages/<int:number>/text.txt",
    "page-layout": "jobs/<int:pk>/pages/<int:number>/layout.json",
    "job-region": "jobs/<int:pk>/region",
    "job-question": "jobs/<int:pk>/question",
    "profile": "profile/",
    "profile-token-revoke": "profile/tokens/<int:pk>/revoke",
}
# Unknown addresses under these prefixes get the API's JSON 404, not the HTML one.
CATCH_ALLS = ["api/^(?P<rest>.*)$", "v1/^(?P<rest>.*)$"]
ARGS = {"pk": 12, "number": 3, "index": 1}


def named_routes() -> tuple[dict[str, str], list[str]]:
    named, unnamed = {}, []

    def walk(patterns, prefix=""):
        for p in patterns:
            if isinstance(p, URLResolver):
                if not p.namespace:  # the admin's own URLs are Django's
                    walk(p.url_patterns, prefix + str(p.pattern))
            elif isinstance(p, URLPattern):
                if p.name:
                    named[p.name] = prefix + str(p.pattern)
                else:
                    unnamed.append(prefix + str(p.pattern))

    walk(get_resolver().url_patterns)
    return named, unnamed


def test_every_page_keeps_its_address():
    named, unnamed = named_routes()
    assert named == ADDRESSES
    assert unnamed == CATCH_ALLS


def test_every_name_reverses_to_its_path_and_back():
    for name, route in ADDRESSES.items():
        kwargs = {k: v for k, v in ARGS.items() if f"<int:{k}>" in route}
        path = reverse(name, kwargs=kwargs)
        assert path == "/" + route.replace("<int:pk>", "12").replace("<int:number>", "3").replace("<int:index>", "1")
        assert resolve(path).url_name == name
