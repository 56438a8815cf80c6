"""/history/: the team's jobs, newest first, paginated, searchable and filterable."""

from __future__ import annotations

import html
import re
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

pytestmark = pytest.mark.django_db


def row_names(response) -> list[str]:
    return re.findall(r'class="name">([^<]+)</a>', response.content.decode())


def pager_links(response) -> dict[str, dict[str, list[str]]]:
    """The pager's links by their label, each as its parsed query string."""
    nav = re.search(r'<nav class="pager".*?</nav>', response.content.decode(), re.S)
    assert nav, "no pager on the page"
    links = re.findall(r'<a href="([^"]+)">([^<]+)</a>', nav.group(0))
    return {html.unescape(label): parse_qs(urlsplit(html.unescape(href)).query) for href, label in links}


def test_it_lists_jobs_newest_first(alice_client, make_jobs):
    make_jobs(3)

    response = alice_client.get("/history/")

    assert response.status_code == 200
    assert row_names(response) == ["page-002.png", "page-001.png", "page-000.png"]
    assert "3 jobs" in response.content.decode()


def test_it_breaks_a_tie_in_time_by_id(alice_client, make_job):
    from django.utils import timezone

    now = timezone.now()
    make_job(name="first.png", created_at=now)
    make_job(name="second.png", created_at=now)

    assert row_names(alice_client.get("/history/")) == ["second.png", "first.png"]


def test_it_shows_fifty_jobs_per_page(alice_client, make_jobs):
    make_jobs(60)

    first = alice_client.get("/history/")
    second = alice_client.get("/history/?page=2")

    assert len(row_names(first)) == 50
    assert row_names(first)[0] == "page-059.png"
    assert row_names(second) == [f"page-{i:03d}.png" for i in range(9, -1, -1)]
    assert "Page 1 of 2" in first.content.decode()


def test_it_takes_the_page_size_from_settings(alice_client, make_jobs, settings):
    settings.HISTORY_PAGE_SIZE = 4
    make_jobs(10)

    response = alice_client.get("/history/?page=3")

    assert row_names(response) == ["page-001.png", "page-000.png"]
    assert "Page 3 of 3" in response.content.decode()


def test_it_shows_the_last_page_for_a_page_number_past_the_end(alice_client, make_jobs, settings):
    settings.HISTORY_PAGE_SIZE = 4
    make_jobs(6)

    for page in ["9", "nonsense"]:
        response = alice_client.get(f"/history/?page={page}")
        assert response.status_code == 200
    assert row_names(alice_client.get("/history/?page=9")) == ["page-001.png", "page-000.png"]
    assert row_names(alice_client.get("/history/?page=nonsense"))[0] == "page-005.png"


def test_it_finds_a_job_by_its_file_name(alice_client, make_job):
    make_job(name="Invoice-March.png")
    make_job(name="holiday.jpg")

    response = alice_client.get("/history/?q=invoice")

    assert row_names(response) == ["Invoice-March.png"]


def test_it_finds_a_job_by_its_recognized_text(alice_client, make_job):
    # Past the 200 characters of the preview: the search reads the whole text.
    make_job(name="a.png", text="x" * 500 + " quarterly revenue grew", text_preview="x" * 200)
    make_job(name="b.png", text="nothing to see")

    response = alice_client.get("/history/?q=Revenue")

    assert row_names(response) == ["a.png"]


def test_it_says_when_nothing_matches(alice_client, make_job):
    make_job(name="a.png")

    response = alice_client.get("/history/?q=zebra")

    assert row_names(response) == []
    assert "No jobs match these filters." in response.content.decode()


def test_it_filters_by_state(alice_client, make_job):
    make_job(name="done.png", state="succeeded")
    make_job(name="broken.png", state="failed")
    make_job(name="waiting.png")

    assert row_names(alice_client.get("/history/?state=failed")) == ["broken.png"]
    assert row_names(alice_client.get("/history/?state=queued")) == ["waiting.png"]


def test_it_filters_by_backend(alice_client, make_job):
    make_job(name="cpu.png", state="succeeded", backend="rapidocr")
    make_job(name="gpu.png", state="succeeded", backend="vllm")

    assert row_names(alice_client.get("/history/?backend=vllm")) == ["gpu.png"]


def test_it_filters_by_owner(alice_client, make_job, bob):
    make_job(name="alices.png")
    make_job(name="bobs.png", owner=bob)

    assert row_names(alice_client.get("/history/?owner=bob")) == ["bobs.png"]


def test_it_combines_filters(alice_client, make_job, bob):
    make_job(name="report-1.png", owner=bob, state="succeeded", backend="rapidocr")
    make_job(name="report-2.png", owner=bob, state="failed", backend="rapidocr")
    make_job(name="report-3.png", state="succeeded", backend="rapidocr")
    make_job(name="photo.png", owner=bob, state="succeeded", backend="rapidocr")

    response = alice_client.get("/history/?q=report&state=succeeded&backend=rapidocr&owner=bob")

    assert row_names(response) == ["report-1.png"]


def test_it_keeps_the_filters_in_the_pagination_links(alice_client, make_jobs, make_job, bob, settings):
    settings.HISTORY_PAGE_SIZE = 2
    make_jobs(7, owners=[bob], state="failed", backend="vllm")
    make_job(name="page-other.png", owner=bob, state="succeeded", backend="vllm")

    response = alice_client.get("/history/?q=page&state=failed&backend=vllm&owner=bob&page=2")

    links = pager_links(response)
    assert set(links) == {"« Newest", "‹ Newer", "Older ›", "Oldest »"}
    filters = {"q": ["page"], "state": ["failed"], "backend": ["vllm"], "owner": ["bob"]}
    assert links["« Newest"] == {**filters, "page": ["1"]}
    assert links["‹ Newer"] == {**filters, "page": ["1"]}
    assert links["Older ›"] == {**filters, "page": ["3"]}
    assert links["Oldest »"] == {**filters, "page": ["4"]}
    assert row_names(response) == ["page-004.png", "page-003.png"]


def test_it_keeps_the_filters_in_the_form(alice_client, make_job):
    make_job(name="a.png")

    page = alice_client.get("/history/?q=a+%26+b&state=failed&owner=bob").content.decode()

    assert 'name="q" value="a &amp; b"' in page
    assert '<option value="failed" selected>' in page
    assert 'name="owner" value="bob"' in page


def test_it_escapes_file_names(alice_client, make_job):
    make_job(name="<script>alert(1)</script>.png")

    page = alice_client.get("/history/").content.decode()

    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.png" in page


def test_it_runs_the_same_few_queries_for_many_jobs_and_owners(
    alice_client, make_jobs, make_user, django_assert_max_num_queries
):
    owners = [make_user(f"user{i}") for i in range(5)]
    make_jobs(5, owners=owners)
    with CaptureQueriesContext(connection) as few:
        assert len(row_names(alice_client.get("/history/"))) == 5
    assert len(few) <= 6

    make_jobs(55, owners=owners)
    with django_assert_max_num_queries(len(few)):
        response = alice_client.get("/history/")
    assert len(row_names(response)) == 50
    assert all(f"<td>user{i}</td>" in response.content.decode() for i in range(5))


def test_it_loads_no_whole_texts_for_the_list(alice_client, make_job):
    make_job(name="a.png", text="the full text " * 1000, text_preview="the full text")

    with CaptureQueriesContext(connection) as queries:
        alice_client.get("/history/")

    job_selects = [q["sql"] for q in queries if 'FROM "ocr_app_job"' in q["sql"] and "COUNT" not in q["sql"]]
    assert job_selects
    whole = re.compile(r'"ocr_app_job"\."(text|result)"[ ,]')
    assert not any(whole.search(sql) for sql in job_selects)


def test_a_bad_filter_is_named_and_shows_no_jobs(alice_client, make_job):
    make_job()
    page = alice_client.get("/history/?state=bogus").content.decode()

    assert "state: Select a valid choice. bogus is not one of the available choices." in page
    assert "No jobs" in page
