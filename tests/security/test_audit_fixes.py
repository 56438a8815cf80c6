"""What an audit of the code found, each with its fix: Markdown downloads written as text, the
backend's model and server a superuser's decision and held to the model directory and the allowed
hosts, secret files private from their first byte, API tokens that expire and say where they were
used, a token page no cache keeps."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.contrib.auth.password_validation import validate_password
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone
from markdown_it import MarkdownIt

from core.dots.parse import parse_output
from core.dots.render import markdown_text, to_markdown, unsafe_links
from dashboard.private_files import create_private_file, write_private_file
from ocr_app import backendconfig
from ocr_app.models import ApiToken, BackendSettings, Job, Page
from tests.security.browser.test_hostile_output import HOSTILE_OUTPUT

ROOT = Path(__file__).resolve().parents[2]

# -- Markdown downloads ------------------------------------------------------------------------------

HOSTILE_TEXT = [
    {"bbox": [0, 0, 10, 10], "category": "Text", "text": "Hi <script>alert(1)</script> <img src=x onerror=alert(2)>"},
    {"bbox": [0, 10, 10, 20], "category": "Text", "text": "[a](javascript:alert(3)) ![b](data:text/html,<b>x</b>)"},
    {"bbox": [0, 20, 10, 30], "category": "Section-header", "text": "## <iframe src=//evil.example>"},
    {"bbox": [0, 30, 10, 40], "category": "Table", "text": "<table><tr><td onclick=alert(4)>1</td></tr></table>"},
    {"bbox": [0, 40, 10, 50], "category": "Formula", "text": "$$a<b \\href{javascript:alert(5)}{x}$$"},
    {"bbox": [0, 50, 10, 60], "category": "Text", "text": "[ok](https://example.org/doc) <https://example.org>"},
]


def test_model_html_and_script_links_in_the_markdown_are_written_as_text():
    import json

    page = parse_output(json.dumps(HOSTILE_TEXT), "layout_all", sent_size=(10, 60), original_size=(10, 60))
    md = to_markdown(page)

    assert "<script" not in md and "<img" not in md and "<iframe" not in md and "onclick" not in md
    assert "&lt;script>alert(1)&lt;/script>" in md  # a Markdown viewer shows it as written
    assert "](javascript:" not in md and "](data:text/html" not in md
    assert "[a]\\(javascript:alert(3))" in md
    assert "<table><tr><td>1</td></tr></table>" in md  # tables stay tables, sanitized as in the HTML export
    assert "$$\na< b" in md  # TeX keeps its "<"; no tag can start there
    assert "[ok](https://example.org/doc)" in md, "ordinary links are kept"


@pytest.mark.parametrize(
    "text",
    [
        "[x](JaVaScRiPt:alert(1))",
        "[x](&#x6A;avascript:alert(1))",
        "[x](<javascript:alert(1)>)",
        "[x]( javascript:alert(1))",
        "[x](java\tscript:alert(1))",
        "[x]: javascript:alert(1)",
        "   [x]: vbscript:msgbox(1)",
        "<javascript:alert(1)>",
        "![x](data:image/svg+xml;base64,PHN2Zz4=)",
    ],
)
def test_no_spelling_of_a_script_link_survives(text):
    out = markdown_text(text)
    assert "](javascript" not in out.lower() and "](&#x6a;" not in out.lower()
    assert "](<" not in out and "<javascript" not in out and "](data:image/svg" not in out
    assert not out.lstrip().startswith("[x]:"), out


def links_a_viewer_follows(markdown: str) -> list[str]:
    """Every href and src of the HTML a CommonMark viewer (one that follows any link) makes of it."""
    viewer = MarkdownIt("commonmark", {"html": True})
    viewer.validateLink = lambda url: True
    return re.findall(r'(?:href|src)="([^"]*)"', viewer.render(markdown))


def script_links(urls: list[str]) -> list[str]:
    allowed = ("http:", "https:", "mailto:", "data:image/png;base64,", "data:image/jpeg;base64,")
    return [u for u in urls if re.match(r"[a-z][a-z0-9+.-]*:", u.lower()) and not u.lower().startswith(allowed)]


def hostile_document():
    elements = [
        {"bbox": [0, 10 * n, 10, 10 * n + 10], "category": category, "text": text}
        for n, (_key, category, text) in enumerate(HOSTILE_OUTPUT)
        if category != "Picture"
    ]
    return parse_output(json.dumps(elements), "layout_all", sent_size=(10, 900), original_size=(10, 900))


def test_no_hostile_output_leaves_a_link_a_markdown_viewer_would_follow_to_a_script():
    md = to_markdown(hostile_document())
    assert script_links(links_a_viewer_follows(md)) == []
    assert unsafe_links(md) == []
    # Each hostile output alone too: a definition and its use, split over elements or not.
    for key, category, text in HOSTILE_OUTPUT:
        element = {"bbox": [0, 0, 10, 10], "category": category, "text": text}
        page = parse_output(json.dumps([element]), "layout_all", sent_size=(10, 10), original_size=(10, 10))
        assert script_links(links_a_viewer_follows(to_markdown(page))) == [], key


def test_a_definition_split_over_two_elements_is_caught_in_the_whole_document():
    elements = [
        {"bbox": [0, 0, 10, 10], "category": "List-item", "text": "[x"},
        {"bbox": [0, 10, 10, 20], "category": "List-item", "text": "]: javascript:alert(1)"},
        {"bbox": [0, 20, 10, 30], "category": "Text", "text": "[x] and [ok](https://example.org/)"},
    ]
    page = parse_output(json.dumps(elements), "layout_all", sent_size=(10, 30), original_size=(10, 30))
    md = to_markdown(page)
    assert script_links(links_a_viewer_follows(md)) == []
    assert "\\[x" in md and "\\]: javascript" in md  # written out, every bracket escaped


def test_a_clean_document_keeps_its_links():
    elements = [{"bbox": [0, 0, 10, 10], "category": "Text", "text": "See [the guide](https://example.org/g) [1]."}]
    page = parse_output(json.dumps(elements), "layout_all", sent_size=(10, 10), original_size=(10, 10))
    md = to_markdown(page)
    assert md == "See [the guide](https://example.org/g) [1].\n"
    assert links_a_viewer_follows(md) == ["https://example.org/g"]


@pytest.mark.django_db
def test_the_markdown_downloads_of_the_api_are_the_safe_ones(alice):
    import json

    page = parse_output(json.dumps(HOSTILE_TEXT), "layout_all", sent_size=(10, 60), original_size=(10, 60)).to_dict()
    job = Job.objects.create(owner=alice, original_name="a.png", image_format="PNG", size_bytes=1, width=10,
                             height=60, sha256="c" * 64, state="succeeded", text="x", result={"page": page})
    Page.objects.create(job=job, number=1, state=Page.SUCCEEDED, text="x", result={"page": page})
    client = Client()
    client.force_login(alice)
    for fmt in ("md", "md_nohf"):
        response = client.get(f"/api/v1/jobs/{job.pk}/result?format={fmt}")
        body = response.content.decode()
        assert response.status_code == 200 and response["Content-Type"].startswith("text/markdown"), fmt
        assert "<script" not in body and "Hi &lt;script>alert(1)&lt;/script>" in body, fmt  # shown, as text
        assert script_links(links_a_viewer_follows(body)) == [], fmt
        assert "https://example.org/doc" in links_a_viewer_follows(body), "the ordinary link still works"


# -- the backend settings --------------------------------------------------------------------------


def backend_form(**changes) -> dict:
    cfg = BackendSettings.load()
    data = {f: getattr(cfg, f) for f in ("backend", "model", "revision", "vllm_url", "reserve_mib", "reserve_percent",
                                         "max_pixels", "max_new_tokens")}  # fmt: skip
    data.update({"allow_vllm": "on", "allow_fp8": "on"})
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


@pytest.fixture
def staff_with_permission(make_user):
    BackendSettings.load()  # the one row
    carol = make_user("carol", is_staff=True)
    carol.user_permissions.add(*Permission.objects.filter(codename__in=["change_backendsettings",
                                                                       "view_backendsettings"]))  # fmt: skip
    client = Client()
    client.force_login(carol)
    return client


@pytest.mark.django_db
def test_staff_may_change_the_limits_but_not_the_model_or_the_vllm_server(staff_with_permission):
    page = staff_with_permission.get("/admin/ocr_app/backendsettings/1/change/").content.decode()
    assert 'name="model"' not in page and 'name="vllm_url"' not in page and 'name="revision"' not in page
    assert 'name="reserve_mib"' in page

    response = staff_with_permission.post("/admin/ocr_app/backendsettings/1/change/", backend_form(
        model="attacker/dots", revision="0" * 40, vllm_url="http://evil.example:8000", reserve_mib=1024))

    assert response.status_code == 302
    cfg = BackendSettings.load()
    assert cfg.reserve_mib == 1024
    assert (cfg.model, cfg.revision, cfg.vllm_url) == ("rednote-hilab/dots.ocr", "", "")


@pytest.mark.django_db
def test_a_superuser_sets_a_model_folder_only_inside_the_model_directory(make_user, settings, tmp_path):
    root = Client()
    root.force_login(make_user("root", is_staff=True, is_superuser=True))
    settings.OCRDASH_MODEL_DIR = tmp_path / "models"
    inside = tmp_path / "models" / "dots"
    inside.mkdir(parents=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (tmp_path / "models" / "sneaky").symlink_to(outside)

    for folder in (outside, tmp_path / "models" / ".." / "elsewhere", tmp_path / "models" / "sneaky", Path("/etc")):
        response = root.post("/admin/ocr_app/backendsettings/1/change/", backend_form(model=str(folder)))
        assert response.status_code == 200, folder
        assert "is outside the model directory" in response.content.decode()
    assert BackendSettings.load().model == "rednote-hilab/dots.ocr"

    response = root.post("/admin/ocr_app/backendsettings/1/change/", backend_form(model=str(inside)))
    assert response.status_code == 302
    assert BackendSettings.load().model == str(inside)


@pytest.mark.django_db
def test_the_worker_refuses_a_model_folder_outside_the_directory_whatever_the_row_says(settings, tmp_path):
    settings.OCRDASH_MODEL_DIR = tmp_path / "models"
    cfg = BackendSettings(model="/opt/someone-elses-model", allow_vllm=True)  # written past the admin's form

    assert "outside the model directory" in backendconfig.model_missing(cfg)
    assert "outside the model directory" in backendconfig.vllm_unavailable(cfg)


@pytest.mark.django_db
def test_the_vllm_server_must_be_an_allowed_host_when_a_list_is_set(make_user, settings):
    root = Client()
    root.force_login(make_user("root", is_staff=True, is_superuser=True))
    settings.VLLM_ALLOWED_HOSTS = ["vllm", "gpu-host.lan"]

    response = root.post("/admin/ocr_app/backendsettings/1/change/", backend_form(vllm_url="http://10.0.0.5:8000"))
    assert "not in OCRDASH_VLLM_ALLOWED_HOSTS (vllm, gpu-host.lan)" in response.content.decode()
    response = root.post("/admin/ocr_app/backendsettings/1/change/", backend_form(vllm_url="http://gpu-host.lan:8000"))
    assert response.status_code == 302

    # A row that names another host anyway is not used by the worker.
    cfg = BackendSettings(vllm_url="http://metadata.internal/", allow_vllm=True)
    assert "not in OCRDASH_VLLM_ALLOWED_HOSTS" in backendconfig.vllm_unavailable(cfg)
    settings.VLLM_ALLOWED_HOSTS = []
    assert backendconfig.vllm_unavailable(cfg) is None


# -- files only the server reads -------------------------------------------------------------------


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_private_file_is_0600_from_its_first_byte_even_under_a_loose_umask(tmp_path):
    old = os.umask(0)
    try:
        created = create_private_file(tmp_path / "secret_key", "first")
        again = create_private_file(tmp_path / "secret_key", "second")  # a second process, a moment later
        write_private_file(tmp_path / "note.txt", "password: x\n")
    finally:
        os.umask(old)
    assert (created, again) == ("first", "first"), "the first key stays; the second process reads it"
    assert mode_of(tmp_path / "secret_key") == 0o600 and mode_of(tmp_path / "note.txt") == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["note.txt", "secret_key"], "no temporary file is left"


def test_the_generated_secret_key_file_is_private(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCRDASH_")}
    env.update(OCRDASH_DATA_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="dashboard.settings")
    code = "import django; django.setup(); from django.conf import settings; print(len(settings.SECRET_KEY))"
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert mode_of(tmp_path / "secret_key") == 0o600
    assert int(result.stdout.split()[-1]) >= 50


@pytest.mark.django_db
def test_the_first_admin_s_password_passes_the_validators_and_is_saved_privately(settings, tmp_path):
    settings.DATA_DIR = tmp_path
    settings.ADMIN_PASSWORD = None
    call_command("ensure_admin")

    note = tmp_path / "initial-admin-password.txt"
    assert mode_of(note) == 0o600
    password = note.read_text().split("password: ")[1].strip()
    from django.contrib.auth.models import User

    admin = User.objects.get(username=settings.ADMIN_USERNAME)
    validate_password(password, admin)
    assert admin.check_password(password) and admin.is_superuser


@pytest.mark.django_db
def test_a_weak_admin_password_in_the_settings_is_refused_with_the_reason(settings, tmp_path):
    settings.DATA_DIR = tmp_path
    settings.ADMIN_PASSWORD = "admin123"
    with pytest.raises(CommandError, match="OCRDASH_ADMIN_PASSWORD is too weak.*too common"):
        call_command("ensure_admin")


# -- API tokens ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_page_that_shows_a_new_key_is_never_cached(alice_client):
    response = alice_client.post("/profile/", {"name": "nightly", "expires": "30"})

    assert "ocrd_" in response.content.decode()
    assert "no-store" in response["Cache-Control"] and "private" in response["Cache-Control"]
    assert response.status_code == 200


@pytest.mark.django_db
def test_a_token_expires_when_its_owner_chose_and_says_so(alice, alice_client):
    alice_client.post("/profile/", {"name": "nightly", "expires": "30"})
    token = ApiToken.objects.get(name="nightly")
    assert timedelta(days=29, hours=23) < token.expires_at - timezone.now() <= timedelta(days=30)
    forever = ApiToken.create_for(alice, "forever")[0]
    assert forever.expires_at is None

    key = ApiToken.create_for(alice, "old", expires_at=timezone.now() - timedelta(minutes=1))[1]
    response = Client(HTTP_AUTHORIZATION=f"Bearer {key}").get("/api/v1/jobs")
    assert response.status_code == 401
    assert "This API token expired on" in response.json()["error"]
    assert "expired" in alice_client.get("/profile/").content.decode()


@pytest.mark.django_db
def test_the_profile_shows_when_and_from_where_each_token_was_last_used(alice, alice_client):
    key = ApiToken.create_for(alice, "script")[1]
    Client(REMOTE_ADDR="192.0.2.44", HTTP_AUTHORIZATION=f"Bearer {key}").get("/api/v1/jobs")

    token = ApiToken.objects.get(name="script")
    assert token.last_used_at is not None and token.last_used_from == "192.0.2.44"
    assert "from 192.0.2.44" in alice_client.get("/profile/").content.decode()
