"""A page whose output repeats, or that runs too long, is stopped early: the one detector every
backend's decoding loop feeds.

dots.ocr sometimes repeats the same piece of output until it reaches the token limit (upstream
issues rednote-hilab/dots.ocr#99, #105, #199: up to 15 minutes for one page). The guard watches the
tokens as they come: once the last `window` tokens are one n-gram of at most `ngram` tokens said
again and again (the sequence is periodic with a period ≤ `ngram` over the whole window), the page
is stopped and what came before is kept. A per-page time limit stops it the same way.

The check is incremental and costs O(ngram) per token: for every period p ≤ ngram it keeps how
many of the latest tokens equal the token p places before; the window is periodic with period p
as soon as that run reaches window − p. Tokens are any hashable values (token ids in transformers,
the streamed pieces of text from vLLM, which sends about one per token).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass

# The defaults: a window of 400 tokens made of one unit of up to 100 tokens (so at least 4
# repeats). A real page is 1,000–3,000 tokens; 400 identical-pattern tokens in a row do not occur
# in a real page's layout JSON (a table of empty cells varies in its row and column text), and at
# most 400 tokens are spent before the stop.
DEFAULT_WINDOW = 400
DEFAULT_NGRAM = 100
# No time limit unless the admin sets one (seconds; 0 = none).
DEFAULT_PAGE_SECONDS = 0.0

REPEATING = "repeating output"
TIME_LIMIT = "time limit"


@dataclass(frozen=True)
class LoopSettings:
    """How the guard decides; `window` 0 turns the repetition check off, `page_seconds` 0 the limit."""

    window: int = DEFAULT_WINDOW
    ngram: int = DEFAULT_NGRAM
    page_seconds: float = DEFAULT_PAGE_SECONDS

    def __post_init__(self):
        if self.window < 0 or self.ngram < 1 or self.page_seconds < 0:
            raise ValueError("the loop guard needs window ≥ 0, ngram ≥ 1 and page_seconds ≥ 0")
        if self.window and self.ngram * 2 > self.window:
            raise ValueError(f"the loop window ({self.window}) must hold the n-gram ({self.ngram}) at least twice")

    @classmethod
    def from_plan(cls, plan: dict) -> LoopSettings:
        """Read from a backend's load arguments (`loop_window`, `loop_ngram`, `page_time_limit`)."""
        return cls(
            window=int(plan.get("loop_window", DEFAULT_WINDOW)),
            ngram=int(plan.get("loop_ngram", DEFAULT_NGRAM)),
            page_seconds=float(plan.get("page_time_limit") or 0.0),
        )


@dataclass(frozen=True)
class Stopped:
    """Why a page was stopped early, and after how many tokens."""

    reason: str  # REPEATING or TIME_LIMIT
    tokens: int
    period: int | None = None  # the repeating unit's length in tokens
    seconds: float | None = None

    @property
    def message(self) -> str:
        if self.reason == REPEATING:
            return (
                f"Stopped: repeating output after {self.tokens:,} tokens (the same {self.period}-token piece over "
                "and over); the text before it is kept."
            )
        return (
            f"Stopped: time limit of {self.seconds:g} s reached after {self.tokens:,} tokens; the text read so far "
            "is kept."
        )

    def as_json(self) -> dict:
        return {"reason": self.reason, "tokens": self.tokens, "period": self.period, "seconds": self.seconds}


class LoopGuard:
    """Feed it every new token of one page; `stopped` is set once the page should stop."""

    def __init__(self, settings: LoopSettings | None = None, *, clock: Callable[[], float] | None = None):
        self.settings = settings or LoopSettings()
        self._clock = clock or time.monotonic
        self._started = self._clock()
        n = min(self.settings.ngram, max(1, self.settings.window // 2))
        self._periods = n if self.settings.window else 0
        self._recent: list[Hashable] = []
        # _runs[p - 1]: how many of the latest tokens equal the one p places before them.
        self._runs = [0] * self._periods
        self.tokens = 0
        self.stopped: Stopped | None = None

    def feed(self, tokens: Iterable[Hashable]) -> Stopped | None:
        for token in tokens:
            if self.stopped is not None:
                break
            self._one(token)
        if self.stopped is None:
            self.check_time()
        return self.stopped

    def _one(self, token: Hashable) -> None:
        self.tokens += 1
        if self._periods:
            recent, runs, window = self._recent, self._runs, self.settings.window
            size = len(recent)
            for p in range(1, self._periods + 1):
                if p <= size and recent[-p] == token:
                    runs[p - 1] += 1
                    if runs[p - 1] >= window - p:
                        self.stopped = Stopped(REPEATING, self.tokens, period=p)
                        break
                else:
                    runs[p - 1] = 0
            recent.append(token)
            if size >= 4 * self._periods:  # only the last `ngram` tokens are ever looked at
                del recent[: size - self._periods]

    def check_time(self) -> Stopped | None:
        """Stop once the page has run longer than the limit (also asked when no token came)."""
        limit = self.settings.page_seconds
        if self.stopped is None and limit and self._clock() - self._started >= limit:
            self.stopped = Stopped(TIME_LIMIT, self.tokens, seconds=limit)
        return self.stopped


def repeating_tail(tokens: list[Hashable], settings: LoopSettings | None = None) -> Stopped | None:
    """The guard run over a whole token list (tests and offline checks)."""
    guard = LoopGuard(settings or LoopSettings(page_seconds=0))
    return guard.feed(tokens)
