"""`python manage.py models`: the model catalog (core/catalog.py), which one the backend settings
choose, and whether each one's weights are on this machine; `--json` prints it as a list."""

from __future__ import annotations

import json as json_module

from django.core.management.base import BaseCommand
from django.db import DatabaseError

from core import catalog
from core.modelfacts import GiB
from ocr_app import backendconfig
from ocr_app.models import BackendSettings


class Command(BaseCommand):
    help = "List the models ocrdash can run: repository, pinned revision, tasks, and whether they are here."

    def add_arguments(self, parser):
        parser.add_argument("--json", action="store_true", help="Print the catalog as a JSON list.")

    def handle(self, *args, json: bool = False, **options):  # noqa: A002 - the flag's name
        cache = backendconfig.hf_cache_dir()
        try:
            chosen = catalog.for_setting(BackendSettings.load().model).name
        except DatabaseError:  # before the first migrate: the default model
            chosen = catalog.DEFAULT.name
        rows = [{**m.to_dict(cache), "chosen": m.name == chosen} for m in catalog.MODELS]
        if json:
            self.stdout.write(_dumps(rows))
            return
        for row in rows:
            mark = "*" if row["chosen"] else " "
            here = "present" if row["present"] else "not fetched"
            revision = (row["revision"] or "no pinned revision")[:12]
            self.stdout.write(
                f"{mark} {row['name']:<14} {row['repo']:<28} {revision:<18} {row['weights_bytes'] / GiB:.1f} GiB, "
                f"{here}; tasks: {', '.join(row['tasks'])}"
            )
        self.stdout.write(
            "* the model the backend settings choose. Fetch one: python3 ocrdash.py manage fetch_model "
            "--model NAME --revision COMMIT"
        )


def _dumps(rows) -> str:
    return json_module.dumps(rows, indent=2)
