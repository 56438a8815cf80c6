"""SQLite has one write lock. A 50-file upload stores its files and thumbnails before its one short
transaction, so the worker's own writes (page results, progress, heartbeats) go on meanwhile and
nobody waits long enough to see "database is locked"."""

from __future__ import annotations

import pytest

from tests.faults.stack import word_image, words_pdf

pytestmark = pytest.mark.timeout(150)


def test_a_50_file_upload_while_the_worker_writes_never_locks_the_database(stack):
    busy_words = [f"soak-{n:04d}" for n in range(51, 57)]
    busy = stack.upload([("busy.pdf", words_pdf(busy_words))]).json()["jobs"][0]["id"]
    stack.wait_until(busy, lambda j: j["state"] == "running", 60, poll=0.05)

    files = [(f"many-{n}.png", word_image(f"soak-{n:04d}")) for n in range(100, 150)]
    answer = stack.upload(files, timeout=120)
    assert answer.status_code == 202, answer.text
    jobs = answer.json()["jobs"]
    assert len(jobs) == 50 and answer.json()["refused"] == []
    assert stack.job(busy)["state"] == "running"  # the upload landed while the worker was writing

    assert stack.wait_ended(busy, 90)["state"] == "succeeded"
    assert stack.text(busy).split() == busy_words
    for job in jobs[:3]:
        assert stack.wait_ended(job["id"], 60)["state"] == "succeeded"
    for proc in (stack.web, stack.workers["gpu@faults"]):
        assert "database is locked" not in proc.log(), proc.log()[-3000:]
    with stack.db() as db:
        assert db.execute("select count(*) from ocr_app_job").fetchone()[0] == 51
        assert db.execute("select count(*) from ocr_app_page").fetchone()[0] == 56
