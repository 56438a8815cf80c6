"""Recognition languages of the CPU engine (RapidOCR): what each reads, and where its model is.

The installed ``rapidocr`` package ships one recognition model (PP-OCRv6 small,
Latin script, Chinese and Japanese) plus the text detector and the orientation
classifier. Every other script has its own PP-OCRv5 recognition model that is
downloaded once into a model folder. Addresses and checksums are read from the
package's own ``default_models.yaml`` so they always match the installed
version.

This module needs no Django and does not import rapidocr itself (that pulls in
OpenCV and onnxruntime); it only reads the package's YAML files. Fetching a model is
core/language_download.py.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

from core.backends import RAPIDOCR
from core.results import BackendError

#: Code of the language whose model comes with the package.
DEFAULT_LANGUAGE = "multi"

#: The engine everything below is read for.
ENGINE = "onnxruntime"

# Routes of PP-OCRv5 mobile models that the bundled PP-OCRv6 model already
# reads as well or better; offering them would only confuse the choice.
_COVERED_BY_BUNDLED = frozenset({"ch", "en", "latin"})

# Scripts written right to left; rapidocr needs python-bidi to order them.
RTL_LANGUAGES = frozenset({"arabic"})

# What each model reads, in words for the language picker. The YAML only says
# "Slavic" or "Cyrillic", which does not tell a user which one to pick.
_DESCRIPTIONS: dict[str, tuple[str, str]] = {
    "multi": (
        "Latin script, Chinese and Japanese (built in)",
        "English and most languages written in the Latin alphabet (French, German, "
        "Spanish, Portuguese, Italian, Dutch, Polish, Czech, Turkish, Vietnamese and "
        "more), Chinese (simplified and traditional) and Japanese.",
    ),
    "eslav": (
        "Russian, Ukrainian and Belarusian",
        "Russian, Ukrainian and Belarusian, written in the Cyrillic alphabet.",
    ),
    "cyrillic": (
        "Cyrillic (other languages)",
        "Languages written in the Cyrillic alphabet such as Serbian, Bulgarian, "
        "Macedonian, Mongolian and the languages of the Caucasus.",
    ),
    "korean": ("Korean", "Korean (Hangul)."),
    "arabic": (
        "Arabic script",
        "Arabic, Persian, Urdu, Uyghur and other languages written in the Arabic script.",
    ),
    "el": ("Greek", "Greek."),
    "th": ("Thai", "Thai."),
    "devanagari": (
        "Devanagari",
        "Hindi, Marathi, Nepali, Sanskrit and other languages written in Devanagari.",
    ),
    "ta": ("Tamil", "Tamil."),
    "te": ("Telugu", "Telugu."),
}


@dataclass(frozen=True)
class OcrLanguage:
    code: str
    label: str
    #: A sentence naming the scripts and languages the model reads.
    reads: str
    #: True when the model file comes with the rapidocr package.
    bundled: bool
    #: Key of the model in rapidocr's default_models.yaml.
    model_key: str
    url: str
    sha256: str
    #: File name of the model (the last part of ``url``).
    filename: str
    #: rapidocr's OCRVersion and ModelType values for this model.
    ocr_version: str = "PP-OCRv5"
    model_type: str = "mobile"


def package_dir() -> Path:
    """Folder of the installed rapidocr package (found without importing it)."""
    spec = importlib.util.find_spec(RAPIDOCR.packages[0])
    if spec is None or spec.origin is None:
        raise BackendError("The rapidocr package is not installed: pip install rapidocr")
    return Path(spec.origin).resolve().parent


def package_model_dir() -> Path:
    """Folder holding the models that come with the rapidocr package."""
    return package_dir() / "models"


@lru_cache(maxsize=1)
def _package_yaml() -> tuple[dict[str, Any], dict[str, Any]]:
    root = package_dir()
    with open(root / "default_models.yaml", encoding="utf-8") as fh:
        models = yaml.safe_load(fh)
    with open(root / "config.yaml", encoding="utf-8") as fh:
        config = yaml.safe_load(fh)
    return models, config


def _route_key(models: dict[str, Any], task: str, version: str, model_type: str, lang: str) -> str:
    routes = models["model_routes"][version][task][model_type]
    for route in routes:
        if lang in [str(x) for x in route.get("supported_langs", [])]:
            return route["model_key"]
    # Single-model tasks (the v6 detector, the classifier) answer for any language.
    return routes[0]["model_key"]


def _model_entry(models: dict[str, Any], version: str, task: str, key: str) -> dict[str, Any]:
    try:
        return models[ENGINE][version][task][key]
    except KeyError as exc:
        raise BackendError(
            f"The installed rapidocr package does not list the model {key} ({version} {task})."
        ) from exc


def _make_language(
    code: str,
    key: str,
    version: str,
    model_type: str,
    entry: dict[str, Any],
    bundled: bool,
    fallback_label: str,
) -> OcrLanguage:
    url = str(entry["model_dir"])
    label, reads = _DESCRIPTIONS.get(code, (fallback_label, f"{fallback_label}."))
    return OcrLanguage(
        code=code,
        label=label,
        reads=reads,
        bundled=bundled,
        model_key=key,
        url=url,
        sha256=str(entry.get("SHA256") or "").lower(),
        filename=url.rsplit("/", 1)[-1],
        ocr_version=version,
        model_type=model_type,
    )


@lru_cache(maxsize=1)
def _catalog() -> dict[str, OcrLanguage]:
    models, config = _package_yaml()
    names = {str(k): str(v.get("en", k)) for k, v in (models.get("lang_mapping") or {}).items()}
    catalog: dict[str, OcrLanguage] = {}

    # The recognizer rapidocr uses by default is the one in the package.
    rec = config["Rec"]
    version, model_type = str(rec["ocr_version"]), str(rec["model_type"])
    key = _route_key(models, "rec", version, model_type, str(rec["lang_type"]))
    entry = _model_entry(models, version, "rec", key)
    catalog[DEFAULT_LANGUAGE] = _make_language(
        DEFAULT_LANGUAGE, key, version, model_type, entry, True, "Built-in"
    )

    version, model_type = "PP-OCRv5", "mobile"
    for route in models["model_routes"][version]["rec"][model_type]:
        code = str(route["lang"])
        if code in _COVERED_BY_BUNDLED or code in catalog:
            continue
        key = str(route["model_key"])
        entry = _model_entry(models, version, "rec", key)
        catalog[code] = _make_language(code, key, version, model_type, entry, False, names.get(code, code))
    # Described languages in the order above, anything new in the package after them.
    order = {code: i for i, code in enumerate(_DESCRIPTIONS)}
    ranked = sorted(catalog, key=lambda code: order.get(code, len(order)))
    return {code: catalog[code] for code in ranked}


def all_languages() -> list[OcrLanguage]:
    """Every language the CPU engine can read, the built-in one first."""
    return list(_catalog().values())


def get_language(code: str | OcrLanguage) -> OcrLanguage:
    """The language with this code; ValueError naming the valid codes otherwise."""
    if isinstance(code, OcrLanguage):
        return code
    catalog = _catalog()
    key = (code or "").strip().lower()
    if key not in catalog:
        valid = ", ".join(catalog)
        raise ValueError(f"Unknown OCR language {code!r}. Valid codes: {valid}.")
    return catalog[key]


def support_model_paths() -> dict[str, Path]:
    """Paths of the bundled detector ("det") and orientation classifier ("cls")."""
    models, config = _package_yaml()
    paths = {}
    for task, section in (("det", "Det"), ("cls", "Cls")):
        cfg = config[section]
        version, model_type = str(cfg["ocr_version"]), str(cfg["model_type"])
        key = _route_key(models, task, version, model_type, str(cfg["lang_type"]))
        url = str(_model_entry(models, version, task, key)["model_dir"])
        paths[task] = package_model_dir() / url.rsplit("/", 1)[-1]
    return paths


def model_path(lang: str | OcrLanguage, model_dir: str | os.PathLike[str] | None) -> Path:
    """Where the recognition model of ``lang`` lives (or will, once downloaded)."""
    lang = get_language(lang)
    if lang.bundled:
        return package_model_dir() / lang.filename
    if model_dir is None:
        raise BackendError(f"No model folder is configured, so the {lang.label} model has nowhere to go.")
    return Path(model_dir) / lang.filename


def is_installed(lang: str | OcrLanguage, model_dir: str | os.PathLike[str] | None) -> bool:
    """True when the model file is there. The checksum is verified at download time."""
    lang = get_language(lang)
    if lang.bundled:
        return True
    if model_dir is None:
        return False
    try:
        return model_path(lang, model_dir).stat().st_size > 0
    except OSError:
        return False
