"""One `generate` call of dots.ocr in transformers for a batch of pages: the inputs left-padded,
the loop guard and the cancel check as one StoppingCriteria, the answers cut and decoded per page.

Batching: the processor pads the prompts on the left (the language model's position ids follow
the attention mask, so each page decodes as it would alone), the vision tower takes the pages'
patches together (its attention is per image, workers/backends/vision_attention.py), and each
page stops at its own end token. The stopping criteria looks at the new tokens only every
`CHECK_EVERY` steps: each look copies them to the host, which would otherwise stall the GPU once
per token.

Fast decoding (`fast_decode`): a static KV cache, which lets transformers compile the decoding
step with torch.compile (CUDA graphs, no per-token allocation). It is tried where the model's code
allows it and the first failure turns it off for the process, logged, so the plain path runs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from core.loopguard import LoopGuard, LoopSettings, Stopped
from core.results import CancelCheck

log = logging.getLogger(__name__)

# The guard and the cancel flag look at the new tokens every this many steps (one host copy each).
CHECK_EVERY = 8


@dataclass
class Generated:
    """One page's answer."""

    text: str
    new_tokens: int
    prompt_tokens: int
    grid_thw: list[int]
    stopped: Stopped | None
    hit_token_limit: bool


@dataclass
class BatchRun:
    pages: list[Generated]
    cancelled: bool
    first_token_at: float | None
    fast_decode: bool


def page_watch(batch: int, cancel: CancelCheck, loop: LoopSettings, end_ids: set[int], prompt_length: int):
    """A StoppingCriteria: the loop guard of each page, and the cancel flag, every CHECK_EVERY steps."""
    import torch
    from transformers import StoppingCriteria

    class PageWatch(StoppingCriteria):
        def __init__(self) -> None:
            self.guards = [LoopGuard(loop) for _ in range(batch)]
            self.ended = [False] * batch
            self.fed = 0
            self.cancelled = False
            self.first_token_at: float | None = None
            self.stop: Any = None

        def __call__(self, input_ids, scores, **kwargs):
            if self.first_token_at is None:
                self.first_token_at = time.monotonic()
            if self.stop is None:
                self.stop = torch.zeros(batch, dtype=torch.bool, device=input_ids.device)
            made = input_ids.shape[1] - prompt_length
            if made - self.fed < CHECK_EVERY and not self._time_up():
                return self.stop
            fresh = input_ids[:, prompt_length + self.fed :].tolist()
            self.fed = made
            if not self.cancelled and cancel():
                self.cancelled = True
                self.stop = torch.ones(batch, dtype=torch.bool, device=input_ids.device)
                return self.stop
            for row, tokens in enumerate(fresh):
                guard = self.guards[row]
                if self.ended[row] or guard.stopped is not None:
                    continue
                for i, token in enumerate(tokens):
                    if token in end_ids:
                        self.ended[row] = True
                        tokens = tokens[:i]
                        break
                guard.feed(tokens)
            rows = [g.stopped is not None and not e for g, e in zip(self.guards, self.ended, strict=True)]
            if any(rows):
                self.stop = torch.tensor(rows, dtype=torch.bool, device=input_ids.device)
            return self.stop

        def _time_up(self) -> bool:
            return bool(loop.page_seconds) and any(
                not e and g.stopped is None and g.check_time() is not None
                for g, e in zip(self.guards, self.ended, strict=True)
            )

    return PageWatch()


_FAST_DECODE_BROKEN: str | None = None


def generate_batch(
    model: Any,
    processor: Any,
    device: str,
    images: Sequence[Any],
    prompts: Sequence[str],
    *,
    system: str | None = None,
    max_new_tokens: int,
    min_pixels: int,
    max_pixels: int,
    cancel: CancelCheck,
    loop: LoopSettings,
    fast_decode: bool = False,
) -> BatchRun:
    """Generate the answers of `images` (already resized) with their `prompts` in one batch;
    `system`: the system prompt the task asks for (a question's), None for the dots.ocr tasks."""
    global _FAST_DECODE_BROKEN
    import torch
    from transformers import StoppingCriteriaList

    texts = []
    for image, prompt in zip(images, prompts, strict=True):
        messages = [{"role": "system", "content": system}] if system else []
        messages += [{"role": "user", "content": [{"type": "image", "image": image}, {"type": "text", "text": prompt}]}]
        texts.append(processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    tokenizer = processor.tokenizer
    tokenizer.padding_side = "left"  # new tokens follow every prompt directly
    inputs = processor(
        text=texts,
        images=list(images),
        padding=True,
        return_tensors="pt",
        min_pixels=min_pixels,
        max_pixels=max_pixels,
    ).to(device)
    prompt_length = int(inputs["input_ids"].shape[1])
    end_ids = _end_ids(model, tokenizer)
    watch = page_watch(len(images), cancel, loop, end_ids, prompt_length)
    kwargs: dict[str, Any] = dict(
        max_new_tokens=max_new_tokens,
        do_sample=False,
        stopping_criteria=StoppingCriteriaList([watch]),
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else min(end_ids or {0}),
    )
    use_fast = fast_decode and _FAST_DECODE_BROKEN is None
    with torch.inference_mode():
        if use_fast:
            try:
                output = model.generate(**inputs, **kwargs, cache_implementation="static")
            except torch.cuda.OutOfMemoryError:
                raise
            except Exception as exc:  # the remote code or this card cannot: the plain path runs
                _FAST_DECODE_BROKEN = f"{type(exc).__name__}: {exc}"
                log.warning("fast decoding (static KV cache, torch.compile) is off: %s", _FAST_DECODE_BROKEN)
                use_fast = False
                watch = page_watch(len(images), cancel, loop, end_ids, prompt_length)
                kwargs["stopping_criteria"] = StoppingCriteriaList([watch])
        if not use_fast:
            output = model.generate(**inputs, **kwargs)
    new_ids = output[:, prompt_length:].tolist()
    pages = []
    grids = inputs["image_grid_thw"].tolist()
    real_prompt = inputs["attention_mask"].sum(dim=1).tolist()
    for row, ids in enumerate(new_ids):
        guard = watch.guards[row]
        if guard.stopped is not None:
            ids = ids[: guard.stopped.tokens]
            count = len(ids)
        else:
            end = next((i for i, t in enumerate(ids) if t in end_ids), None)
            count = len(ids) if end is None else end + 1
            ids = ids[:count]
        text = tokenizer.decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        pages.append(
            Generated(
                text=text,
                new_tokens=count,
                prompt_tokens=int(real_prompt[row]),
                grid_thw=[int(v) for v in grids[row]],
                stopped=guard.stopped,
                hit_token_limit=guard.stopped is None and count >= max_new_tokens,
            )
        )
    return BatchRun(pages, watch.cancelled, watch.first_token_at, use_fast)


def fast_decode_broken() -> str | None:
    """Why fast decoding was turned off in this process (None while it is not)."""
    return _FAST_DECODE_BROKEN


def _end_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for value in eos if isinstance(eos, (list, tuple)) else [eos]:
        if isinstance(value, int):
            ids.add(value)
    if isinstance(tokenizer.eos_token_id, int):
        ids.add(tokenizer.eos_token_id)
    return ids
