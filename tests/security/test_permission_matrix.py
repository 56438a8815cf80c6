"""Every URL the resolver knows × every kind of visitor → the answer each must get.

The routes are read from the URL resolver, so a new URL without a row here fails
`test_every_url_has_a_row`. Each row names the method and the expected outcome per role:

    anonymous  no session, no token          user      alice, who owns the objects
    other      bob, a member who does not    staff     carol, is_staff without model permissions
    superuser  root                          token     alice's API token, no session
    revoked    alice's revoked token, no session

An outcome is the status code, with "login" for a redirect to a login page. Where a page's
action answers with a redirect whether it acted or not (the job page's buttons), the row also
names the roles for which it must have acted, and the test checks the database.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.contrib.auth.models import Group, User
from django.contrib.contenttypes.models import ContentType
from django.core.files.base import ContentFile
from django.db import transaction
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone
from PIL import Image

from ocr_app.models import ApiToken, BackendSettings, GpuAction, IdempotencyKey, Job, Page

pytestmark = pytest.mark.django_db

ROLES = ("anonymous", "user", "other", "staff", "superuser", "token", "revoked")


def routes() -> list[str]:
    """Every route of the URL resolver, as written in the URLconf (admin's included)."""

    def walk(patterns, prefix=""):
        for p in patterns:
            if isinstance(p, URLResolver):
                yield from walk(p.url_patterns, prefix + str(p.pattern))
            elif isinstance(p, URLPattern):
                yield prefix + str(p.pattern)

    return list(walk(get_resolver().url_patterns))


# -- the objects every request is about ------------------------------------------------------------


@dataclass
class World:
    users: dict[str, User]
    key: str
    revoked_key: str
    job: Job  # alice's, succeeded, one page with a Picture
    queued: Job  # alice's, waiting
    failed: Job  # alice's, one page failed
    token: ApiToken
    ids: dict[str, str] = field(default_factory=dict)  # admin model label -> an object's id


def png(size=(120, 80)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, "white").save(out, "PNG")
    return out.getvalue()


PAGE_RESULT = {
    "elements": [
        {"index": 0, "category": "Text", "bbox": [5, 5, 100, 20], "text": "Hello"},
        {"index": 1, "category": "Picture", "bbox": [10, 30, 60, 70], "text": ""},
    ],
    "text": "Hello",
    "mode": "layout_all",
    "sent_size": [120, 80],
    "original_size": [120, 80],
}


def make_job(owner, state: str, name: str, page_state: str = Page.SUCCEEDED) -> Job:
    data = png()
    job = Job(
        owner=owner, original_name=name, image_format="PNG", size_bytes=len(data), width=120, height=80,
        sha256=f"{abs(hash(name)):064d}"[:64], state=state, text="Hello", result={"page": PAGE_RESULT},
        queued_at=timezone.now(),
    )  # fmt: skip
    job.upload.save("upload.png", ContentFile(data), save=False)
    job.thumbnail.save("thumb.jpg", ContentFile(data), save=False)
    job.save()
    Page.objects.create(job=job, number=1, state=page_state, text="Hello", result={"page": PAGE_RESULT})
    return job


@pytest.fixture
def world(make_user, sent_tasks) -> World:
    users = {
        "user": make_user("alice"),
        "other": make_user("bob"),
        "staff": make_user("carol", is_staff=True),
        "superuser": make_user("root", is_staff=True, is_superuser=True),
    }
    alice = users["user"]
    token, key = ApiToken.create_for(alice, "script")
    revoked, revoked_key = ApiToken.create_for(alice, "old script")
    revoked.revoke()
    world = World(
        users=users,
        key=key,
        revoked_key=revoked_key,
        job=make_job(alice, "succeeded", "scan.png"),
        queued=make_job(alice, "queued", "waiting.png", Page.PENDING),
        failed=make_job(alice, "failed", "broken.png", Page.FAILED),
        token=token,
    )
    attempt = AccessAttempt.objects.create(
        username="mallory", ip_address="10.0.0.9", user_agent="x", failures_since_start=3, attempt_time=timezone.now()
    )
    world.ids = {
        "auth/group": str(Group.objects.create(name="readers").pk),
        "auth/user": str(alice.pk),
        "axes/accessattempt": str(attempt.pk),
        "axes/accesslog": str(AccessLog.objects.create(username="alice", attempt_time=timezone.now()).pk),
        "axes/accessfailurelog": str(
            AccessFailureLog.objects.create(username="mallory", attempt_time=timezone.now()).pk
        ),
        "ocr_app/job": str(world.job.pk),
        "ocr_app/backendsettings": str(BackendSettings.load().pk),
        "ocr_app/gpuaction": str(GpuAction.objects.create(username="root", via="cli", action="free").pk),
        "ocr_app/apitoken": str(token.pk),
        "ocr_app/idempotencykey": str(IdempotencyKey.objects.create(user=alice, key="k1", request_hash="h").pk),
    }
    return world


def client_for(role: str, world: World) -> Client:
    if role == "token":
        return Client(HTTP_AUTHORIZATION=f"Bearer {world.key}")
    if role == "revoked":
        return Client(HTTP_AUTHORIZATION=f"Bearer {world.revoked_key}")
    client = Client()
    if role != "anonymous":
        client.force_login(world.users[role])
    return client


def outcome(response) -> str:
    if response.status_code in (301, 302, 303) and "login/" in response.get("Location", ""):
        return "login"
    return str(response.status_code)


# -- the rows --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    expected: tuple[str, ...]  # one outcome per role, in ROLES' order
    method: str = "get"
    path: Callable[[World], str] | None = None  # the URL to ask (default: the route with the job's ids)
    data: dict | None = None
    json: bool = False
    acted: frozenset[str] | None = None  # roles for which the action must have happened
    happened: Callable[[World], bool] | None = None
    prepare: Callable[[], None] | None = None  # sets up what the URL needs before it is asked

    @property
    def by_role(self) -> dict[str, str]:
        return dict(zip(ROLES, self.expected, strict=True))


def row(expected: str, **kwargs) -> Row:
    """`expected`: the outcomes for anonymous, user, other, staff, superuser, token, revoked."""
    return Row(tuple(expected.split()), **kwargs)


def choose_model(repo: str) -> None:
    cfg = BackendSettings.load()
    cfg.model = repo
    cfg.save()


def state_of(attr: str, state: str) -> Callable[[World], bool]:
    return lambda w: Job.objects.get(pk=getattr(w, attr).pk).state == state


def job_path(template: str, attr: str = "job") -> Callable[[World], str]:
    return lambda w: template.format(pk=getattr(w, attr).pk)


EVERY_MEMBER_PAGE = "login 200 200 200 200 login login"
EVERY_MEMBER_API = "401 200 200 200 200 200 401"
MEMBERS_ONLY_REDIRECT = "login 302 302 302 302 login login"
ADMIN_ONLY = "login login login 200 200 login login"
ADMIN_MODEL = "login login login 403 200 login login"  # carol is staff without the model's permissions
NOT_ADDABLE = "login login login 403 403 login login"
OWNER_OR_STAFF = frozenset({"user", "staff", "superuser"})

ROWS: dict[str, Row] = {
    # Logging in and out: open to everyone.
    "login/": row("200 200 200 200 200 200 200"),
    "logout/": row("login login login login login login login", method="post"),
    # The pages: every member sees every job (the history is the team's); tokens are for the API.
    "": row(EVERY_MEMBER_PAGE),
    "upload/": row(EVERY_MEMBER_PAGE),
    "history/": row(EVERY_MEMBER_PAGE),
    "profile/": row(EVERY_MEMBER_PAGE),
    "profile/tokens/<int:pk>/revoke": row(
        "login 302 404 404 404 login login", method="post", path=lambda w: f"/profile/tokens/{w.token.pk}/revoke",
        acted=frozenset({"user"}), happened=lambda w: ApiToken.objects.get(pk=w.token.pk).revoked_at is not None,
    ),  # fmt: skip
    "jobs/<int:pk>/": row(EVERY_MEMBER_PAGE),
    "jobs/<int:pk>/status.json": row(EVERY_MEMBER_PAGE),
    "jobs/<int:pk>/image": row(EVERY_MEMBER_PAGE),
    "jobs/<int:pk>/original": row(EVERY_MEMBER_PAGE),
    "jobs/<int:pk>/thumbnail.jpg": row(EVERY_MEMBER_PAGE),
    "jobs/<int:pk>/text.txt": row(EVERY_MEMBER_PAGE),
    "jobs/<int:pk>/result.json": row(EVERY_MEMBER_PAGE),
    "jobs/<int:pk>/pages/": row(EVERY_MEMBER_PAGE),
    "jobs/<int:pk>/pages/<int:number>/image": row(EVERY_MEMBER_PAGE),
    "jobs/<int:pk>/pages/<int:number>/pictures/<int:index>.png": row(
        EVERY_MEMBER_PAGE, path=job_path("/jobs/{pk}/pages/1/pictures/1.png")
    ),
    "jobs/<int:pk>/pages/<int:number>/text.txt": row(EVERY_MEMBER_PAGE),
    "jobs/<int:pk>/pages/<int:number>/layout.json": row(EVERY_MEMBER_PAGE),
    # Reading a region makes a new job of the one who asks: any member may.
    "jobs/<int:pk>/region": row(
        "login 201 201 201 201 login login", method="post", json=True, data={"page": 1, "bbox": [0, 0, 40, 40]}
    ),
    # So does asking a question about a page (with a model that answers questions).
    "jobs/<int:pk>/question": row(
        "login 201 201 201 201 login login", method="post", json=True, data={"page": 1, "question": "Total?"},
        prepare=lambda: choose_model("rednote-hilab/dots.mocr"),
    ),
    # The job page's buttons: the owner or staff act; anyone else gets the page back with an error.
    "jobs/<int:pk>/cancel": row(
        MEMBERS_ONLY_REDIRECT, method="post", path=job_path("/jobs/{pk}/cancel", "queued"),
        acted=OWNER_OR_STAFF, happened=state_of("queued", "cancelled"),
    ),  # fmt: skip
    "jobs/<int:pk>/run-again": row(
        MEMBERS_ONLY_REDIRECT, method="post", acted=OWNER_OR_STAFF, happened=state_of("job", "queued")
    ),
    "jobs/<int:pk>/retry-pages": row(
        MEMBERS_ONLY_REDIRECT, method="post", path=job_path("/jobs/{pk}/retry-pages", "failed"),
        acted=OWNER_OR_STAFF, happened=state_of("failed", "queued"),
    ),  # fmt: skip
    # The API: a session or a token.
    "api/v1/jobs": row(EVERY_MEMBER_API),
    "api/v1/jobs/<int:pk>": row(EVERY_MEMBER_API),
    "api/v1/jobs/<int:pk>/result": row(EVERY_MEMBER_API, path=job_path("/api/v1/jobs/{pk}/result?format=txt")),
    "api/v1/jobs/<int:pk>/wait": row(EVERY_MEMBER_API, path=job_path("/api/v1/jobs/{pk}/wait?timeout=0")),
    "api/v1/jobs/<int:pk>/cancel": row(
        "401 200 403 200 200 200 401", method="post", path=job_path("/api/v1/jobs/{pk}/cancel", "queued"),
        acted=frozenset({"user", "staff", "superuser", "token"}), happened=state_of("queued", "cancelled"),
    ),  # fmt: skip
    "api/v1/jobs/<int:pk>/retry": row(
        "401 200 403 200 200 200 401", method="post",
        acted=frozenset({"user", "staff", "superuser", "token"}), happened=state_of("job", "queued"),
    ),  # fmt: skip
    "api/v1/jobs/<int:pk>/region": row(
        "401 201 201 201 201 201 401", method="post", json=True, data={"page": 1, "bbox": [0, 0, 40, 40]}
    ),
    "api/v1/jobs/<int:pk>/question": row(
        "401 201 201 201 201 201 401", method="post", json=True, data={"page": 1, "question": "Total?"},
        prepare=lambda: choose_model("rednote-hilab/dots.mocr"),
    ),
    "api/v1/gpu": row(EVERY_MEMBER_API),
    "api/v1/backend": row(EVERY_MEMBER_API),
    "api/schema/": row(EVERY_MEMBER_API),
    "api/docs/": row(EVERY_MEMBER_PAGE),
    "api/redoc/": row(EVERY_MEMBER_PAGE),
    "api/^(?P<rest>.*)$": row("401 404 404 404 404 404 401", path=lambda w: "/api/v1/no-such-thing"),
    # The OpenAI-compatible endpoint: tokens (a body that is not a request is refused after the token check).
    "v1/chat/completions": row("401 401 401 401 401 400 401", method="post", json=True, data={}),
    "v1/models": row("401 401 401 401 401 200 401"),
    "v1/^(?P<rest>.*)$": row("401 401 401 401 401 404 401", path=lambda w: "/v1/no-such-thing"),
    # Monitoring: from this machine (the test client's address), with no login.
    "metrics": row("200 200 200 200 200 200 200"),
    "healthz": row("200 200 200 200 200 200 200"),
    # The admin.
    "admin/": row(ADMIN_ONLY),
    "admin/login/": row("200 200 200 302 302 200 200"),
    # Logs staff out; a member who is not staff is sent back to the admin (and from there to a login).
    "admin/logout/": row("login 302 302 login login login login", method="post"),
    "admin/password_change/": row(ADMIN_ONLY),
    "admin/password_change/done/": row(ADMIN_ONLY),
    "admin/autocomplete/": row("login login login 403 403 login login"),
    "admin/jsi18n/": row(ADMIN_ONLY),
    "admin/r/<path:content_type_id>/<path:object_id>/": row(
        "login login login 302 302 login login",
        path=lambda w: f"/admin/r/{ContentType.objects.get_for_model(Job).pk}/{w.job.pk}/",
    ),
    "admin/^(?P<app_label>auth|axes|ocr_app)/$": row(
        "login login login 404 200 login login", path=lambda w: "/admin/ocr_app/"
    ),
    "admin/(?P<url>.*)$": row("login login login 404 404 login login", path=lambda w: "/admin/no/such/page/"),
}

# Every model in the admin: (can add, can delete). Every change page shows, read-only where changing is off.
ADMIN_MODELS = {
    "auth/group": (True, True),
    "auth/user": (True, True),
    "axes/accessattempt": (False, True),  # deleting an attempt lifts a lock-out
    "axes/accesslog": (False, True),
    "axes/accessfailurelog": (False, True),
    "ocr_app/job": (False, True),
    "ocr_app/backendsettings": (False, False),
    "ocr_app/gpuaction": (False, False),
    "ocr_app/apitoken": (False, True),
    "ocr_app/idempotencykey": (False, True),
}
for model, (can_add, can_delete) in ADMIN_MODELS.items():
    # The one row of backend settings: its list is its page.
    ROWS[f"admin/{model}/"] = row(
        "login login login 403 302 login login" if model == "ocr_app/backendsettings" else ADMIN_MODEL
    )
    ROWS[f"admin/{model}/add/"] = row(ADMIN_MODEL if can_add else NOT_ADDABLE)
    ROWS[f"admin/{model}/<path:object_id>/history/"] = row(
        ADMIN_MODEL, path=lambda w, m=model: f"/admin/{m}/{w.ids[m]}/history/"
    )
    ROWS[f"admin/{model}/<path:object_id>/delete/"] = row(
        ADMIN_MODEL if can_delete else NOT_ADDABLE, path=lambda w, m=model: f"/admin/{m}/{w.ids[m]}/delete/"
    )
    ROWS[f"admin/{model}/<path:object_id>/change/"] = row(
        ADMIN_MODEL, path=lambda w, m=model: f"/admin/{m}/{w.ids[m]}/change/"
    )
    ROWS[f"admin/{model}/<path:object_id>/"] = row(
        "login login login 302 302 login login", path=lambda w, m=model: f"/admin/{m}/{w.ids[m]}/"
    )
ROWS["admin/auth/user/<id>/password/"] = row(
    ADMIN_MODEL, path=lambda w: f"/admin/auth/user/{w.ids['auth/user']}/password/"
)
ROWS["admin/ocr_app/gpuaction/free/"] = row(ADMIN_ONLY)
# Stopping another container: superusers only (this machine has no GPU: the superuser is told
# the container holds no GPU memory and sent back to the page).
ROWS["admin/ocr_app/gpuaction/stop/"] = row(
    "login login login 403 302 login login", method="post", data={"container": "jupyter-alice"}
)

PAIRS = len(ROWS) * len(ROLES)


def default_path(route: str, world: World) -> str:
    path = "/" + route
    return (
        path.replace("<int:pk>", str(world.job.pk)).replace("<int:number>", "1").replace("<int:index>", "0")
    )


def test_every_url_has_a_row():
    known = routes()
    missing = [r for r in known if r not in ROWS]
    stale = [r for r in ROWS if r not in known]
    assert not missing, f"URLs without a row in the permission matrix: {missing}"
    assert not stale, f"rows for URLs that no longer exist: {stale}"
    print(f"\npermission matrix: {len(ROWS)} URL patterns × {len(ROLES)} roles = {PAIRS} pairs")


@pytest.mark.parametrize("route", sorted(ROWS))
def test_each_role_gets_the_expected_answer(route, world, monkeypatch):
    spec = ROWS[route]
    path = spec.path(world) if spec.path else default_path(route, world)
    seen, acted = {}, set()
    if spec.prepare:
        spec.prepare()
    for role in ROLES:
        with transaction.atomic():
            client = client_for(role, world)
            send = getattr(client, spec.method)
            if spec.json:
                response = send(path, json.dumps(spec.data), content_type="application/json")
            else:
                response = send(path, spec.data or {})
            seen[role] = outcome(response)
            if spec.happened and spec.happened(world):
                acted.add(role)
            transaction.set_rollback(True)
    assert seen == spec.by_role, f"{spec.method.upper()} {path}"
    if spec.acted is not None:
        assert acted == set(spec.acted), f"{spec.method.upper()} {path} acted for {sorted(acted)}"
