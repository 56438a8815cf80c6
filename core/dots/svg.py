"""dots.mocr's SVG answer (task image_to_svg), made safe to serve.

The model answers `Please generate the SVG code based on the image.viewBox="0 0 W H"` with SVG
code, often cut at the token limit (upstream closes it: rednote-hilab/dots.mocr at 23f3e5612fb8,
dots_mocr/utils/svg_utils.py `extract_svg_from_response` and `fix_svg`). The code is untrusted:
it could carry script, event handlers, `foreignObject` with HTML, links to other sites, or
`javascript:` addresses. So the answer is rebuilt, not filtered: the XML is read (no DOCTYPE, no
entities), and a new document is written holding only drawing elements and presentation
attributes from the lists below; any reference that is not to the document itself (`#id`) is
dropped. The result is still served only as an image (`<img>`, its own content type and a
sandboxing Content-Security-Policy: ocr_app/serving.py), never inlined into a page.

A cut-off answer has its last partial tag dropped and every open tag closed, and the page is
marked truncated. A loop (the same element again and again until the limit) is cut first.
Never raises: an answer that cannot be read as SVG keeps its text and has no SVG.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from xml.sax.saxutils import escape, quoteattr

from core.dots.parse import Element, ParsedPage, cut_loops, normalize_text
from core.dots.prompts import IMAGE_TO_SVG

SVG_NS = "http://www.w3.org/2000/svg"
MAX_SVG_CHARS = 4_000_000
MAX_DEPTH = 64
TRUNCATED_NOTE = "truncated: the model's answer ended early and ocrdash closed its open tags"

ELEMENTS = frozenset(
    {
        "svg",
        "g",
        "defs",
        "title",
        "desc",
        "path",
        "rect",
        "circle",
        "ellipse",
        "line",
        "polyline",
        "polygon",
        "text",
        "tspan",
        "textPath",
        "linearGradient",
        "radialGradient",
        "stop",
        "clipPath",
        "mask",
        "pattern",
        "marker",
        "symbol",
        "use",
    }
)
ATTRIBUTES = frozenset(
    {
        "id",
        "class",
        "viewBox",
        "width",
        "height",
        "x",
        "y",
        "x1",
        "y1",
        "x2",
        "y2",
        "cx",
        "cy",
        "r",
        "rx",
        "ry",
        "d",
        "points",
        "transform",
        "fill",
        "fill-opacity",
        "fill-rule",
        "stroke",
        "stroke-width",
        "stroke-opacity",
        "stroke-linecap",
        "stroke-linejoin",
        "stroke-dasharray",
        "stroke-dashoffset",
        "stroke-miterlimit",
        "opacity",
        "font-family",
        "font-size",
        "font-weight",
        "font-style",
        "text-anchor",
        "dominant-baseline",
        "alignment-baseline",
        "baseline-shift",
        "letter-spacing",
        "word-spacing",
        "dx",
        "dy",
        "rotate",
        "textLength",
        "lengthAdjust",
        "offset",
        "stop-color",
        "stop-opacity",
        "gradientUnits",
        "gradientTransform",
        "spreadMethod",
        "fx",
        "fy",
        "clip-path",
        "clip-rule",
        "mask",
        "marker-start",
        "marker-mid",
        "marker-end",
        "markerWidth",
        "markerHeight",
        "markerUnits",
        "refX",
        "refY",
        "orient",
        "patternUnits",
        "patternTransform",
        "patternContentUnits",
        "clipPathUnits",
        "maskUnits",
        "maskContentUnits",
        "preserveAspectRatio",
        "visibility",
        "display",
        "color",
        "style",
        "href",
        "xml:space",
        "startOffset",
        "vector-effect",
    }
)
# Links and switches are unwrapped: what they draw stays, the link goes. Any other element not
# listed (script, style, foreignObject, image, animation…) is dropped with all it holds.
UNWRAPPED = frozenset({"a", "switch"})
# Values that reach outside the document or run code.
_DANGEROUS_VALUE = re.compile(r"javascript:|vbscript:|data:|expression\s*\(|@import|behavior\s*:|-moz-binding", re.I)
_URL = re.compile(r"url\(\s*(['\"]?)(.*?)\1\s*\)", re.I | re.S)
_SVG_START = re.compile(r"<svg\b", re.I)
_SVG_END = re.compile(r"</svg\s*>", re.I)
_DECLARATIONS = re.compile(r"<!DOCTYPE[^>\[]*(\[.*?\])?\s*>|<!ENTITY[^>]*>|<\?.*?\?>", re.I | re.S)
_PARTIAL_TAG = re.compile(r"<[^>]*\Z")
_TAG = re.compile(r"<(/?)\s*([A-Za-z][\w:.-]*)\b[^>]*?(/?)>")
_XML_ENTITIES = {"amp", "lt", "gt", "quot", "apos"}
_ENTITY = re.compile(r"&(#\d+|#x[0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]*);?")


def _local(name: str) -> str:
    return name.rsplit("}", 1)[-1]


def close_tags(svg: str) -> str:
    """`svg` with a cut-off last tag dropped and every tag still open closed, innermost first."""
    if re.search(r"<path\b[^>]*\bd=\"[^\">]*\Z", svg):
        svg += '"/>'  # a path cut inside its d="…": keep what was drawn (upstream's fix_svg does the same)
    svg = _PARTIAL_TAG.sub("", svg)
    stack: list[str] = []
    for match in _TAG.finditer(svg):
        closing, name, self_closing = match.group(1), match.group(2), match.group(3)
        if self_closing:
            continue
        if not closing:
            stack.append(name)
        elif name in stack:
            while stack and stack[-1] != name:
                stack.pop()
            stack.pop()
    return svg + "".join(f"</{name}>" for name in reversed(stack))


def _safe_reference(value: str) -> bool:
    return value.strip().startswith("#") and not _DANGEROUS_VALUE.search(value)


def _safe_value(name: str, value: str) -> bool:
    if _DANGEROUS_VALUE.search(value):
        return False
    if name == "href":
        return _safe_reference(value)
    # url(…) in fill, clip-path, style…: only to this document.
    return all(_safe_reference(m.group(2)) for m in _URL.finditer(value))


def _entities(text: str) -> str:
    """HTML entities the model may write (&nbsp;) as characters; XML's own stay."""
    import html

    def one(match: re.Match) -> str:
        body = match.group(1)
        if body in _XML_ENTITIES or body.startswith("#"):
            return match.group(0) if match.group(0).endswith(";") else match.group(0) + ";"
        decoded = html.unescape(match.group(0))
        return escape(decoded) if decoded != match.group(0) else "&amp;" + match.group(0)[1:]

    return _ENTITY.sub(one, text)


class _Writer:
    def __init__(self) -> None:
        self.parts: list[str] = []
        self.dropped: set[str] = set()

    def element(self, node: ET.Element, depth: int, root: bool = False) -> None:
        name = _local(node.tag) if isinstance(node.tag, str) else ""
        if name in UNWRAPPED and not root and depth <= MAX_DEPTH:
            self.dropped.add(name)
            self.children(node, depth)
            return
        if name not in ELEMENTS or depth > MAX_DEPTH:
            self.dropped.add(name or "comment")
            return
        attrs = []
        if root:
            attrs.append(f'xmlns="{SVG_NS}"')
        for key, value in node.attrib.items():
            local = _local(key)
            if local == "space" and key.startswith("{http://www.w3.org/XML/1998/namespace}"):
                local = "xml:space"
            if local not in ATTRIBUTES or local.lower().startswith("on"):
                self.dropped.add(f"@{local}")
                continue
            if not _safe_value(local, value):
                self.dropped.add(f"@{local}")
                continue
            attrs.append(f"{local}={quoteattr(value)}")
        self.parts.append(f"<{name}{' ' if attrs else ''}{' '.join(attrs)}>")
        self.children(node, depth)
        self.parts.append(f"</{name}>")

    def children(self, node: ET.Element, depth: int) -> None:
        if node.text:
            self.parts.append(escape(node.text))
        for child in node:
            self.element(child, depth + 1)
            if child.tail:
                self.parts.append(escape(child.tail))


def sanitize(code: str) -> tuple[str | None, set[str]]:
    """A safe SVG document rebuilt from `code` (a complete <svg>…</svg>), and what was left out;
    None when it cannot be read as XML."""
    code = _entities(_DECLARATIONS.sub("", code))
    try:
        root = ET.fromstring(code)
    except ET.ParseError:
        return None, set()
    if _local(root.tag) != "svg":
        return None, set()
    writer = _Writer()
    writer.element(root, 0, root=True)
    return "".join(writer.parts), writer.dropped


def parse_svg(
    raw: str,
    original_size: Sequence[int] | None = None,
    *,
    hit_token_limit: bool = False,
) -> ParsedPage:
    size = tuple(int(v) for v in original_size) if original_size else None
    page = ParsedPage(mode=IMAGE_TO_SVG, original_size=size, sent_size=size, truncated=bool(hit_token_limit))
    raw = raw if isinstance(raw, str) else ""
    warnings: list[str] = []
    body, cuts = cut_loops(
        raw[:MAX_SVG_CHARS].replace("svg:", "", 1) if raw.lstrip().startswith("svg:") else raw[:MAX_SVG_CHARS]
    )
    page.loops_cut = cuts
    start = _SVG_START.search(body)
    if not start:
        text = normalize_text(raw)
        page.text = text
        page.elements = [Element("Text", None, text, 0)] if text else []
        page.plain_text_fallback = True
        page.warnings = ["The model answered without SVG code; its text is shown as it came."]
        return page
    body = body[start.start() :]
    end = _SVG_END.search(body)
    cut = end is None or len(raw) > MAX_SVG_CHARS or bool(cuts)
    body = body[: end.end()] if end else close_tags(body)
    svg, dropped = sanitize(body)
    if svg is None:
        page.text = normalize_text(body)
        page.warnings = [
            "The model's SVG code could not be read as XML, so there is no picture; its code is kept as text."
        ]
        page.truncated = page.truncated or cut
        return page
    if cut:
        page.truncated = True
        svg = svg.replace(">", f"><!-- {TRUNCATED_NOTE} -->", 1)
        warnings.append(
            "The SVG code was cut off before its end; its open tags were closed, so the end of "
            "the drawing may be missing."
        )
    if cuts:
        warnings.append("A part the model repeated over and over was cut short.")
    if dropped:
        shown = ", ".join(sorted(dropped)[:8])
        warnings.append(f"Parts that are not plain drawing were removed from the SVG ({shown}).")
    page.svg = svg
    page.text = _svg_text(svg)
    page.warnings = warnings
    return page


def _svg_text(svg: str) -> str:
    """The words written in the drawing, one text element a line (for search and the text download)."""
    try:
        root = ET.fromstring(svg)
    except ET.ParseError:
        return ""
    lines = []
    for node in root.iter():
        if _local(node.tag) == "text":
            words = " ".join("".join(node.itertext()).split())
            if words:
                lines.append(words)
    return "\n".join(lines)
