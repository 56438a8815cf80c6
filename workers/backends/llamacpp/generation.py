"""The token loop of the llama.cpp backend: text pieces in, the answer out, with `cancel()` and an
optional per-token hook asked after every token.

Kept apart from llama.cpp so the loop's rules are tested without a model: a cancel stops the stream
(closing it stops llama.cpp's generator at once) and raises JobCancelled; the loop guard
(core/loopguard.py) ends the answer early, keeping the text before, when the output repeats or the
page's time is up; a hook may raise to stop the answer, and the stream is closed then too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from core.loopguard import LoopGuard, Stopped
from core.results import CancelCheck, JobCancelled

# Called with (the new piece of text, the tokens generated so far); raises to stop the answer.
TokenHook = Callable[[str, int], None]


@dataclass
class Generated:
    text: str
    count: int  # the pieces received: one per generated token
    first_at: float | None  # time.monotonic() of the first token
    finish_reason: str | None  # "stop", "length", or None when the stream ended without one
    stopped: Stopped | None = None  # the loop guard ended the answer early


def stream_tokens(
    pieces: Iterator[tuple[str, str | None]],
    cancel: CancelCheck,
    on_token: TokenHook | None = None,
    guard: LoopGuard | None = None,
) -> Generated:
    """Consume (text, finish reason) pairs until the stream ends; cancel, the guard (fed each piece:
    llama.cpp streams one piece per token) and the hook are asked after each."""
    parts: list[str] = []
    count, first_at, finish = 0, None, None
    try:
        for text, reason in pieces:
            if guard is not None and (guard.feed([text]) if text else guard.check_time()):
                break
            if reason is not None:
                finish = reason
            if text:
                count += 1
                if first_at is None:
                    first_at = time.monotonic()
                parts.append(text)
                if on_token is not None:
                    on_token(text, count)
            if cancel():
                raise JobCancelled()
    finally:
        close = getattr(pieces, "close", None)
        if close is not None:
            close()
    stopped = guard.stopped if guard is not None else None
    if stopped is not None:
        finish = None  # ended by the guard, not by the model or the token budget
    return Generated("".join(parts), count, first_at, finish, stopped)
