"""The loop guard (core/loopguard.py): a page whose output repeats, or that runs too long, stops."""

import random

import pytest

from core.loopguard import REPEATING, TIME_LIMIT, LoopGuard, LoopSettings, repeating_tail
from core.readpage import parsed_page
from core.results import OcrResult

SMALL = LoopSettings(window=40, ngram=10)


def test_a_piece_repeated_over_the_whole_window_stops_the_page_with_its_length_and_the_token_count():
    head = list(range(100, 130))  # a real beginning, then the same 3 tokens over and over
    stopped = repeating_tail(head + [1, 2, 3] * 50, SMALL)
    assert stopped is not None and stopped.reason == REPEATING
    assert stopped.period == 3
    assert stopped.tokens == len(head) + SMALL.window  # stopped as soon as the window is all repeats
    assert "Stopped: repeating output after 70 tokens" in stopped.message


@pytest.mark.parametrize("period", [1, 7, 10])
def test_every_piece_up_to_the_ngram_length_is_caught(period):
    unit = list(range(period))
    assert repeating_tail(unit * (SMALL.window // period + 2), SMALL).period == period


def test_a_piece_longer_than_the_ngram_is_not_a_loop():
    assert repeating_tail(list(range(11)) * 20, SMALL) is None


def test_varied_output_and_short_repeats_run_on():
    rng = random.Random(7)
    assert repeating_tail([rng.randrange(50) for _ in range(5000)], SMALL) is None
    # A table row of empty cells repeated a few times is real output, shorter than the window.
    assert repeating_tail([9, 8] + ["<td>", "</td>"] * 15 + [7, 6], SMALL) is None


def test_the_default_settings_need_400_tokens_of_repeats():
    guard = LoopGuard()
    assert guard.feed(["<td></td>"] * 399) is None
    assert guard.feed(["<td></td>"]).tokens == 400


def test_a_window_of_zero_turns_the_repetition_check_off():
    assert repeating_tail([1] * 1000, LoopSettings(window=0, ngram=1)) is None


def test_the_time_limit_stops_a_page_even_between_tokens():
    now = [0.0]
    guard = LoopGuard(LoopSettings(page_seconds=5), clock=lambda: now[0])
    assert guard.feed([1, 2, 3]) is None
    now[0] = 5.0
    stopped = guard.check_time()
    assert stopped.reason == TIME_LIMIT and stopped.tokens == 3 and stopped.seconds == 5
    assert guard.feed([4]) is stopped  # once stopped, it stays stopped
    assert "time limit of 5 s" in stopped.message


@pytest.mark.parametrize("values", [{"window": -1}, {"ngram": 0}, {"page_seconds": -1}, {"window": 10, "ngram": 6}])
def test_bad_settings_are_refused(values):
    with pytest.raises(ValueError):
        LoopSettings(**values)


def test_the_settings_come_from_a_backends_load_arguments():
    settings = LoopSettings.from_plan({"loop_window": 60, "loop_ngram": 20, "page_time_limit": 30})
    assert settings == LoopSettings(window=60, ngram=20, page_seconds=30)
    assert LoopSettings.from_plan({}) == LoopSettings()


def test_a_stopped_page_keeps_its_parsed_part_and_says_why():
    raw = '[{"bbox": [10, 10, 100, 40], "category": "Title", "text": "# Report"}, {"bbox": [10, 50, 100, 90], "ca'
    details = {"image_size_sent": [280, 280], "stopped": {"reason": REPEATING, "tokens": 812, "period": 3}}
    page = parsed_page(OcrResult(text=raw, raw=raw, details=details), "vllm", "layout_all", (280, 280))
    assert [e.text for e in page.elements][:1] == ["# Report"]
    assert page.warnings[0].startswith("Stopped: repeating output after 812 tokens")
    assert page.truncated


def test_a_made_up_stop_reason_is_ignored():
    details = {"image_size_sent": [280, 280], "stopped": {"reason": "<script>", "tokens": 1}}
    page = parsed_page(OcrResult(text="Hello", raw="Hello", details=details), "vllm", "text", (280, 280))
    assert not any("Stopped" in w for w in page.warnings)
