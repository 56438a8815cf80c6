"""The upload page (/upload/): the upload form with its limits, the team's queue, and the user's recent jobs."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from core import languages

pytestmark = pytest.mark.django_db


def queue_rows(page: str) -> list[tuple[str, str, str]]:
    """(number or ▶, file name, owner) for each row of the queue panel."""
    table = re.search(r'<table class="jobs compact" id="queue">.*?</table>', page, re.S).group(0)
    row = r'<tr data-job-id="\d+"[^>]*><td>([^<]*)</td><td><a [^>]*>([^<]*)</a></td><td>([^<]*)</td>'
    return re.findall(row, table)


def test_it_states_the_upload_limits_from_settings(alice_client, settings):
    settings.MAX_UPLOAD_BYTES = 3 * 1024 * 1024
    settings.MAX_FILES_PER_UPLOAD = 7
    settings.MAX_IMAGE_PIXELS = 12_000_000
    settings.MAX_PDF_PAGES = 9

    page = alice_client.get("/upload/").content.decode()

    assert (
        "up to 3.0 MB and 12,000,000 pixels each · PDFs and multi-page TIFFs up to 9 pages, read page by page · "
        "7 files at once"
    ) in page


def test_it_offers_every_language_with_what_it_reads(alice_client, settings):
    page = alice_client.get("/upload/").content.decode()

    for lang in languages.all_languages():
        assert f'<option value="{lang.code}" data-reads="{lang.reads}"' in page
    assert f'<option value="{settings.OCRDASH_OCR_LANGUAGE}" ' in page
    assert re.search(rf'value="{settings.OCRDASH_OCR_LANGUAGE}"[^>]*selected', page)


def test_it_shows_the_team_queue_in_order_with_owners(alice_client, make_job, bob):
    now = timezone.now()
    make_job(name="running.png", owner=bob, state="running", created_at=now - timedelta(minutes=9))
    make_job(name="later.png", created_at=now - timedelta(minutes=1))
    make_job(name="sooner.png", owner=bob, created_at=now - timedelta(minutes=5))
    make_job(name="done.png", state="succeeded", created_at=now - timedelta(minutes=7))

    page = alice_client.get("/upload/").content.decode()

    assert queue_rows(page) == [
        ("▶", "running.png", "bob"),
        ("1", "sooner.png", "bob"),
        ("2", "later.png", "alice"),
    ]


def test_it_lists_only_the_users_own_recent_jobs_with_their_place(alice_client, make_job, bob):
    now = timezone.now()
    make_job(name="bobs.png", owner=bob, created_at=now - timedelta(minutes=5))
    mine = make_job(name="mine.png", created_at=now)

    page = alice_client.get("/upload/").content.decode()

    my_jobs = re.search(r'<table class="jobs" id="my-jobs">.*?</table>', page, re.S).group(0)
    assert "mine.png" in my_jobs
    assert "bobs.png" not in my_jobs
    assert "#2 in queue" in my_jobs
    script = re.search(r'<script id="initial-jobs" type="application/json">(.*?)</script>', page)
    initial = json.loads(script.group(1))
    assert [(j["id"], j["queue_position"]) for j in initial] == [(mine.pk, 2)]


def test_it_runs_the_same_few_queries_however_many_jobs(alice_client, make_jobs, make_user):
    owners = [make_user(f"user{i}") for i in range(4)]
    alice = alice_client.get("/upload/").wsgi_request.user
    make_jobs(2, owners=[alice, *owners])
    make_jobs(1, owners=[alice], state="running")
    with CaptureQueriesContext(connection) as few:
        alice_client.get("/upload/")

    make_jobs(40, owners=[alice, *owners])
    make_jobs(2, owners=owners, state="running")
    with CaptureQueriesContext(connection) as many:
        response = alice_client.get("/upload/")

    assert response.status_code == 200
    assert len(many) == len(few)
