"""Table HTML from the model: made safe to show, and read as plain text.

dots.ocr writes each Table element's text as HTML. That HTML is model output, so it is untrusted:
`sanitize_table_html` rebuilds it from a whitelist (table structure, a few inline text tags, and
only the colspan/rowspan/span attributes, as small whole numbers). Everything else is dropped;
the text of dropped tags is kept and escaped, except inside script-like tags, whose content is
dropped too. The output is written by this module tag by tag, never copied from the input, so it
is well formed: every tag it opens it closes.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

TABLE_TAGS = frozenset({"table", "caption", "colgroup", "col", "thead", "tbody", "tfoot", "tr", "th", "td"})
INLINE_TAGS = frozenset({"br", "b", "strong", "i", "em", "u", "s", "sub", "sup"})
ALLOWED_TAGS = TABLE_TAGS | INLINE_TAGS
VOID_TAGS = frozenset({"br", "col"})
ALLOWED_ATTRIBUTES = {
    "th": ("colspan", "rowspan"), "td": ("colspan", "rowspan"), "col": ("span",), "colgroup": ("span",),
}
# Tags whose content is not text to show.
DROP_CONTENT_TAGS = frozenset(
    {"script", "style", "iframe", "object", "embed", "noscript", "template", "textarea", "title", "xmp", "svg",
     "math", "select", "head", "noembed", "noframes", "plaintext"}
)
_SECTIONS = frozenset({"thead", "tbody", "tfoot"})
_IMPLIED_END = {
    "td": (frozenset({"td", "th"}), frozenset({"tr", "table"})),
    "th": (frozenset({"td", "th"}), frozenset({"tr", "table"})),
    "tr": (frozenset({"td", "th", "tr"}), _SECTIONS | {"table"}),
    **{section: (frozenset({"td", "th", "tr"}) | _SECTIONS, frozenset({"table"})) for section in _SECTIONS},
}
_SPAN = re.compile(r"\s*([1-9][0-9]{0,2})\s*")
_TAG_LIKE = re.compile(r"<\s*/?\s*[a-zA-Z]")


class _Sanitizer(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.open: list[str] = []
        self.dropping: list[str] = []
        self.saw_table = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.dropping:
            if tag == self.dropping[-1]:
                self.dropping.append(tag)
            return
        if tag in DROP_CONTENT_TAGS:
            self.dropping.append(tag)
            return
        if tag not in ALLOWED_TAGS:
            return
        if tag == "table":
            self.saw_table = True
        self._close_implied(tag)
        kept = []
        for name, value in attrs:
            if name in ALLOWED_ATTRIBUTES.get(tag, ()) and value is not None:
                m = _SPAN.fullmatch(value)
                if m:
                    kept.append(f' {name}="{m.group(1)}"')
        self.out.append(f"<{tag}{''.join(kept)}>")
        if tag not in VOID_TAGS:
            self.open.append(tag)

    def _close_implied(self, tag: str) -> None:
        """A new cell ends the open cell, a new row the open row (HTML leaves those end tags out)."""
        if tag not in _IMPLIED_END:
            return
        closes, stops = _IMPLIED_END[tag]
        for i in range(len(self.open) - 1, -1, -1):
            if self.open[i] in stops:
                return
            if self.open[i] in closes:
                while len(self.open) > i:
                    self.out.append(f"</{self.open.pop()}>")
                return

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)
        if not self.dropping and tag in ALLOWED_TAGS and tag not in VOID_TAGS and self.open and self.open[-1] == tag:
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if self.dropping:
            if tag == self.dropping[-1]:
                self.dropping.pop()
            return
        if tag not in self.open:
            return
        while self.open:
            top = self.open.pop()
            self.out.append(f"</{top}>")
            if top == tag:
                break

    def handle_data(self, data: str) -> None:
        if not self.dropping:
            self.out.append(html.escape(data, quote=False))

    def result(self) -> str:
        self.close()
        while self.open:
            self.out.append(f"</{self.open.pop()}>")
        return "".join(self.out)


def looks_like_html(text: str) -> bool:
    return bool(_TAG_LIKE.search(text or ""))


def sanitize_table_html(text: str) -> str:
    """Safe table HTML from the model's table HTML; rows and cells without a <table> get one."""
    if not text:
        return ""
    parser = _Sanitizer()
    try:
        parser.feed(text)
        out = parser.result()
    except Exception:  # html.parser is forgiving; this is a last guard: fall back to escaped text
        return html.escape(text, quote=False)
    if not parser.saw_table and re.search(r"<(?:tr|td|th|thead|tbody)\b", out):
        out = f"<table>{out}</table>"
    return out


class _TableText(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.rows: list[list[str]] = []
        self.cell: list[str] | None = None
        self.loose: list[str] = []
        self.dropping = 0

    def _row(self) -> list[str]:
        if not self.rows:
            self.rows.append([])
        return self.rows[-1]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in DROP_CONTENT_TAGS:
            self.dropping += 1
        elif tag == "tr":
            self._end_cell()
            self.rows.append([])
        elif tag in ("td", "th"):
            self._end_cell()
            self.cell = []
        elif tag == "br" and self.cell is not None:
            self.cell.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in DROP_CONTENT_TAGS:
            self.dropping = max(0, self.dropping - 1)
        elif tag in ("td", "th", "tr", "table"):
            self._end_cell()

    def _end_cell(self) -> None:
        if self.cell is not None:
            self._row().append(" ".join("".join(self.cell).split()))
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.dropping:
            return
        if self.cell is not None:
            self.cell.append(data)
        elif data.strip():
            self.loose.append(" ".join(data.split()))


def table_to_text(text: str) -> str:
    """A table's text, one row a line and cells separated by tabs; text that is not HTML is kept."""
    if not text or not looks_like_html(text):
        return text or ""
    parser = _TableText()
    try:
        parser.feed(text)
        parser.close()
        parser._end_cell()
    except Exception:
        return text
    lines = [" ".join(parser.loose)] if parser.loose else []
    lines += ["\t".join(row) for row in parser.rows if any(cell for cell in row)]
    return "\n".join(line for line in lines if line)
