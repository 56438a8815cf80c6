"""What a finished document job says about its pages (pure): which pages failed, which carry
warnings, which were read from the PDF's own text layer."""

from __future__ import annotations

from collections.abc import Sequence


def text_layer_note(total: int, from_layer: Sequence[int]) -> str | None:
    """The sentence naming the pages read from the PDF's text layer; None when none was."""
    if not from_layer:
        return None
    if total == 1:
        which = "The page was"
    elif len(from_layer) == 1:
        which = f"Page {from_layer[0]} was"
    else:
        which = f"Pages {', '.join(map(str, from_layer))} were"
    return f"{which} read from the PDF's own text layer, without OCR."


def document_message(notes: Sequence[str], total: int, failed: Sequence[tuple[int, str]], warned: Sequence[int]) -> str:
    """A document's message: the run's notes, the failed pages (number, why) with how to read them
    again, and the pages whose own message warns of something."""
    parts = list(notes)
    if failed:
        numbers = ", ".join(str(number) for number, _ in failed)
        word = "Page" if len(failed) == 1 else "Pages"
        parts.append(
            f"{word} {numbers} of {total} failed ({failed[0][1]}); retry to read "
            f"{'it' if len(failed) == 1 else 'them'} again."
        )
    if warned:
        parts.append(f"See the warnings on page{'s' if len(warned) > 1 else ''} {', '.join(map(str, warned))}.")
    return " ".join(parts)
