"""How fast the shared history renders with many jobs.

    .venv/bin/python bench/history.py [--jobs 100000] [--runs 7] [--database-url postgres://…]

Fills a scratch database (SQLite in a temporary folder unless --database-url names one)
with jobs by 20 users, then renders /history/ through Django's full request stack:
the first page, a deep page, a state filter, a backend filter and a text search.
Prints the median and spread of each, and the number of SQL queries per page.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.backends import RAPIDOCR, TRANSFORMERS, VLLM  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--database-url")
    args = parser.parse_args()

    scratch = tempfile.mkdtemp(prefix="ocrdash-bench-")
    os.environ["OCRDASH_DATA_DIR"] = scratch
    if args.database_url:
        os.environ["OCRDASH_DATABASE_URL"] = args.database_url
    else:
        os.environ.pop("OCRDASH_DATABASE_URL", None)
    os.environ["DJANGO_SETTINGS_MODULE"] = "dashboard.settings"
    os.environ.setdefault("OCRDASH_ALLOWED_HOSTS", "testserver")

    import django

    django.setup()
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection, reset_queries
    from django.test import Client
    from django.utils import timezone

    from ocr_app.models import Job

    settings.ALLOWED_HOSTS.append("testserver")
    call_command("migrate", verbosity=0)
    User = get_user_model()
    users = [User.objects.get_or_create(username=f"user{i}")[0] for i in range(20)]
    have = Job.objects.count()
    if have < args.jobs:
        print(f"creating {args.jobs - have:,} jobs…", flush=True)
        words = "invoice receipt contract letter report table scan page total amount".split()
        now = timezone.now()
        batch = []
        states = ["succeeded"] * 8 + ["failed", "queued"]
        backends = [RAPIDOCR.name, RAPIDOCR.name, VLLM.name, TRANSFORMERS.name]
        for i in range(have, args.jobs):
            text = " ".join(words[(i * 7 + k) % len(words)] for k in range(60)) + f" number {i}"
            batch.append(
                Job(
                    owner=users[i % 20],
                    original_name=f"{words[i % len(words)]}-{i}.png",
                    upload=f"uploads/bench/{i}.png",
                    thumbnail=f"thumbs/bench/{i}.jpg",
                    image_format="PNG",
                    size_bytes=100_000,
                    width=1200,
                    height=1600,
                    sha256=f"{i:064x}",
                    state=states[i % len(states)],
                    backend=backends[i % len(backends)],
                    language="multi",
                    text=text,
                    text_preview=text[:200],
                    created_at=now - timezone.timedelta(seconds=args.jobs - i),
                )
            )
            if len(batch) == 5000:
                Job.objects.bulk_create(batch)
                batch.clear()
        Job.objects.bulk_create(batch)
    client = Client()
    client.force_login(users[0])
    deep = args.jobs // settings.HISTORY_PAGE_SIZE // 2
    cases = {
        "first page": "/history/",
        f"page {deep:,}": f"/history/?page={deep}",
        "state=failed": "/history/?state=failed",
        "backend=vllm": "/history/?backend=vllm",
        "search 'number 4242'": "/history/?q=number+4242",
        "owner=user3": "/history/?owner=user3",
    }
    settings.DEBUG = True  # count queries
    print(f"{connection.vendor}, {Job.objects.count():,} jobs, {args.runs} runs each (after one warm-up)")
    print(f"{'page':28} {'median ms':>10} {'min':>8} {'max':>8} {'queries':>8}")
    for label, url in cases.items():
        client.get(url)
        times = []
        for _ in range(args.runs):
            reset_queries()
            start = time.perf_counter()
            response = client.get(url)
            times.append((time.perf_counter() - start) * 1000)
            assert response.status_code == 200, response.status_code
        queries = len(connection.queries)
        print(f"{label:28} {statistics.median(times):10.1f} {min(times):8.1f} {max(times):8.1f} {queries:8d}")


if __name__ == "__main__":
    main()
