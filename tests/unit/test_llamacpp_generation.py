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
