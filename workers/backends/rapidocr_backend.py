"""CPU OCR with RapidOCR (PaddleOCR models run by onnxruntime).

Detection and orientation models come with the rapidocr package; the
recognition model depends on the job's language (see core.languages).
"""

from __future__ import annotations

import gc
import importlib.util
import json
import logging
import threading
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from core import language_download, languages
from core.backends import RAPIDOCR
from core.dots import tasks
from core.dots.prompts import GROUNDING, TEXT_ONLY
from core.languages import OcrLanguage
from core.loopguard import LoopGuard, LoopSettings, Stopped
from core.results import BackendError, CancelCheck, JobCancelled, OcrResult, ProgressCallback, TextLine
from workers.backends.base import OcrBackend

log = logging.getLogger(__name__)

FETCH_COMMAND = "python manage.py fetch_ocr_language {code}"


class PageTimeUp(Exception):
    """The page time limit ran out while the engine read the page."""

    def __init__(self, stopped: Stopped) -> None:
        super().__init__(stopped.message)
        self.stopped = stopped


def _rapidocr_version() -> str:
    try:
        return metadata.version(RAPIDOCR.packages[0])
    except metadata.PackageNotFoundError:
        return "unknown"


class RapidOcrBackend(OcrBackend):
    name = RAPIDOCR.name

    def __init__(self, model_dir: str | Path | None = None) -> None:
        #: Folder for downloaded models when a plan does not name one.
        self.model_dir = Path(model_dir) if model_dir is not None else None
        self._engines: dict[str, Any] = {}
        self._language: OcrLanguage | None = None
        self._plan: dict[str, Any] = {}

    # -- loading ---------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self._language is not None and self._language.code in self._engines

    @property
    def language(self) -> str | None:
        """Code of the language the next ocr() call reads."""
        return self._language.code if self._language else None

    def load(self, plan: dict[str, Any], progress: ProgressCallback | None = None) -> None:
        """Get the engine for ``plan["language"]`` ready, downloading its model if needed.

        Plan keys: ``language`` (code, default "multi"), ``model_dir`` (folder for
        downloaded models), ``allow_download`` (default True) and ``mirror``
        (base URL to fetch model files from instead of the package's address); ``page_time_limit``
        (seconds one page may take; 0 or missing: no limit).
        """
        self._plan = dict(plan)
        code = plan.get("language") or languages.DEFAULT_LANGUAGE
        try:
            lang = languages.get_language(code)
        except ValueError as exc:
            raise BackendError(str(exc)) from exc
        model_dir = plan.get("model_dir") or self.model_dir
        allow_download = bool(plan.get("allow_download", True))

        if lang.code in self._engines:
            self._language = lang
            return

        if lang.code in languages.RTL_LANGUAGES and importlib.util.find_spec("bidi") is None:
            raise BackendError(
                f"Reading {lang.label} needs the python-bidi package, which is not installed. "
                "Install it with: pip install python-bidi"
            )

        if not languages.is_installed(lang, model_dir):
            if model_dir is None:
                raise BackendError(
                    f"The {lang.label} text model is not installed and no model folder is "
                    "configured to download it into."
                )
            if not allow_download:
                raise BackendError(
                    f"The {lang.label} text model is not installed. Install it with: "
                    f"{FETCH_COMMAND.format(code=lang.code)}"
                )
            language_download.download_language(lang, model_dir, progress=progress, mirror=plan.get("mirror") or None)

        rec_path = languages.model_path(lang, model_dir)
        if progress is not None:
            progress(0, 0, f"Loading the {lang.label} text model")
        self._engines[lang.code] = self._build_engine(lang, rec_path)
        self._language = lang

    def _build_engine(self, lang: OcrLanguage, rec_path: Path) -> Any:
        try:
            from rapidocr import RapidOCR
            from rapidocr.utils.typings import LangRec, ModelType, OCRVersion
        except ImportError as exc:
            raise BackendError(f"The rapidocr package cannot be loaded: {exc}") from exc

        support = languages.support_model_paths()
        params: dict[str, Any] = {
            "Global.log_level": "error",
            "Det.model_path": str(support["det"]),
            "Cls.model_path": str(support["cls"]),
            # The ONNX recognition models carry their character list in the
            # model metadata ("character"), so no rec_keys_path is needed.
            "Rec.model_path": str(rec_path),
            "Rec.ocr_version": OCRVersion(lang.ocr_version),
            "Rec.model_type": ModelType(lang.model_type),
        }
        if not lang.bundled:
            # lang_type matters for right-to-left reordering and as the key for
            # rapidocr's dictionary lookup, should a model lack its metadata.
            try:
                params["Rec.lang_type"] = LangRec(lang.code)
            except ValueError:
                params["Rec.lang_type"] = lang.code
        try:
            engine = RapidOCR(params=params)
            # rapidocr opens its models on first use; open them now so a broken
            # model file fails the load step rather than the first page.
            for opener in ("_load_det_model", "_load_cls_model", "_load_rec_model"):
                getattr(engine, opener, lambda: None)()
        except Exception as exc:  # onnxruntime raises a variety of types
            log.exception("rapidocr failed to load %s", rec_path)
            raise BackendError(
                f"The {lang.label} text model at {rec_path} could not be loaded ({exc}). "
                f"If the file is damaged, delete it and run: "
                f"{FETCH_COMMAND.format(code=lang.code)}"
            ) from exc
        return engine

    def unload(self) -> None:
        self._engines.clear()
        self._language = None
        gc.collect()

    # -- recognition -----------------------------------------------------

    def ocr(
        self,
        image: Image.Image,
        mode: str,
        cancel: CancelCheck,
        *,
        bbox: Sequence[float] | None = None,
        question: str | None = None,
        upright: bool = False,
    ) -> OcrResult:
        """Read a page; for the grounding task (`bbox` = [x1, y1, x2, y2] in the page's pixels)
        only that region is read, its lines' boxes in the page's pixels. `upright` skips the
        text-direction classifier, which turns short lines of a cropped region upside down."""
        if mode == GROUNDING:
            return self._read_region(image, bbox, cancel)
        task = next((t for t in tasks.TASKS if t.code == mode), None)
        if task is not None and not task.rapidocr:
            able = " or ".join(task.models)
            raise BackendError(
                f"The CPU text recognizer reads text lines only; the task '{mode}' needs {able} on a GPU "
                "(vLLM or transformers)."
            )
        if not self.loaded:
            raise BackendError("The CPU text recognizer is not loaded.")
        assert self._language is not None
        lang = self._language
        engine = self._engines[lang.code]
        if cancel():
            raise JobCancelled()

        rgb = to_rgb_array(image)
        height, width = rgb.shape[:2]
        details = {"language": lang.code, "engine": f"rapidocr {_rapidocr_version()}"}
        if height < 2 or width < 2:
            return OcrResult(text="", raw=json.dumps({"boxes": [], "txts": [], "scores": []}), details=details)
        try:
            return self._read(engine, rgb, upright, cancel, details)
        except PageTimeUp as up:
            details["stopped"] = up.stopped.as_json()
            return OcrResult(text="", raw=json.dumps({"boxes": [], "txts": [], "scores": []}), details=details)

    def _read(self, engine: Any, rgb: np.ndarray, upright: bool, cancel: CancelCheck, details: dict) -> OcrResult:
        height, width = rgb.shape[:2]

        # rapidocr reads three-channel arrays as OpenCV BGR.
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        try:
            output = self._run_engine(engine, bgr, upright, cancel)
        except (JobCancelled, PageTimeUp):
            raise
        except Exception as exc:
            log.exception("rapidocr failed on a page")
            raise BackendError(f"The CPU text recognizer failed on this page: {exc}") from exc

        boxes = getattr(output, "boxes", None)
        txts = getattr(output, "txts", None)
        scores = getattr(output, "scores", None)
        lines: list[TextLine] = []
        if boxes is not None and txts is not None and len(txts):
            for box, txt, score in zip(boxes, txts, scores or [0.0] * len(txts), strict=False):
                pts = np.asarray(box, dtype=float).reshape(-1, 2)
                pts[:, 0] = pts[:, 0].clip(0, width)
                pts[:, 1] = pts[:, 1].clip(0, height)
                lines.append(TextLine(text=str(txt).strip(), box=pts.tolist(), score=float(score)))

        raw = json.dumps(
            {
                "boxes": [np.asarray(b, dtype=float).tolist() for b in boxes] if boxes is not None else [],
                "txts": [str(t) for t in txts] if txts is not None else [],
                "scores": [float(s) for s in scores] if scores is not None else [],
                "elapse": [
                    float(e) if isinstance(e, (int, float)) else None for e in getattr(output, "elapse_list", [])
                ],
            },
            ensure_ascii=False,
        )
        rows = reading_rows(lines)
        # The detector may cut one printed line into pieces (wide word gaps,
        # table cells): pieces on one row are joined with a space.
        return OcrResult(
            text="\n".join(" ".join(line.text for line in row) for row in rows),
            lines=[line for row in rows for line in row],
            raw=raw,
            details=details,
        )

    def _run_engine(self, engine: Any, bgr: np.ndarray, upright: bool, cancel: CancelCheck) -> Any:
        """The engine on one page. It cannot repeat itself like a language model, but the page time
        limit (`page_time_limit`) applies: then it runs in a thread that the page stops waiting for
        (onnxruntime cannot be interrupted; the thread ends on its own)."""
        limit = LoopSettings.from_plan(self._plan).page_seconds
        if not limit:
            return engine(bgr, use_cls=False) if upright else engine(bgr)
        done = threading.Event()
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                box["output"] = engine(bgr, use_cls=False) if upright else engine(bgr)
            except Exception as exc:
                box["error"] = exc
            finally:
                done.set()

        threading.Thread(target=run, name="rapidocr-page", daemon=True).start()
        guard = LoopGuard(LoopSettings(window=0, page_seconds=limit))
        while not done.wait(0.05):
            if cancel():
                raise JobCancelled()
            if guard.check_time():
                raise PageTimeUp(guard.stopped)
        if "error" in box:
            raise box["error"]
        return box["output"]

    def _read_region(self, image: Image.Image, bbox: Sequence[float] | None, cancel: CancelCheck) -> OcrResult:
        if bbox is None or len(bbox) != 4:
            raise BackendError("Reading a region needs its box: [x1, y1, x2, y2].")
        w, h = image.size
        x1, y1, x2, y2 = (int(round(float(v))) for v in bbox)
        x1, x2 = max(0, min(x1, w)), max(0, min(x2, w))
        y1, y2 = max(0, min(y1, h)), max(0, min(y2, h))
        if x2 - x1 < 2 or y2 - y1 < 2:
            raise BackendError(f"The region {list(bbox)} lies outside the {w}×{h} page.")
        # A margin of white keeps glyphs cut by the box edge readable to the line detector.
        crop = image.convert("RGB").crop((x1, y1, x2, y2))
        pad = 16
        framed = Image.new("RGB", (crop.width + 2 * pad, crop.height + 2 * pad), "white")
        framed.paste(crop, (pad, pad))
        result = self.ocr(framed, TEXT_ONLY, cancel, upright=True)
        for line in result.lines:
            line.box = [[px - pad + x1, py - pad + y1] for px, py in line.box]
        result.details["bbox_sent"] = [x1, y1, x2, y2]
        return result


def to_rgb_array(image: Image.Image) -> np.ndarray:
    """An 8-bit RGB array of any PIL image; transparency is laid on a plain background."""
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        arr = np.asarray(image, dtype=np.float64)
        if mode.startswith("I;16"):
            arr = arr / 257.0
        else:
            lo, hi = float(arr.min()), float(arr.max())
            if lo < 0 or hi > 255:
                arr = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
        gray = arr.clip(0, 255).round().astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)

    if mode == "P" or mode == "PA":
        image = image.convert("RGBA")
    elif mode == "LA":
        image = image.convert("RGBA")
    elif mode == "RGBa":
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        rgba = np.asarray(image)
        alpha = rgba[:, :, 3:4].astype(np.float32) / 255.0
        rgb = rgba[:, :, :3].astype(np.float32)
        visible = rgba[:, :, 3] > 0
        # Light ink on a transparent page would vanish on white: use black then.
        if visible.any():
            luminance = rgb[visible] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
            background = 0.0 if float(luminance.mean()) >= 128 and not visible.all() else 255.0
        else:
            background = 255.0
        out = rgb * alpha + background * (1.0 - alpha)
        return out.round().astype(np.uint8)
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image, dtype=np.uint8)


def reading_rows(lines: list[TextLine]) -> list[list[TextLine]]:
    """Lines grouped into rows, top to bottom; each row left to right."""

    def extent(line: TextLine) -> tuple[float, float, float]:
        ys = [p[1] for p in line.box]
        xs = [p[0] for p in line.box]
        return min(ys), max(ys), min(xs)

    items = sorted(lines, key=lambda ln: (sum(p[1] for p in ln.box) / len(ln.box), extent(ln)[2]))
    rows: list[list[tuple[float, float, float, TextLine]]] = []
    for line in items:
        top, bottom, left = extent(line)
        center = (top + bottom) / 2
        if rows:
            row = rows[-1]
            row_top = min(r[0] for r in row)
            row_bottom = max(r[1] for r in row)
            # Same row when this line's middle falls inside the row's band.
            if row_top <= center <= row_bottom:
                row.append((top, bottom, left, line))
                continue
        rows.append([(top, bottom, left, line)])
    return [[entry[3] for entry in sorted(row, key=lambda r: r[2])] for row in rows]


def reading_order(lines: list[TextLine]) -> list[TextLine]:
    """Top to bottom; lines sharing a row go left to right."""
    return [line for row in reading_rows(lines) for line in row]
