"""`python manage.py fetch_model` — download a catalog model's files once (dots.ocr, dots.mocr,
dots.mocr-svg: core/catalog.py), with a progress bar, into the model folder the worker and the
managed vLLM container read. `--model` takes a catalog name or a hub id. `--gguf` fetches the GGUF
pair the llama.cpp backend reads instead (ocr_app/gguf_fetch.py), checksums verified."""

from __future__ import annotations

import re

from django.core.management.base import BaseCommand, CommandError

from core import catalog, gguf_files
from ocr_app import backendconfig, gguf_fetch
from ocr_app.models import BackendSettings

COMMIT = re.compile(r"^[0-9a-f]{40}$")


class Command(BaseCommand):
    help = "Download the dots.ocr model named in the backend settings (or --model/--revision)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--model", help=f"Catalog name ({', '.join(catalog.names())}) or hub id (default: the backend settings')."
        )
        parser.add_argument(
            "--revision", help="Commit hash to pin (default: the catalog's pin, else the backend settings')."
        )
        parser.add_argument("--save", action="store_true", help="Also store --model/--revision in the settings.")
        parser.add_argument("--gguf", action="store_true", help="Fetch the GGUF pair for llama.cpp instead.")
        parser.add_argument(
            "--quantization",
            action="append",
            choices=gguf_files.QUANTIZATIONS,
            help="With --gguf: the language model's quantization (repeatable; default: all).",
        )
        parser.add_argument("--check", action="store_true", help="With --gguf: only verify the files already there.")

    def handle(self, *args, model=None, revision=None, save=False, gguf=False, **options):
        cfg = BackendSettings.load()
        if gguf:
            return self._gguf(cfg, model, revision, options)
        model = (model or cfg.model).strip()
        try:
            entry = catalog.get(model)
        except KeyError:
            entry = None
        if entry is not None:
            model = entry.repo
        same = model == cfg.model.strip()
        revision = (revision or (entry.revision if entry else None) or (cfg.revision if same else "")).strip()
        if not COMMIT.match(revision):
            raise CommandError(
                f"Give the commit hash to pin (--revision, 40 hex characters), not {revision or 'nothing'!r}: "
                "dots.ocr runs its repository's own code, which must not change under you. The hashes are "
                f"listed at https://huggingface.co/{model}/commits/main"
            )
        try:
            from huggingface_hub import snapshot_download
        except ImportError:
            raise CommandError(
                "huggingface_hub is not installed: python3 ocrdash.py start --with-dots installs it."
            ) from None
        target = backendconfig.hf_cache_dir()
        self.stdout.write(f"Downloading {model} at {revision[:12]} into {target} …")
        try:
            # huggingface_hub draws a progress bar per file on the terminal.
            path = snapshot_download(repo_id=model, revision=revision, cache_dir=target)
        except Exception as exc:
            raise CommandError(
                f"Could not download {model} ({type(exc).__name__}: {exc}). On a machine without internet, "
                f"download it elsewhere (huggingface-cli download {model} --revision {revision}) and copy "
                f"the folder, then set the model in the backend settings to that folder."
            ) from None
        if save:
            cfg.model, cfg.revision, cfg.updated_by = model, revision, "fetch_model"
            cfg.save()
        self.stdout.write(self.style.SUCCESS(f"Done: {path}"))

    def _gguf(self, cfg, model, revision, options) -> None:
        pair = gguf_files.gguf_model(model or cfg.model)
        folder = backendconfig.gguf_dir(cfg) if not model else backendconfig.gguf_dir_for(pair)
        if options.get("check"):
            problems = gguf_fetch.check_folder(folder, self.stdout.write)
            if problems:
                raise CommandError("; ".join(problems))
            self.stdout.write(self.style.SUCCESS(f"Every file listed in {folder / gguf_fetch.SUMS_FILE} is intact."))
            return
        quantizations = options.get("quantization") or list(gguf_files.QUANTIZATIONS)
        self.stdout.write(f"Fetching {pair.model}'s GGUF files ({', '.join(quantizations)}) into {folder} …")
        try:
            paths = gguf_fetch.fetch_pair(pair, quantizations, folder, revision=revision or "main",
                                          say=self.stdout.write)  # fmt: skip
        except ImportError:
            raise CommandError("huggingface_hub is missing: python3 ocrdash.py start --with-gguf adds it.") from None
        except gguf_fetch.FetchError as exc:
            raise CommandError(str(exc)) from None
        except Exception as exc:
            raise CommandError(
                f"Could not download from {pair.repo} ({type(exc).__name__}: {exc}). On a machine without "
                f"internet, download the files elsewhere and copy them into {folder}."
            ) from None
        self.stdout.write(self.style.SUCCESS(f"Done: {', '.join(p.name for p in paths)}"))
