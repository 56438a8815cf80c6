"""What dots.ocr answered, as page elements a person can use.

The layout prompts ask for a JSON list of elements, ``{"bbox": [x1, y1, x2, y2], "category": ...,
"text": ...}``, in reading order, with boxes in the pixels of the image the model was sent. Text is
Markdown, a Table's text is HTML, a Formula's LaTeX, and a Picture has none. What the model really
writes is often less tidy, and dots.ocr's own tools (``dots_ocr/utils/output_cleaner.py``) mend the
same faults this module does:

- the answer stops at the token limit in the middle of an element (keep every complete element,
  and the text of the cut one, marked incomplete; flag the page as truncated);
- objects joined as ``}{`` or one per line without commas, code fences, prose around the JSON;
- the model repeats itself: the same element again and again (often with its box marching down
  the page), or one phrase inside a text until the token limit (keep the first, drop the rest);
- categories spelled differently or made up, boxes outside the image or without four numbers,
  text that is not a string;
- no JSON at all: the model answered with plain text.

`parse_output` never raises and never makes up text: every character of an element's text comes
from the answer (JSON escapes decoded, line ends and surrounding whitespace tidied, loops cut).
A page never fails because the answer was imperfect; `warnings` says in plain words what was done.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from core.dots import boxes, lenient_json
from core.dots.lenient_json import JNum
from core.dots.prompts import GROUNDING, LAYOUT_ALL, LAYOUT_CATEGORIES, LAYOUT_ONLY, MODES, TEXT_ONLY
from core.dots.tables import table_to_text

HEADER_FOOTER = ("Page-header", "Page-footer")

# Loops: a unit of up to 200 characters repeated at least 20 times in a row, or a block of up to
# 10 lines repeated at least 10 times, over at least LOOP_MIN_CHARS characters. Leader dots in a
# table of contents, a row of empty table cells or a signature line stay well below that; a model
# caught in a loop goes on until its token limit (tens of thousands of characters).
LOOP_MIN_CHARS = 400
LOOP_KEEP = 3  # repetitions kept where a loop is cut
_CHAR_LOOP = re.compile(r"(.{1,200}?)\1{19,}", re.S)
_LINE_LOOP = re.compile(r"(.{1,10}?)\1{9,}", re.S)
# The same (category, text) this many times on one page is a loop (dots.ocr's cleaner uses 5).
REPEATED_TEXT_LIMIT = 5

_BOX_KEYS = ("bbox", "bbox_2d", "box")
_CATEGORY_KEYS = ("category", "label", "type")
_TEXT_KEYS = ("text", "content")
_ELEMENT_KEYS = frozenset(_BOX_KEYS + _CATEGORY_KEYS + _TEXT_KEYS)
_NUMBER = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
_OPEN_FENCE = re.compile(r"\A\s*```[A-Za-z0-9_+-]*[ \t]*(?:\n|\Z)")
_ONLY_FENCE = re.compile(r"\s*`{1,3}[A-Za-z0-9_+-]*\s*")
_CLOSE_FENCE = re.compile(r"\n?[ \t]*`{1,3}\s*\Z")
_JSON_AHEAD = re.compile(r"""\{\s*["']?(?:bbox|bbox_2d|category|text)["']?\s*:""")


def _category_key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


_CANONICAL = {_category_key(c): c for c in LAYOUT_CATEGORIES}
_SYNONYMS = {
    "figure": "Picture", "image": "Picture", "img": "Picture", "chart": "Picture", "photo": "Picture",
    "equation": "Formula", "math": "Formula", "list": "List-item", "header": "Page-header",
    "footer": "Page-footer", "heading": "Section-header", "sectiontitle": "Section-header",
    "paragraph": "Text", "plaintext": "Text", "tablecaption": "Caption", "figurecaption": "Caption",
}


def normalize_category(value: object) -> tuple[str, str]:
    """(canonical category, how it was read): "same", "spelling" (case, spaces, underscores),
    "synonym" (e.g. Figure → Picture) or "unknown" (→ Text)."""
    if not isinstance(value, str) or isinstance(value, JNum):
        return "Text", "unknown"
    if value in LAYOUT_CATEGORIES:
        return value, "same"
    key = _category_key(value)
    if key in _CANONICAL:
        return _CANONICAL[key], "spelling"
    if key in _SYNONYMS:
        return _SYNONYMS[key], "synonym"
    return "Text", "unknown"


@dataclass
class Element:
    category: str
    bbox: tuple[int, int, int, int] | None  # original-image pixels; None when the model gave no usable box
    text: str
    index: int  # position in reading order on its page
    complete: bool = True  # False: the answer was cut off inside this element's text

    def to_dict(self) -> dict:
        return {
            "index": self.index, "category": self.category,
            "bbox": list(self.bbox) if self.bbox is not None else None,
            "text": self.text, "complete": self.complete,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Element:
        bbox = data.get("bbox")
        return cls(
            category=data["category"], bbox=tuple(int(v) for v in bbox) if bbox else None,
            text=data.get("text") or "", index=int(data.get("index", 0)), complete=bool(data.get("complete", True)),
        )


@dataclass
class ParsedPage:
    elements: list[Element] = field(default_factory=list)
    text: str = ""  # plain text in reading order (tables as tab-separated rows, no pictures)
    warnings: list[str] = field(default_factory=list)  # sentences for the user
    truncated: bool = False  # the answer stopped before its end
    repeated_dropped: int = 0  # repeated elements left out
    plain_text_fallback: bool = False  # a layout was asked for, plain text came back
    loops_cut: int = 0  # places where a phrase repeated over and over was cut short
    mode: str = LAYOUT_ALL
    sent_size: tuple[int, int] | None = None  # (width, height) of the image the model saw
    original_size: tuple[int, int] | None = None  # (width, height) of the page image
    page_number: int | None = None  # set by whoever assembles a document

    def to_dict(self) -> dict:
        return {
            "elements": [e.to_dict() for e in self.elements], "text": self.text, "warnings": list(self.warnings),
            "truncated": self.truncated, "repeated_dropped": self.repeated_dropped,
            "plain_text_fallback": self.plain_text_fallback, "loops_cut": self.loops_cut, "mode": self.mode,
            "sent_size": list(self.sent_size) if self.sent_size else None,
            "original_size": list(self.original_size) if self.original_size else None,
            "page_number": self.page_number,
        }

    @classmethod
    def from_dict(cls, data: dict) -> ParsedPage:
        def size(v):
            return (int(v[0]), int(v[1])) if v else None

        return cls(
            elements=[Element.from_dict(e) for e in data.get("elements", [])], text=data.get("text", ""),
            warnings=list(data.get("warnings", [])), truncated=bool(data.get("truncated")),
            repeated_dropped=int(data.get("repeated_dropped", 0)),
            plain_text_fallback=bool(data.get("plain_text_fallback")), loops_cut=int(data.get("loops_cut", 0)),
            mode=data.get("mode", LAYOUT_ALL), sent_size=size(data.get("sent_size")),
            original_size=size(data.get("original_size")), page_number=data.get("page_number"),
        )


# -- text ---------------------------------------------------------------------------------------


def normalize_text(text: str) -> str:
    """Line ends as \\n, control characters removed, surrounding whitespace stripped."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return _CONTROL.sub("", text).strip()


def _loop_candidate(text: str, start: int) -> int:
    """A position from which a loop may start, or -1: inside a loop of period p <= 200 covering
    LOOP_MIN_CHARS, the 50 characters at some multiple of 50 come again p characters later."""
    for p in range(start - start % 50, len(text) - 100, 50):
        if text.find(text[p : p + 50], p + 1, p + 250) != -1:
            return p
    return -1


def _cut_char_loops(text: str) -> tuple[str, int]:
    if len(text) < LOOP_MIN_CHARS:
        return text, 0
    pieces: list[str] = []
    pos = 0  # text[pos:] is not yet copied
    search = 0
    cuts = 0
    while len(text) - search >= LOOP_MIN_CHARS:
        p = _loop_candidate(text, search)
        if p < 0:
            break
        m = _CHAR_LOOP.search(text, max(search, p - 250))
        if not m:
            break
        end = m.end()
        if end - m.start() >= LOOP_MIN_CHARS:
            unit = m.group(1)
            pieces.append(text[pos : m.start() + len(unit) * LOOP_KEEP].rstrip())
            tail = text[end:]
            if len(tail) < len(unit) and unit.startswith(tail):
                end = len(text)  # the answer stopped inside one more repetition
            pos = end
            cuts += 1
        search = end
    if not cuts:
        return text, 0
    pieces.append(text[pos:])
    return "\n".join(piece.strip("\n") for piece in pieces if piece.strip()), cuts


def _cut_line_loops(text: str) -> tuple[str, int]:
    lines = text.split("\n")
    if len(lines) < 10 or len(text) < LOOP_MIN_CHARS:
        return text, 0
    ids: dict[str, int] = {}
    codes = "".join(chr(0x10000 + ids.setdefault(line.strip(), len(ids))) for line in lines)
    kept: list[str] = []
    pos = 0
    cuts = 0
    for m in _LINE_LOOP.finditer(codes):
        k = len(m.group(1))
        start, end = m.start(), m.end()
        if not any(line.strip() for line in lines[start : start + k]):
            continue
        if sum(len(line) + 1 for line in lines[start:end]) < LOOP_MIN_CHARS:
            continue
        kept += lines[pos : start + k * LOOP_KEEP]
        pos = end
        cuts += 1
    if not cuts:
        return text, 0
    kept += lines[pos:]
    return "\n".join(kept), cuts


def cut_loops(text: str) -> tuple[str, int]:
    """`text` with each run of a phrase (or block of lines) repeated over and over cut down to its
    first few repetitions, and how many runs were cut. What is kept is the text as it was, with
    a line break where a cut joins two parts."""
    text, line_cuts = _cut_line_loops(text)
    text, char_cuts = _cut_char_loops(text)
    return text, line_cuts + char_cuts


def _strings_in(value: object, out: list[str], depth: int = 0) -> None:
    if depth > 8:
        return
    if isinstance(value, str):
        out.append(str(value))
    elif isinstance(value, list):
        for item in value:
            _strings_in(item, out, depth + 1)
    elif isinstance(value, dict):
        for item in value.values():
            _strings_in(item, out, depth + 1)


def _text_of(value: object) -> tuple[str, str | None]:
    """The text of a "text" field, and a problem: None, "structured" (a list or object whose
    strings were kept) or "not text" (a boolean, left out)."""
    if value is None:
        return "", None
    if isinstance(value, str):
        return str(value), None
    if isinstance(value, (list, dict)):
        parts: list[str] = []
        _strings_in(value, parts)
        return "\n".join(parts), "structured"
    return "", "not text"


def plain_text(elements: Sequence[Element], include_headers_footers: bool = True) -> str:
    """Elements' text in reading order, a blank line between elements: tables as tab-separated
    rows, formulas as their LaTeX, pictures left out."""
    parts = []
    for e in elements:
        if e.category == "Picture" or (not include_headers_footers and e.category in HEADER_FOOTER):
            continue
        text = table_to_text(e.text) if e.category == "Table" else e.text
        if text.strip():
            parts.append(text.strip())
    return "\n\n".join(parts)


# -- the answer ---------------------------------------------------------------------------------


class _Notes:
    """What was mended, counted, to be said once per kind at the end."""

    def __init__(self) -> None:
        self.count: Counter[str] = Counter()
        self.unknown: list[str] = []
        self.synonyms: list[str] = []

    def name(self, where: list[str], value: object, canonical: str | None = None) -> None:
        shown = repr(str(value)[:40]) if isinstance(value, str) else type(value).__name__
        entry = f"{shown} → {canonical}" if canonical else shown
        if entry not in where:
            where.append(entry)


def _field(obj: dict, keys: Sequence[str]) -> tuple[bool, object]:
    lowered = {str(k).strip().lower(): v for k, v in obj.items()}
    for key in keys:
        if key in lowered:
            return True, lowered[key]
    return False, None


def _box_numbers(value: object) -> list[float] | None:
    """The numbers of a "bbox" field, or None when it holds something else."""
    numbers: list[float] = []

    def walk(v: object, depth: int) -> bool:
        if isinstance(v, bool) or v is None or depth > 3:
            return False
        if isinstance(v, str):
            found = [v] if isinstance(v, JNum) else _NUMBER.findall(v)
            if not found:
                return False
            try:
                numbers.extend(float(x) for x in found)
            except ValueError:
                return False
            return True
        if isinstance(v, (int, float)):
            numbers.append(float(v))
            return True
        if isinstance(v, list):
            return all(walk(item, depth + 1) for item in v)
        return False

    return numbers if walk(value, 0) else None


def _collect(value: object, out: list[dict], stats: Counter, depth: int = 0) -> None:
    if depth > 8:
        return
    if isinstance(value, dict):
        if any(str(k).strip().lower() in _ELEMENT_KEYS for k in value):
            out.append(value)
            return
        lists = [v for v in value.values() if isinstance(v, list)]
        if not lists and value:
            stats["not_elements"] += 1
        for v in lists:
            _collect(v, out, stats, depth + 1)
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, (dict, list)):
                _collect(item, out, stats, depth + 1)


@dataclass
class _Candidate:
    category: str
    box: list[float] | None  # sent pixels
    text: str
    complete: bool


def _candidate(obj: dict, mode: str, notes: _Notes) -> _Candidate | None:
    complete = lenient_json.is_complete(obj)
    has_cat, cat_value = _field(obj, _CATEGORY_KEYS)
    has_box, box_value = _field(obj, _BOX_KEYS)
    has_text, text_value = _field(obj, _TEXT_KEYS)

    if not complete and not (has_cat and lenient_json.is_complete(cat_value)):
        return None  # cut off before its category was written out: nothing to go on
    if has_box and not lenient_json.is_complete(box_value):
        has_box, box_value = False, None  # cut off inside the box: the rest was never written
        if not complete and not has_text:
            return None

    if not has_cat:
        category, how = "Text", "missing"
    else:
        category, how = normalize_category(cat_value)
    text, problem = _text_of(text_value) if has_text else ("", None)
    text = normalize_text(text)

    if not complete:
        # Keep the element the answer was cut off in only where it still says something: its text
        # (incomplete), or for a box-only answer its finished box and category.
        has_all_fields = has_box and has_cat
        if mode == LAYOUT_ONLY or category == "Picture":
            if not has_all_fields:
                return None
        elif not text:
            return None

    if how == "missing":
        notes.count["no_category"] += 1
    elif how == "synonym":
        notes.name(notes.synonyms, cat_value, category)
    elif how == "unknown":
        notes.name(notes.unknown, cat_value)
    if problem:
        notes.count[f"text_{problem}"] += 1

    box: list[float] | None = None
    if has_box:
        numbers = _box_numbers(box_value)
        if numbers is None or len(numbers) != 4:
            notes.count["box_not_four"] += 1
        elif not all(math.isfinite(v) for v in numbers):
            notes.count["box_not_four"] += 1
        else:
            box = numbers
    elif mode != GROUNDING:
        notes.count["no_box"] += 1

    if mode == LAYOUT_ONLY:
        text = ""
    return _Candidate(category=category, box=box, text=text, complete=complete)


def _strip_fences(text: str) -> str:
    if _ONLY_FENCE.fullmatch(text):
        return ""  # the answer stopped inside the opening fence
    m = _OPEN_FENCE.match(text)
    if m:
        text = text[m.end() :]
        text = _CLOSE_FENCE.sub("", text)
    return text


def _looks_like_json(body: str) -> bool:
    start = body.lstrip()[:1]
    return start in ("[", "{") or bool(_JSON_AHEAD.search(body))


def _mostly_skipped(reading: lenient_json.Reading, body: str) -> bool:
    visible = len(re.findall(r"\S", body))
    return visible > 0 and reading.skipped * 2 > visible


def _is_empty_layout(values: list) -> bool:
    """`[]`, `{}` or `{"layout": []}`: the model found nothing on the page."""

    def empty(v: object) -> bool:
        if isinstance(v, list):
            return not v
        return isinstance(v, dict) and all(isinstance(x, list) and not x for x in v.values())

    return bool(values) and all(empty(v) for v in values)


def _plural(n: int, one: str, many: str) -> str:
    return one.format(n=n) if n == 1 else many.format(n=n)


def parse_output(
    raw: str,
    mode: str = LAYOUT_ALL,
    sent_size: Sequence[int] | None = None,
    original_size: Sequence[int] | None = None,
    *,
    grounding_box: Sequence[float] | None = None,
    hit_token_limit: bool = False,
) -> ParsedPage:
    """Read the model's answer for one page.

    `mode` is one of prompts.MODES. `sent_size` and `original_size` are (width, height) of the
    image the model was sent and of the page image; boxes come back in original pixels (with either
    size unknown, they stay as the model gave them). `grounding_box` is the box a grounding prompt
    asked about, in sent pixels: the answer's text becomes one element with that box.
    `hit_token_limit` (the backend saw generation stop at its limit) marks the page truncated.
    """
    try:
        return _parse(raw, mode, sent_size, original_size, grounding_box, hit_token_limit)
    except Exception:  # a last guard: an imperfect answer must never fail a page
        page = ParsedPage(mode=mode if mode in MODES else LAYOUT_ALL, truncated=bool(hit_token_limit))
        try:
            text = normalize_text(raw) if isinstance(raw, str) else ""
        except Exception:
            text = ""
        if text:
            page.elements = [Element("Text", None, text, 0)]
            page.text = text
            page.plain_text_fallback = mode in (LAYOUT_ALL, LAYOUT_ONLY)
        page.warnings.append("The model's answer could not be read as a layout; its text is shown as it came.")
        return page


def _size(value: Sequence[int] | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        size = (int(value[0]), int(value[1]))
    except (TypeError, ValueError, IndexError):
        return None
    return size if boxes.valid_size(size) else None


def _parse(raw, mode, sent_size, original_size, grounding_box, hit_token_limit) -> ParsedPage:
    warnings: list[str] = []
    if mode not in MODES:
        warnings.append(f"Unknown task {str(mode)[:40]!r}: the answer was read as a full layout.")
        mode = LAYOUT_ALL
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="ignore")
    elif not isinstance(raw, str):
        raw = "" if raw is None else str(raw)
    sent = _size(sent_size)
    original = _size(original_size)
    page = ParsedPage(mode=mode, sent_size=sent, original_size=original, truncated=bool(hit_token_limit))
    notes = _Notes()

    body = _strip_fences(raw)
    if not body.strip():
        page.warnings = warnings + ["The model's answer was empty: nothing was found on this page."]
        if hit_token_limit:
            page.warnings.append("The model stopped at its output limit before writing anything.")
        return page

    candidates: list[_Candidate] | None = None
    reading = None
    answered_layout_instead = False
    if mode in (LAYOUT_ALL, LAYOUT_ONLY) or body.lstrip()[:1] in ("[", "{"):
        if _looks_like_json(body):
            reading = lenient_json.read(body)
            objects: list[dict] = []
            stats: Counter = Counter()
            for value in reading.values:
                _collect(value, objects, stats)
            if mode in (LAYOUT_ALL, LAYOUT_ONLY):
                # No element at all: a blank page ("[]"), a layout cut off before its first element
                # was written, or no layout (plain text that happens to hold brackets).
                empty_layout = _is_empty_layout(reading.values) and reading.skipped <= 3  # a stray backtick
                if objects or empty_layout or (reading.cut and not _mostly_skipped(reading, body)):
                    candidates = [c for c in (_candidate(o, mode, notes) for o in objects) if c is not None]
                    notes.count["not_elements"] += stats["not_elements"]
                    notes.count["empty_layout"] += empty_layout
            elif objects and reading.skipped == 0:
                # Text or grounding asked for, a layout came back: use it.
                candidates = [c for c in (_candidate(o, LAYOUT_ALL, notes) for o in objects) if c is not None]
                answered_layout_instead = mode == TEXT_ONLY
                if mode == GROUNDING:
                    texts = [c.text for c in candidates if c.text]
                    candidates = None
                    body = "\n\n".join(texts)
                    reading = None

    if candidates is None:
        return _plain(page, body, mode, warnings, grounding_box, hit_token_limit)

    if reading is not None and reading.cut:
        page.truncated = True
    last_incomplete = bool(candidates) and not candidates[-1].complete

    # Loops inside a text, then repeated elements.
    for c in candidates:
        if c.text:
            c.text, cuts = cut_loops(c.text)
            page.loops_cut += cuts
    kept: list[_Candidate] = []
    seen_exact: set = set()
    seen_boxes: set = set()
    pair_counts = Counter((c.category, c.text) for c in candidates if c.text)
    seen_pairs: set = set()
    for c in candidates:
        box_key = tuple(c.box) if c.box is not None else None
        exact = (c.category, box_key, c.text)
        pair = (c.category, c.text)
        if exact in seen_exact:
            page.repeated_dropped += 1
            continue
        if box_key is not None and box_key in seen_boxes:
            page.repeated_dropped += 1
            continue
        if c.text and pair_counts[pair] >= REPEATED_TEXT_LIMIT and pair in seen_pairs:
            page.repeated_dropped += 1
            continue
        seen_exact.add(exact)
        if box_key is not None:
            seen_boxes.add(box_key)
        seen_pairs.add(pair)
        kept.append(c)

    # Boxes to the original image. With a size unknown they stay as given, inside what is known.
    if sent and original:
        sx, sy = original[0] / sent[0], original[1] / sent[1]
    else:
        sx = sy = 1.0
    bounds = original or sent
    tolerance = 2 * max(sx, sy)
    elements: list[Element] = []
    for c in kept:
        bbox = None
        if c.box is not None:
            fixed = boxes.fix_box(boxes.sent_to_original(c.box, sx, sy), bounds, tolerance=tolerance)
            bbox = fixed.box
            notes.count["box_swapped"] += fixed.swapped
            notes.count["box_clamped"] += fixed.clamped
            notes.count["box_outside"] += fixed.outside
            notes.count["box_widened"] += fixed.widened
        elements.append(Element(c.category, bbox, c.text, len(elements), c.complete))
    if mode in (LAYOUT_ALL, LAYOUT_ONLY) and elements and not (sent and original):
        warnings.append("The page size was not known, so boxes are in the pixels of the image the model saw.")

    page.elements = elements
    page.text = plain_text(elements)
    cut_element_kept = last_incomplete and bool(elements) and not elements[-1].complete

    if answered_layout_instead:
        warnings.append("The model answered with a layout instead of plain text; its elements were used.")
    if page.truncated:
        complete_count = sum(1 for e in elements if e.complete)
        if reading is not None and reading.cut:
            sentence = "The model's answer was cut off before its end (it probably reached its output limit); "
            if complete_count:
                sentence += _plural(complete_count, "the {n} complete element before the cut was kept",
                                    "the {n} complete elements before the cut were kept")
            else:
                sentence += "no element was complete before the cut"
            if cut_element_kept:
                sentence += ", and the text of the element it stopped in is incomplete"
            warnings.append(sentence + ".")
        else:
            warnings.append("The model stopped at its output limit, so the end of this page may be missing.")
    warnings += _sentences(notes, page, reading)
    page.warnings = warnings
    return page


def _plain(page: ParsedPage, body: str, mode: str, warnings: list[str], grounding_box, hit_token_limit):
    """The answer as plain text: the text and grounding tasks, or a layout the model did not give."""
    text = normalize_text(body)
    text, cuts = cut_loops(text)
    page.loops_cut = cuts
    if not text:
        page.warnings = warnings + ["The model's answer was empty: nothing was found on this page."]
        return page
    bbox = None
    if mode == GROUNDING and grounding_box is not None:
        numbers = _box_numbers(list(grounding_box))
        if numbers and len(numbers) == 4:
            sent, original = page.sent_size, page.original_size
            if sent and original:
                sx, sy = original[0] / sent[0], original[1] / sent[1]
                bbox = boxes.fix_box(boxes.sent_to_original(numbers, sx, sy), original).box
            else:
                bbox = boxes.fix_box(numbers, None).box  # type: ignore[arg-type]
    page.elements = [Element("Text", bbox, text, 0)]
    page.text = text
    if mode in (LAYOUT_ALL, LAYOUT_ONLY):
        page.plain_text_fallback = True
        warnings.append(
            "The model answered with plain text instead of a layout, so this page has its text but no boxes."
        )
    if hit_token_limit:
        page.truncated = True
        warnings.append("The model stopped at its output limit, so the end of this page may be missing.")
    if cuts:
        warnings.append(
            _plural(cuts, "A phrase the model repeated over and over was cut short.",
                    "Phrases the model repeated over and over were cut short in {n} places.")
        )
    page.warnings = warnings
    return page


def _sentences(notes: _Notes, page: ParsedPage, reading) -> list[str]:
    n = notes.count
    out: list[str] = []
    if n["empty_layout"]:
        out.append("The model found nothing on this page.")
    if page.repeated_dropped:
        out.append(_plural(page.repeated_dropped, "A repeated element was dropped (the model repeated itself).",
                           "{n} repeated elements were dropped (the model repeated itself)."))
    if page.loops_cut:
        out.append(_plural(page.loops_cut, "A phrase the model repeated over and over was cut short.",
                           "Phrases the model repeated over and over were cut short in {n} places."))
    if notes.unknown:
        out.append("Unknown categories were read as Text: " + ", ".join(notes.unknown[:5]) + ".")
    if notes.synonyms:
        out.append("Categories were read as dots.ocr's own: " + ", ".join(notes.synonyms[:5]) + ".")
    if n["no_category"]:
        out.append(_plural(n["no_category"], "An element had no category and was read as Text.",
                           "{n} elements had no category and were read as Text."))
    if n["box_not_four"]:
        out.append(_plural(n["box_not_four"], "A box did not have four numbers and was dropped; its text was kept.",
                           "{n} boxes did not have four numbers and were dropped; their text was kept."))
    if n["no_box"] and page.mode in (LAYOUT_ALL, LAYOUT_ONLY):
        out.append(_plural(n["no_box"], "An element had no box.", "{n} elements had no box."))
    if n["box_outside"]:
        out.append(_plural(n["box_outside"], "A box lay wholly outside the page and was dropped; its text was kept.",
                           "{n} boxes lay wholly outside the page and were dropped; their text was kept."))
    if n["box_clamped"]:
        out.append(_plural(n["box_clamped"], "A box reached past the edge of the page and was cut to it.",
                           "{n} boxes reached past the edge of the page and were cut to it."))
    if n["box_swapped"]:
        out.append(_plural(n["box_swapped"], "A box had its corners swapped and was put in order.",
                           "{n} boxes had their corners swapped and were put in order."))
    if n["box_widened"]:
        out.append(_plural(n["box_widened"], "A box had no width or height and was widened to one pixel.",
                           "{n} boxes had no width or height and were widened to one pixel."))
    if n["text_structured"]:
        out.append(_plural(n["text_structured"], "An element's text was not a string; the strings in it were kept.",
                           "{n} elements' text was not a string; the strings in it were kept."))
    if n["text_not text"]:
        out.append(_plural(n["text_not text"], "An element's text was not text and was left out.",
                           "{n} elements' text was not text and was left out."))
    if n["not_elements"]:
        out.append(_plural(n["not_elements"], "An object in the answer was not a layout element and was left out.",
                           "{n} objects in the answer were not layout elements and were left out."))
    if reading is not None and reading.skipped:
        out.append(_plural(reading.skipped, "A character of the answer outside any element was left out.",
                           "{n} characters of the answer outside any element were left out."))
    return out
