"""A forgiving JSON reader for what a language model writes when asked for JSON.

`json.loads` gives up on the first flaw; a model's answer has many that still leave its meaning
clear: objects joined as ``}{`` or one per line with no commas, a trailing comma, an answer cut
off by the token limit in the middle of a string, single-quoted strings, unescaped quotes inside
text, backslashes of LaTeX that are not valid JSON escapes. `read` takes any string and returns
every value it could make out, marking each object, array and string that the end of the input
cut short, and counting the characters it had to skip. It never raises.

What it returns is built only from the input: strings are the input's string literals with their
escapes decoded (an escape that is not valid JSON is kept as written), numbers are kept as the
literal text that spelled them (`JNum`), so nothing is rounded, reformatted or made up.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_DEPTH = 64


class JStr(str):
    """A string literal; `complete` is False when the input ended inside it."""

    complete = True


class JNum(str):
    """A number, as the literal text that spelled it ("12", "3.5e2", "NaN")."""

    complete = True


class JObj(dict):
    """An object; `complete` is False when the input ended before its closing brace."""

    complete = True


class JArr(list):
    """An array; `complete` is False when the input ended before its closing bracket."""

    complete = True


_MISSING = object()

_SIMPLE_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "n": "\n", "r": "\r", "t": "\t", "'": "'"}
_CHUNK = {'"': re.compile(r'[^"\\]+'), "'": re.compile(r"[^'\\]+")}
_HEX4 = re.compile(r"[0-9a-fA-F]{4}")
_LOW_PREFIX = re.compile(r"(?:\\(?:u[0-9a-fA-F]{0,3})?)?")
_NUMBER = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_LITERAL = re.compile(r"true|false|null|True|False|None|NaN|-?Infinity")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")
_KEY_AHEAD = re.compile(r"""(["'])[^"'\\\n]{1,64}\1\s*:""")
_START = re.compile(r"[\[{]")
_NOT_SPACE = re.compile(r"\S")


def is_complete(value: object) -> bool:
    return getattr(value, "complete", True)


@dataclass
class Reading:
    values: list = field(default_factory=list)
    cut: bool = False  # the input ended inside a value
    skipped: int = 0  # characters (not counting whitespace) that belonged to no value
    repairs: int = 0  # unescaped quotes taken as text, objects closed by what followed them


class _Reader:
    def __init__(self, text: str):
        self.s = text
        self.n = len(text)
        self.pos = 0
        self.cut = False
        self.skipped = 0
        self.repairs = 0

    # -- helpers -------------------------------------------------------------------------------
    def skip_ws(self) -> None:
        s, n, i = self.s, self.n, self.pos
        while i < n and s[i].isspace():
            i += 1
        self.pos = i

    def skip_ws_commas(self) -> None:
        s, n, i = self.s, self.n, self.pos
        while i < n and (s[i].isspace() or s[i] == ","):
            i += 1
        self.pos = i

    def _closes(self, i: int) -> bool:
        """Whether the quote at `i` ends its string: in valid JSON it always does; in a model's
        answer a quote followed by more words is a quotation mark that should have been escaped."""
        s, n = self.s, self.n
        j = i + 1
        while j < n and s[j].isspace():
            j += 1
        if j >= n:
            return True
        c = s[j]
        if c in ":}]{":
            return True
        if c == ",":
            k = j + 1
            while k < n and s[k].isspace():
                k += 1
            if k >= n:
                return True
            d = s[k]
            if d in "\"'{[]}-." or d.isdigit():
                return True
            rest = s[k : k + 5]
            at_end = k + len(rest) >= n
            return any(rest.startswith(w) or (at_end and w.startswith(rest)) for w in ("true", "false", "null"))
        if c in "\"'":
            return bool(_KEY_AHEAD.match(s, j))
        return False

    # -- values --------------------------------------------------------------------------------
    def value(self, depth: int):
        """The value at the current position, or _MISSING (nothing consumed) when none starts there."""
        self.skip_ws()
        if self.pos >= self.n:
            self.cut = True
            return _MISSING
        c = self.s[self.pos]
        if c in "{[":
            if depth >= MAX_DEPTH:
                return _MISSING
            return self.obj(depth + 1) if c == "{" else self.arr(depth + 1)
        if c in "\"'":
            return self.string(c)
        m = _LITERAL.match(self.s, self.pos)
        if m:
            self.pos = m.end()
            word = m.group()
            if word in ("true", "True"):
                return True
            if word in ("false", "False"):
                return False
            if word in ("null", "None"):
                return None
            return JNum(word)
        if c == "-" or c == "." or c.isdigit():
            m = _NUMBER.match(self.s, self.pos)
            if m:
                self.pos = m.end()
                num = JNum(m.group())
                if self.pos >= self.n:  # "12" at the very end may have been "125"
                    num.complete = False
                    self.cut = True
                return num
        return _MISSING

    def string(self, quote: str) -> JStr:
        s, n = self.s, self.n
        chunk = _CHUNK[quote]
        i = self.pos + 1
        parts: list[str] = []
        while True:
            m = chunk.match(s, i)
            if m:
                parts.append(m.group())
                i = m.end()
            if i >= n:
                return self._partial(parts)
            c = s[i]
            if c == quote:
                if self._closes(i):
                    self.pos = i + 1
                    return JStr("".join(parts))
                parts.append(c)
                self.repairs += 1
                i += 1
                continue
            # a backslash
            if i + 1 >= n:
                return self._partial(parts)
            e = s[i + 1]
            if e in _SIMPLE_ESCAPES:
                parts.append(_SIMPLE_ESCAPES[e])
                i += 2
            elif e in "bf":
                # Backspace and form feed never belong in OCR text: "\beta" and "\frac" are LaTeX
                # written with one backslash, and are kept as written.
                if i + 2 >= n:
                    return self._partial(parts)
                if s[i + 2].isalpha():
                    parts.append("\\" + e)
                i += 2
            elif e == "u":
                hex4 = s[i + 2 : i + 6]
                if len(hex4) < 4 and i + 2 + len(hex4) >= n and all(h in "0123456789abcdefABCDEF" for h in hex4):
                    return self._partial(parts)
                if not _HEX4.fullmatch(hex4):
                    parts.append("\\u")
                    i += 2
                    continue
                cp = int(hex4, 16)
                if 0xD800 <= cp <= 0xDBFF:
                    low = s[i + 6 : i + 12]
                    low_cp = int(low[2:], 16) if len(low) == 6 and low[:2] == "\\u" and _HEX4.fullmatch(low[2:]) else 0
                    if 0xDC00 <= low_cp <= 0xDFFF:
                        parts.append(chr(0x10000 + ((cp - 0xD800) << 10) + (low_cp - 0xDC00)))
                        i += 12
                        continue
                    if len(low) < 6 and _LOW_PREFIX.fullmatch(low):
                        return self._partial(parts)  # the input ends where the low half should be
                if 0xD800 <= cp <= 0xDFFF:  # a lone half of a pair: keep the escape as written
                    parts.append(s[i : i + 6])
                else:
                    parts.append(chr(cp))
                i += 6
            else:  # not a JSON escape ("\alpha", "\(" ...): kept as written
                parts.append("\\" + e)
                i += 2

    def _partial(self, parts: list[str]) -> JStr:
        self.pos = self.n
        self.cut = True
        out = JStr("".join(parts))
        out.complete = False
        return out

    def obj(self, depth: int) -> JObj:
        s, n = self.s, self.n
        self.pos += 1
        out = JObj()
        while True:
            self.skip_ws_commas()
            if self.pos >= n:
                self.cut = True
                out.complete = False
                return out
            c = s[self.pos]
            if c == "}":
                self.pos += 1
                return out
            if c in "]{":  # the closing brace was left out: what follows closes the object
                self.repairs += 1
                return out
            if c in "\"'":
                key = self.string(c)
                if not key.complete:
                    out.complete = False
                    return out
            else:
                m = _IDENT.match(s, self.pos)
                if not m:
                    self.pos += 1
                    self.skipped += 1
                    continue
                key = m.group()
                self.pos = m.end()
            self.skip_ws()
            if self.pos >= n:
                self.cut = True
                out.complete = False
                return out
            if s[self.pos] in ":=":
                self.pos += 1
            v = self.value(depth)
            if v is _MISSING:
                if self.pos >= n:
                    out.complete = False
                    return out
                continue
            out[str(key)] = v
            if not is_complete(v):
                out.complete = False
                return out

    def arr(self, depth: int) -> JArr:
        s, n = self.s, self.n
        self.pos += 1
        out = JArr()
        while True:
            self.skip_ws_commas()
            if self.pos >= n:
                self.cut = True
                out.complete = False
                return out
            c = s[self.pos]
            if c == "]":
                self.pos += 1
                return out
            v = self.value(depth)
            if v is _MISSING:
                if self.pos >= n:
                    out.complete = False
                    return out
                self.pos += 1
                self.skipped += 1
                continue
            out.append(v)
            if not is_complete(v):
                out.complete = False
                return out


def _count_visible(text: str) -> int:
    return len(_NOT_SPACE.findall(text))


def read(text: str) -> Reading:
    """Every object or array in `text`, in order, and what had to be skipped or mended to get them."""
    if not isinstance(text, str):
        return Reading()
    r = _Reader(text)
    values: list = []
    try:
        while r.pos < r.n:
            m = _START.search(text, r.pos)
            if not m:
                r.skipped += _count_visible(text[r.pos :])
                break
            r.skipped += _count_visible(text[r.pos : m.start()])
            r.pos = m.start()
            v = r.value(0)
            if v is _MISSING:  # nested too deep to read: skip the bracket
                r.pos += 1
                r.skipped += 1
                continue
            values.append(v)
            if r.cut:
                break
    except RecursionError:  # MAX_DEPTH keeps well below the limit; this is a last guard
        r.cut = True
    return Reading(values=values, cut=r.cut, skipped=r.skipped, repairs=r.repairs)
