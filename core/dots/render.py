"""Pages of elements as Markdown, HTML, plain text and layout JSON; Picture crops.

Markdown follows dots.ocr's own `layoutjson2md` (``dots_ocr/utils/format_transformer.py``):
elements in reading order, a blank line between them, formulas as ``$$`` display math, tables as
their HTML, pictures as image links, page headers and footers optionally left out (their
"nohf" Markdown, used for benchmarks). Titles and section headers become Markdown headings.

HTML is for showing in a browser, so everything the model wrote is treated as untrusted: text is
escaped, table HTML is rebuilt from a whitelist (`tables.sanitize_table_html`), formulas stay TeX
inside ``<span class="math">\\[...\\]</span>`` for a client-side renderer, and picture sources
are checked. Nothing here runs a script or loads anything from elsewhere.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Mapping, Sequence

from PIL import Image

from core.dots.parse import HEADER_FOOTER, Element, ParsedPage, plain_text
from core.dots.tables import looks_like_html, sanitize_table_html

# picture_name(page_number, element) -> file name or URL of the element's crop, or None.
PictureNames = Callable[[int, Element], "str | None"] | Mapping
Pages = ParsedPage | Sequence[ParsedPage]

_HEADING_MARKS = re.compile(r"\A#{1,6}[ \t]*")
_BLANK_LINES = re.compile(r"\n[ \t]*\n+")
_RICH_SPLIT = re.compile(r"(<table\b.*?</table\s*>|\$\$.+?\$\$)", re.S | re.I)
_MD_HEADING = re.compile(r"\A(#{1,6})[ \t]+(.+)\Z", re.S)
_MD_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*")
_BULLET = re.compile(r"\A[-*+•·▪◦][ \t]+")
_SCHEME = re.compile(r"\A\s*([A-Za-z][A-Za-z0-9+.\-]*):")
# Embedded crops: only base64 PNG or JPEG (not SVG, which is a document of its own).
_DATA_IMAGE = re.compile(r"\Adata:image/(?:png|jpeg);base64,[A-Za-z0-9+/]*={0,2}\Z")
# Where Markdown viewers take raw HTML, a comment or an autolink: "<" before a letter, "/", "!" or "?".
_MARKUP_START = re.compile(r"<(?=[A-Za-z/!?])")
# A Markdown link or image destination, inline ("](dest") or a reference definition ("[x]: dest").
_LINK_DESTINATION = re.compile(r"(\]\(|^[ ]{0,3}\[[^\]\n]+\]:)([ \t]*\n?[ \t]*)(<[^>\n]*>?|[^)\s]*)", re.M)
_URL_IGNORED = re.compile(r"[\x00-\x20\x7f]+")  # browsers drop tabs and newlines inside a URL

STYLE = """
body { font-family: system-ui, sans-serif; line-height: 1.5; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; }
section.page + section.page { border-top: 1px solid #ccc; margin-top: 2rem; padding-top: 1rem; }
table { border-collapse: collapse; margin: 1rem 0; }
th, td { border: 1px solid #999; padding: 0.2rem 0.4rem; vertical-align: top; }
.cat-caption, .cat-footnote, .cat-page-header, .cat-page-footer { color: #555; font-size: 0.9em; }
.cat-formula { margin: 1rem 0; overflow-x: auto; }
.incomplete { border-left: 3px solid #d90; padding-left: 0.5rem; }
figure img { max-width: 100%; }
pre { white-space: pre-wrap; }
""".strip()


def _pages(pages: Pages) -> list[ParsedPage]:
    return [pages] if isinstance(pages, ParsedPage) else list(pages)


def _numbered(pages: Pages) -> list[tuple[int, ParsedPage]]:
    return [(p.page_number or i, p) for i, p in enumerate(_pages(pages), start=1)]


def _visible(page: ParsedPage, include_headers_footers: bool) -> list[Element]:
    return [e for e in page.elements if include_headers_footers or e.category not in HEADER_FOOTER]


def picture_filename(page_number: int, element: Element, ext: str = "png") -> str:
    """The file name a Picture crop is saved under: page-003-picture-007.png."""
    return f"page-{page_number:03d}-picture-{element.index:03d}.{ext}"


def _picture_src(pictures: PictureNames | None, page_number: int, element: Element) -> str | None:
    if pictures is None:
        return None
    if callable(pictures):
        name = pictures(page_number, element)
    else:
        name = pictures.get((page_number, element.index), pictures.get(element.index))
    return name or None


def formula_tex(text: str) -> str:
    """A Formula element's LaTeX without the delimiters the model sometimes puts around it."""
    tex = text.strip()
    fence = re.fullmatch(r"```[A-Za-z]*\s*\n?(.*?)\n?```", tex, re.S)
    if fence:
        tex = fence.group(1).strip()
    for left, right in (("$$", "$$"), ("\\[", "\\]"), ("\\(", "\\)"), ("$", "$")):
        if len(tex) > len(left) + len(right) and tex.startswith(left) and tex.endswith(right):
            inner = tex[len(left) : -len(right)]
            if left == "$" and "$" in inner:
                continue
            tex = inner.strip()
            break
    return _BLANK_LINES.sub("\n", tex)


# -- Markdown -----------------------------------------------------------------------------------
#
# A Markdown file is shown by viewers (GitHub, editors, wikis) that take raw HTML and follow links,
# so the model's text goes in as text: "<" that would open a tag, a comment or an autolink is
# written "&lt;" (the viewer shows "<"), and a link or image to anything but http(s), mailto or a
# relative address is written so that it stays text. Tables are the sanitized table HTML, as in
# the HTML export.


def _safe_link(destination: str) -> bool:
    url = _URL_IGNORED.sub("", html.unescape(destination)).strip("<>")
    m = _SCHEME.match(url)
    return not m or m.group(1).lower() in ("http", "https", "mailto") or bool(_DATA_IMAGE.match(url))


def _inert_links(text: str) -> str:
    def check(m: re.Match) -> str:
        if _safe_link(m.group(3)):
            return m.group(0)
        opener = m.group(1)
        # "]\(" is no link; a reference definition loses its "[" the same way.
        opener = "]\\(" if opener == "](" else "\\" + opener.lstrip(" ")
        return opener + m.group(2) + m.group(3)

    return _LINK_DESTINATION.sub(check, text)


def _markdown_plain(text: str) -> str:
    return _MARKUP_START.sub("&lt;", _inert_links(text))


def markdown_text(text: str) -> str:
    """Model text for a Markdown file: shown as written, never run or followed to a script. Tables
    and $$ display math in it (text-mode answers hold both) stay tables and math."""
    out = []
    for i, segment in enumerate(_RICH_SPLIT.split(text)):
        if not i % 2:
            out.append(_markdown_plain(segment))
        elif segment.startswith("$$"):
            out.append(_markdown_tex(segment))
        else:
            out.append(_BLANK_LINES.sub("\n", sanitize_table_html(segment)))
    return "".join(out)


def _markdown_tex(tex: str) -> str:
    # Inside $$ a "<" is TeX's relation sign: a space after it keeps the formula and ends any tag.
    return _MARKUP_START.sub("< ", _inert_links(tex))


def element_markdown(element: Element, picture_src: str | None = None) -> str:
    text = element.text.strip()
    category = element.category
    if category == "Picture":
        return f"![Picture]({picture_src})" if picture_src and _safe_link(picture_src) else ""
    if not text:
        return ""
    if category in ("Title", "Section-header"):
        heading = " ".join(_HEADING_MARKS.sub("", text).split())
        return ("# " if category == "Title" else "## ") + markdown_text(heading) if heading else ""
    if category == "Formula":
        tex = formula_tex(text)
        return f"$$\n{_markdown_tex(tex)}\n$$" if tex else ""
    if category == "Table" and looks_like_html(text):
        # An HTML block in Markdown ends at a blank line: keep the table in one block.
        return _BLANK_LINES.sub("\n", sanitize_table_html(text))
    return markdown_text(text)


def page_markdown(page: ParsedPage, include_headers_footers: bool = True, pictures: PictureNames | None = None,
                  page_number: int = 1) -> str:
    out = ""
    previous = None
    for e in _visible(page, include_headers_footers):
        src = _picture_src(pictures, page_number, e) if e.category == "Picture" else None
        md = element_markdown(e, src)
        if not md:
            continue
        if out:  # list items in a row make one list; everything else is its own block
            out += "\n" if previous == e.category == "List-item" else "\n\n"
        out += md
        previous = e.category
    return out


def to_markdown(pages: Pages, include_headers_footers: bool = True, pictures: PictureNames | None = None) -> str:
    """Markdown of one page or a document. `pictures` gives each Picture's crop file name: a
    function (page_number, element) -> name, or a mapping {(page_number, index): name} (or
    {index: name} for one page); pictures without a name are left out. Pages of a document are
    marked with an HTML comment, ``<!-- page 2 -->``, which Markdown viewers do not show."""
    numbered = _numbered(pages)
    if len(numbered) == 1:
        number, page = numbered[0]
        out = page_markdown(page, include_headers_footers, pictures, number)
    else:
        out = "\n\n".join(
            f"<!-- page {number} -->\n\n{page_markdown(page, include_headers_footers, pictures, number)}".rstrip()
            for number, page in numbered
        )
    return out + "\n" if out else ""


# -- HTML ---------------------------------------------------------------------------------------


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _inline_html(text: str) -> str:
    """Escaped text, with Markdown's **bold** as <strong> (the only markup the model uses much)."""
    return _MD_BOLD.sub(r"<strong>\1</strong>", _esc(text))


def _lines_html(text: str) -> str:
    return "<br>\n".join(_inline_html(line) for line in text.split("\n"))


def _math_html(tex: str) -> str:
    return f'<span class="math">\\[{_esc(tex)}\\]</span>'


def _rich_html(text: str) -> str:
    """Markdown text as safe HTML: paragraphs and line breaks, tables and $$ display math inside
    it as tables and math; everything else shown as written."""
    out = []
    for i, segment in enumerate(_RICH_SPLIT.split(text)):
        if i % 2:
            if segment.startswith("$$"):
                out.append(f'<div class="math-block">{_math_html(formula_tex(segment))}</div>')
            else:
                out.append(sanitize_table_html(segment))
            continue
        for para in _BLANK_LINES.split(segment.strip("\n")):
            para = para.strip()
            heading = _MD_HEADING.match(para)
            if heading and "\n" not in para:
                level = len(heading.group(1))
                out.append(f'<h{level} dir="auto">{_inline_html(heading.group(2))}</h{level}>')
            elif para:
                out.append(f'<p dir="auto">{_lines_html(para)}</p>')
    return "\n".join(out)


def _safe_src(src: str) -> str | None:
    """A relative name, an http(s) address or an embedded PNG/JPEG; any other scheme is refused."""
    m = _SCHEME.match(src)
    if m and m.group(1).lower() not in ("http", "https") and not _DATA_IMAGE.match(src):
        return None
    return src


def element_html(element: Element, picture_src: str | None = None) -> str:
    category = element.category
    classes = f"el cat-{category.lower()}" + ("" if element.complete else " incomplete")
    attrs = f'class="{_esc(classes)}" data-index="{element.index}" data-category="{_esc(category)}"'
    if not element.complete:
        attrs += ' title="The answer was cut off inside this element: its text is incomplete."'
    text = element.text.strip()
    if category == "Picture":
        src = _safe_src(picture_src) if picture_src else None
        return f'<figure {attrs}><img src="{_esc(src)}" alt="Picture"></figure>' if src else ""
    if not text:
        return ""
    if category in ("Title", "Section-header"):
        tag = "h1" if category == "Title" else "h2"
        heading = " ".join(_HEADING_MARKS.sub("", text).split())
        return f'<{tag} {attrs} dir="auto">{_esc(heading)}</{tag}>'
    if category == "Formula":
        return f"<div {attrs}>{_math_html(formula_tex(text))}</div>"
    if category == "Table":
        if looks_like_html(text):
            return f"<div {attrs}>{sanitize_table_html(text)}</div>"
        return f'<div {attrs}><pre dir="auto">{_esc(text)}</pre></div>'
    if category == "List-item":
        return f'<li {attrs} dir="auto">{_lines_html(_BULLET.sub("", text))}</li>'
    return f"<div {attrs}>\n{_rich_html(text)}\n</div>"


def page_html(page: ParsedPage, include_headers_footers: bool = True, pictures: PictureNames | None = None,
              page_number: int = 1) -> str:
    parts = []
    in_list = False
    for e in _visible(page, include_headers_footers):
        src = _picture_src(pictures, page_number, e) if e.category == "Picture" else None
        block = element_html(e, src)
        if not block:
            continue
        is_item = e.category == "List-item"
        if is_item and not in_list:
            parts.append('<ul class="list">')
        elif not is_item and in_list:
            parts.append("</ul>")
        in_list = is_item
        parts.append(block)
    if in_list:
        parts.append("</ul>")
    body = "\n".join(parts)
    return f'<section class="page" id="page-{page_number}" data-page="{page_number}">\n{body}\n</section>'


def to_html_fragment(pages: Pages, include_headers_footers: bool = True, pictures: PictureNames | None = None) -> str:
    """The pages as HTML to put inside a page of the dashboard (one <section> per page)."""
    return "\n".join(page_html(p, include_headers_footers, pictures, n) for n, p in _numbered(pages))


def to_html(pages: Pages, include_headers_footers: bool = True, pictures: PictureNames | None = None,
            title: str = "OCR result") -> str:
    """A standalone HTML document of the pages (`pictures` as for `to_markdown`)."""
    body = to_html_fragment(pages, include_headers_footers, pictures)
    return (
        "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\">\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{_esc(title)}</title>\n<style>\n{STYLE}\n</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


# -- text, layout JSON, pictures ----------------------------------------------------------------


def to_text(pages: Pages, include_headers_footers: bool = True) -> str:
    """Plain text in reading order; pages of a document separated by a form feed line."""
    texts = [plain_text(_visible(p, include_headers_footers)) for p in _pages(pages)]
    out = "\n\f\n".join(texts)
    return out + "\n" if out.strip() else ""


def layout_dict(pages: Pages) -> dict:
    """Every page's elements with boxes in original-image pixels, as plain JSON-able data."""
    out = []
    for number, page in _numbered(pages):
        size = page.original_size or page.sent_size
        out.append({
            "page": number,
            "width": size[0] if size else None,
            "height": size[1] if size else None,
            "mode": page.mode,
            "truncated": page.truncated,
            "plain_text_fallback": page.plain_text_fallback,
            "repeated_dropped": page.repeated_dropped,
            "warnings": list(page.warnings),
            "elements": [e.to_dict() for e in page.elements],
        })
    return {"version": 1, "coordinates": "original image pixels, [x1, y1, x2, y2]", "pages": out}


def to_layout_json(pages: Pages, indent: int | None = 2) -> str:
    return json.dumps(layout_dict(pages), ensure_ascii=False, indent=indent) + "\n"


def crop_pictures(image: Image.Image, elements: Sequence[Element]) -> dict[int, Image.Image]:
    """{element index: crop} for each Picture element with a box, from the page image the boxes
    are in (the original image)."""
    crops: dict[int, Image.Image] = {}
    w, h = image.size
    for e in elements:
        if e.category != "Picture" or e.bbox is None:
            continue
        x1, y1, x2, y2 = e.bbox
        x1, x2 = max(0, min(x1, w)), max(0, min(x2, w))
        y1, y2 = max(0, min(y1, h)), max(0, min(y2, h))
        if x2 > x1 and y2 > y1:
            crops[e.index] = image.crop((x1, y1, x2, y2))
    return crops
