"""The llama.cpp backend's token loop on its own: cancel and the per-token hook stop the stream and
close it (which stops llama.cpp), and the answer is the pieces in order."""

from __future__ import annotations

import pytest

from core.results import JobCancelled
from workers.backends.llamacpp.generation import stream_tokens


class Stream:
    """A token stream as the backend gets it from llama.cpp: pieces, then a finish reason."""

    def __init__(self, pieces, finish="stop"):
        self.items = [(p, None) for p in pieces] + [("", finish)]
        self.given = 0
        self.closed = False

    def __iter__(self):
        return self

    def __next__(self):
        if self.closed or self.given >= len(self.items):
            raise StopIteration
        self.given += 1
        return self.items[self.given - 1]

    def close(self):
        self.closed = True


def test_the_answer_is_the_pieces_in_order_with_the_finish_reason():
    stream = Stream(["[{", '"bbox"', ": [1]}]"], finish="length")
    generated = stream_tokens(stream, lambda: False)
    assert generated.text == '[{"bbox": [1]}]'
    assert generated.count == 3 and generated.finish_reason == "length" and generated.first_at is not None
    assert stream.closed


def test_cancel_stops_after_the_token_it_is_seen_and_closes_the_stream():
    stream = Stream([f"t{i} " for i in range(100)])
    asked = []

    def cancel():
        asked.append(1)
        return len(asked) >= 5

    with pytest.raises(JobCancelled):
        stream_tokens(stream, cancel)
    assert stream.given == 5 and stream.closed


def test_a_hook_sees_every_token_and_may_stop_the_answer():
    seen = []

    class Looping(Exception):
        pass

    def hook(piece, count):
        seen.append((piece, count))
        if count == 3:
            raise Looping()

    stream = Stream(["a", "a", "a", "a"])
    with pytest.raises(Looping):
        stream_tokens(stream, lambda: False, hook)
    assert seen == [("a", 1), ("a", 2), ("a", 3)] and stream.closed


def test_the_loop_guard_ends_a_repeating_answer_early_keeping_the_text_before_it():
    from core.loopguard import REPEATING, LoopGuard, LoopSettings

    head = ['[{"bbox": [1, 2, 3, 4], ', '"category": "Text", ', '"text": "']
    stream = Stream(head + ["ab", "cd"] * 500, finish="length")
    guard = LoopGuard(LoopSettings(window=20, ngram=4))
    generated = stream_tokens(stream, lambda: False, guard=guard)
    assert generated.stopped is not None and generated.stopped.reason == REPEATING
    assert generated.stopped.period == 2
    # Stopped within the window, long before the 1,000 looping pieces; what came first is kept.
    assert generated.count < 3 + 30 and stream.closed
    assert generated.text.startswith("".join(head)) and generated.finish_reason is None


def test_the_page_time_limit_ends_an_answer_even_when_it_does_not_repeat():
    from core.loopguard import TIME_LIMIT, LoopGuard, LoopSettings

    now = [0.0]

    def clock():
        now[0] += 1.0  # each look at the clock is a second later
        return now[0]

    stream = Stream([f"w{i} " for i in range(100)])
    guard = LoopGuard(LoopSettings(window=0, page_seconds=10), clock=clock)
    generated = stream_tokens(stream, lambda: False, guard=guard)
    assert generated.stopped is not None and generated.stopped.reason == TIME_LIMIT
    assert 0 < generated.count < 100 and generated.text.startswith("w0 w1 ") and stream.closed
