"""Download the recognition model of a CPU OCR language ahead of the first job.

python manage.py fetch_ocr_language eslav
python manage.py fetch_ocr_language --list
"""

from __future__ import annotations

import sys
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from core import language_download, languages
from core.results import BackendError


class Command(BaseCommand):
    help = "Download the text model of a CPU OCR language into OCRDASH_MODEL_DIR."

    def add_arguments(self, parser):
        parser.add_argument("language", nargs="?", help="Language code, e.g. eslav (see --list).")
        parser.add_argument(
            "--list", action="store_true", help="List every language and whether it is installed."
        )
        parser.add_argument("--url", help="Download from this address instead (a mirror).")
        parser.add_argument("--sha256", help="Expected SHA-256 of the file given by --url.")
        parser.add_argument("--model-dir", help="Folder to download into (default: OCRDASH_MODEL_DIR).")
        parser.add_argument("--force", action="store_true", help="Download again even if the model is there.")

    def handle(self, *args, **options):
        model_dir = self._model_dir(options.get("model_dir"))
        if options["list"]:
            self._list(model_dir)
            return
        code = options.get("language")
        if not code:
            raise CommandError("Name a language code, or use --list to see them.")
        try:
            lang = languages.get_language(code)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc

        if lang.bundled:
            self.stdout.write(f"{lang.label} comes with the program; nothing to download.")
            return
        dest = languages.model_path(lang, model_dir)
        if languages.is_installed(lang, model_dir) and not options["force"]:
            self.stdout.write(f"{lang.label} is already installed at {dest}.")
            return

        from tqdm import tqdm

        bar = None

        def progress(done: int, total: int, message: str) -> None:
            nonlocal bar
            if bar is None:
                bar = tqdm(
                    total=total or None,
                    unit="B",
                    unit_scale=True,
                    unit_divisor=1024,
                    desc=lang.code,
                    file=getattr(self.stderr, "_out", sys.stderr),
                )
            bar.update(done - bar.n)

        self.stdout.write(f"Downloading the {lang.label} model to {dest}")
        try:
            path = language_download.download_language(
                lang, model_dir, progress=progress, url=options.get("url"), sha256=options.get("sha256")
            )
        except BackendError as exc:
            raise CommandError(str(exc)) from exc
        finally:
            if bar is not None:
                bar.close()
        self.stdout.write(self.style.SUCCESS(f"Installed {lang.label}: {path}"))

    def _model_dir(self, override: str | None) -> Path:
        if override:
            return Path(override)
        value = getattr(settings, "OCRDASH_MODEL_DIR", None)
        if not value:
            raise CommandError("OCRDASH_MODEL_DIR is not set; pass --model-dir.")
        return Path(value)

    def _list(self, model_dir: Path) -> None:
        self.stdout.write(f"Model folder: {model_dir}")
        for lang in languages.all_languages():
            if lang.bundled:
                state = "built in"
            elif languages.is_installed(lang, model_dir):
                state = "installed"
            else:
                state = "not installed"
            self.stdout.write(f"{lang.code:<11} {state:<14} {lang.label}: {lang.reads}")
