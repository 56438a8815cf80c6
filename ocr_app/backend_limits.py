"""Where the backend settings may point: the model folder and the vLLM server.

The model runs its repository's own code (trust_remote_code) in the worker, and a managed vLLM
container mounts the folder. So a folder must lie inside OCRDASH_MODEL_DIR (where fetch_model
puts models), and the vLLM URL, when OCRDASH_VLLM_ALLOWED_HOSTS is set, must name one of those
hosts (else the worker would send pages, and follow answers, wherever an admin's form said).
Both are checked when the admin saves and again when the worker plans, so a row written any other
way is held to the same rule.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings

# A Hugging Face hub id: "name" or "namespace/name".
HUB_ID = re.compile(r"\A[A-Za-z0-9][A-Za-z0-9._-]*(?:/[A-Za-z0-9][A-Za-z0-9._-]*)?\Z")


def looks_like_folder(model: str) -> bool:
    return model.startswith(("/", ".", "~")) or "\\" in model or not HUB_ID.match(model) or os.path.isdir(model)


def model_problem(model: str) -> str | None:
    """Why the model setting may not be used, or None. A hub id is fine; a folder must be inside
    the model directory (symbolic links resolved)."""
    model = (model or "").strip()
    if not model:
        return "the model is not set"
    if not looks_like_folder(model):
        return None
    root = Path(settings.OCRDASH_MODEL_DIR).expanduser().resolve()
    folder = Path(model).expanduser().resolve()
    if folder != root and root not in folder.parents:
        return (
            f"the model folder {model} is outside the model directory {root} (OCRDASH_MODEL_DIR): "
            "the model runs its own code, so only folders there are used"
        )
    return None


def vllm_host_problem(url: str) -> str | None:
    """Why the vLLM URL may not be used, or None (always None without OCRDASH_VLLM_ALLOWED_HOSTS)."""
    allowed = settings.VLLM_ALLOWED_HOSTS
    if not url or not allowed:
        return None
    host = (urlsplit(url).hostname or "").lower()
    if host in allowed:
        return None
    return f"the vLLM host {host or url!r} is not in OCRDASH_VLLM_ALLOWED_HOSTS ({', '.join(allowed)})"
