"""Linear-memory attention for dots.ocr's vision tower when flash-attn is not installed.

Without flash-attn the remote code's vision attention ("sdpa" or "eager") builds a
[1, N, N] block mask over all N patches of the batch and calls attention on 3-D tensors. PyTorch's
fused kernels need 4-D inputs, so it falls back to the math kernel, which materialises an N × N
score matrix per head: measured on an H200, one A4 page at 200 dpi (4,956 image tokens, 19,824
patches) peaked at 47 GiB in bf16 with 5.7 GiB of weights.

`use_per_image_attention(model)` replaces the forward of each such attention module with one that
runs scaled_dot_product_attention per image (the segments of `cu_seqlens`) on 4-D tensors without a
mask: the same result (attention never crossed images), computed by the fused flash or
memory-efficient kernels in memory linear in the patches. It reads the module's own `qkv`, `proj`,
`num_heads` and its module's `apply_rotary_pos_emb_vision`, the names every published version of
`modeling_dots_vision.py` uses; a module without them is left alone.
"""

from __future__ import annotations

import sys
import types
from itertools import pairwise
from typing import Any

PATCHED_CLASSES = {"VisionSdpaAttention", "VisionAttention", "VisionAttentionV2"}


def use_per_image_attention(model: Any) -> int:
    """Patch every vision attention module of `model` in place; returns how many were patched."""
    patched = 0
    for module in model.modules():
        if type(module).__name__ not in PATCHED_CLASSES:
            continue
        if not all(hasattr(module, name) for name in ("qkv", "proj", "num_heads")):
            continue
        rotary = getattr(sys.modules.get(type(module).__module__), "apply_rotary_pos_emb_vision", None)
        if rotary is None:
            continue
        module._rotary = rotary
        module.forward = types.MethodType(_per_image_forward, module)
        patched += 1
    return patched


def _per_image_forward(self, hidden_states, cu_seqlens, rotary_pos_emb=None, **_ignored):
    import torch
    import torch.nn.functional as F

    length = hidden_states.shape[0]
    q, k, v = self.qkv(hidden_states).reshape(length, 3, self.num_heads, -1).permute(1, 0, 2, 3).unbind(0)
    if rotary_pos_emb is not None:
        q = self._rotary(q.unsqueeze(0), rotary_pos_emb).squeeze(0)
        k = self._rotary(k.unsqueeze(0), rotary_pos_emb).squeeze(0)
    bounds = [int(b) for b in cu_seqlens.tolist()]
    if len(bounds) < 2:
        bounds = [0, length]
    out = torch.empty_like(v)
    for start, end in pairwise(bounds):
        if end <= start:
            continue
        # (length, heads, dim) → (1, heads, length, dim): the layout the fused kernels take.
        qi, ki, vi = (t[start:end].transpose(0, 1).unsqueeze(0) for t in (q, k, v))
        out[start:end] = F.scaled_dot_product_attention(qi, ki, vi).squeeze(0).transpose(0, 1)
    return self.proj(out.reshape(length, -1))
