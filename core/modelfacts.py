"""dots.ocr's size facts, and the memory each part of a run needs.

Pure: no Django, no torch. Every figure below is read from the published model, not guessed:

- `config.json` of rednote-hilab/dots.ocr (text model at the top level, `vision_config` inside):
  hidden_size 1536, intermediate_size 8960, num_hidden_layers 28, num_attention_heads 12,
  num_key_value_heads 2, vocab_size 151936, tie_word_embeddings false, torch_dtype bfloat16;
  vision_config: embed_dim 1536, hidden_size 1536, intermediate_size 4224, num_hidden_layers 42,
  num_attention_heads 12, patch_size 14, spatial_merge_size 2, temporal_patch_size 1, use_bias false.
- `dots_ocr/utils/consts.py` (GitHub rednote-hilab/dots.ocr): MIN_PIXELS=3136, MAX_PIXELS=11289600,
  IMAGE_FACTOR=28; `dots_ocr/utils/image_utils.py` `smart_resize` keeps both sides multiples of 28
  and the pixel count within [min_pixels, max_pixels].
- The README's transformers example and `dots_ocr/parser.py` generate with `max_new_tokens=24000`;
  the vLLM helper `dots_ocr/model/inference.py` sends `max_completion_tokens=32768`.

Parameter counts are derived from those shapes (see `ModelFacts.lm_params` / `vision_params`); they
come to 1.78 B for the Qwen2 language model (the README's "1.7B-parameter LLM foundation"), 1.26 B
for the vision encoder and 3.04 B in all, which is 6.08 GB (5.66 GiB) of bf16 weights.

The activation estimates are upper bounds written from the model code (vLLM's
`vllm/model_executor/models/dots_ocr.py` and the remote code's `modeling_dots_vision.py`), with a
margin; each formula is documented where it is defined.
"""

from __future__ import annotations

from dataclasses import dataclass

KiB = 1024
MiB = 1024**2
GiB = 1024**3

# Bytes per element.
BF16 = 2
FP32 = 4

# Activations are multiplied by this before they are compared with free memory: PyTorch's caching
# allocator rounds blocks up, fragments, and keeps transients the formulas below do not list.
ACTIVATION_MARGIN = 1.25


@dataclass(frozen=True)
class ModelFacts:
    name: str = "rednote-hilab/dots.ocr"

    # Language model (Qwen2), config.json top level.
    hidden_size: int = 1536
    intermediate_size: int = 8960
    num_hidden_layers: int = 28
    num_attention_heads: int = 12
    num_key_value_heads: int = 2
    vocab_size: int = 151936
    tie_word_embeddings: bool = False
    max_position_embeddings: int = 131072

    # Vision encoder, config.json "vision_config".
    vision_embed_dim: int = 1536
    vision_intermediate_size: int = 4224
    vision_num_layers: int = 42
    vision_num_heads: int = 12
    num_channels: int = 3
    patch_size: int = 14
    spatial_merge_size: int = 2

    # Image preprocessing, dots_ocr/utils/consts.py.
    min_pixels: int = 3136
    max_pixels: int = 11_289_600

    # Output budget: max_new_tokens of the README's transformers example and of parser.py.
    default_max_new_tokens: int = 24_000

    # Room for the chat template and the longest prompt of dots_ocr/utils/prompts.py
    # (prompt_layout_all_en, about 1,000 characters, well under 400 tokens).
    prompt_token_budget: int = 512

    # -- shapes -------------------------------------------------------------------------------

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads  # 128

    @property
    def image_factor(self) -> int:
        """Side of the square of pixels that becomes one token: patch 14 × merge 2 = 28."""
        return self.patch_size * self.spatial_merge_size

    @property
    def pixels_per_token(self) -> int:
        return self.image_factor**2  # 784

    @property
    def patches_per_token(self) -> int:
        return self.spatial_merge_size**2  # 4 vision-encoder positions per language-model token

    @property
    def max_image_tokens(self) -> int:
        return self.max_pixels // self.pixels_per_token  # 14,400

    def kv_bytes_per_token(self, dtype_bytes: int = BF16) -> int:
        """K and V, for every layer and KV head: 2 × 28 × 2 × 128 × 2 bytes = 28,672 bytes in bf16."""
        return 2 * self.num_hidden_layers * self.num_key_value_heads * self.head_dim * dtype_bytes

    # -- parameter counts ---------------------------------------------------------------------

    @property
    def lm_linear_weights(self) -> int:
        """Weights of the language model's Linear layers (q, k, v, o, gate, up, down), lm_head excluded."""
        h, i, kv = self.hidden_size, self.intermediate_size, self.num_key_value_heads * self.head_dim
        per_layer = h * h + 2 * h * kv + h * h + 3 * h * i
        return self.num_hidden_layers * per_layer

    @property
    def lm_other_params(self) -> int:
        """Embeddings, lm_head (not tied), q/k/v biases (attention_bias), RMSNorm weights."""
        h, kv = self.hidden_size, self.num_key_value_heads * self.head_dim
        embeddings = self.vocab_size * h * (1 if self.tie_word_embeddings else 2)
        per_layer = (h + 2 * kv) + 2 * h
        return embeddings + self.num_hidden_layers * per_layer + h

    @property
    def lm_params(self) -> int:
        return self.lm_linear_weights + self.lm_other_params

    @property
    def vision_linear_weights(self) -> int:
        """qkv, proj, fc1+fc3, fc2 per block (no bias), and the patch merger's two Linear layers."""
        e, i = self.vision_embed_dim, self.vision_intermediate_size
        per_block = e * 3 * e + e * e + 2 * e * i + i * e
        merged = e * self.patches_per_token
        merger = merged * merged + merged * self.hidden_size
        return self.vision_num_layers * per_block + merger

    @property
    def vision_other_params(self) -> int:
        """Patch-embedding convolution (+ bias, norm), block norms, post-trunk norm, merger norm, biases."""
        e = self.vision_embed_dim
        patch_embed = self.num_channels * self.patch_size**2 * e + e + e
        merged = e * self.patches_per_token
        merger = 2 * e + merged + self.hidden_size
        return patch_embed + self.vision_num_layers * 2 * e + e + merger

    @property
    def vision_params(self) -> int:
        return self.vision_linear_weights + self.vision_other_params

    @property
    def total_params(self) -> int:
        return self.lm_params + self.vision_params

    @property
    def largest_quantized_linear_weight(self) -> int:
        """The biggest Linear a quantizer touches (lm_head is left alone): the merger's 6144 × 6144."""
        merged = self.vision_embed_dim * self.patches_per_token
        return max(merged * merged, self.hidden_size * self.intermediate_size)

    # -- weight memory ------------------------------------------------------------------------

    def weight_bytes(self, scheme: str) -> int:
        """Bytes the weights take on the device under a loading scheme.

        - "bf16": every parameter in bf16 (the checkpoint's torch_dtype).
        - "fp16": the same size, for cards without bf16.
        - "float32": every parameter in fp32 (the CPU path).
        - "fp8": vLLM's online `--quantization fp8`: the language model's Linear weights in one byte
          (lm_head excluded, as vLLM's FP8 page says). The vision tower is counted in bf16: whether
          vLLM hands the quantization config to dots.ocr's vision blocks has changed between
          versions, so the larger figure is used.
        - "int8": bitsandbytes LLM.int8 on every nn.Linear of both towers except lm_head (which
          transformers keeps unquantized), plus one fp32 scale per output row.
        - "nf4": bitsandbytes 4-bit on the same layers: half a byte per weight plus one fp32 absmax
          per block of 64 (no double quantization).
        """
        lin = self.lm_linear_weights + self.vision_linear_weights
        other = self.total_params - lin
        if scheme in ("bf16", "fp16"):
            return self.total_params * BF16
        if scheme == "float32":
            return self.total_params * FP32
        if scheme == "fp8":
            return self.lm_linear_weights + (self.total_params - self.lm_linear_weights) * BF16
        if scheme == "int8":
            rows = self.num_hidden_layers * (
                self.hidden_size * 2
                + 2 * self.num_key_value_heads * self.head_dim
                + 2 * self.intermediate_size
            ) + self.vision_num_layers * (5 * self.vision_embed_dim + 2 * self.vision_intermediate_size)
            return lin + rows * FP32 + other * BF16
        if scheme == "nf4":
            return lin // 2 + (lin // 64) * FP32 + other * BF16
        raise ValueError(f"unknown weight scheme {scheme!r}")

    # -- image size ---------------------------------------------------------------------------

    def tokens_for_pixels(self, pixels: int) -> int:
        """The most language-model tokens an image resized with this `max_pixels` can become.

        `smart_resize` never exceeds max_pixels and makes both sides multiples of 28, so the
        resized image holds at most ⌊max_pixels / 784⌋ tokens (and at least min_pixels / 784 = 4).
        """
        pixels = min(int(pixels), self.max_pixels)
        return max(self.min_pixels // self.pixels_per_token, pixels // self.pixels_per_token)

    def pixels_for_tokens(self, tokens: int) -> int:
        """The `max_pixels` that allows exactly `tokens` image tokens (a multiple of 28 × 28)."""
        return int(tokens) * self.pixels_per_token

    # -- activations --------------------------------------------------------------------------

    def vision_bytes_per_patch(self, dtype_bytes: int = BF16) -> int:
        """Working set of one vision-encoder position inside one block (upper bound).

        Per patch: the pixel values as the processor sends them (3 × 14 × 14 in fp32); the residual
        stream and its norm (2 × embed); the fused qkv output (3 × embed) and the contiguous q, k, v
        copies the attention makes (3 × embed), all in the compute dtype; the rotary embedding,
        which dots.ocr applies in fp32 to q and k (`tensor.float()`), with its rotate_half temporary
        and product (3 × 2 × embed × 4 bytes); the fp32 cos/sin table (2 × head_dim/2 × 4).
        The MLP phase (fc1+fc3 out 2 × 4224, activation 4224) is smaller and is not added.
        """
        e = self.vision_embed_dim
        pixels_in = self.num_channels * self.patch_size**2 * FP32
        compute = (2 + 3 + 3) * e * dtype_bytes
        rotary = 3 * 2 * e * FP32 + 2 * (self.vision_embed_dim // self.vision_num_heads // 2) * FP32
        return pixels_in + compute + rotary

    def vision_activation_bytes(self, pixels: int, *, dtype_bytes: int = BF16, extra_per_patch: int = 0) -> int:
        """Peak activation memory of one image of up to `pixels` pixels in the vision encoder.

        `patches` = 4 × tokens_for_pixels(pixels); the result is

            margin × (patches × (vision_bytes_per_patch + extra_per_patch) + merger output)

        with attention linear in the patches: vLLM runs it by `cu_seqlens`, and the transformers and
        CPU backends replace the remote code's N × N attention by fused per-image attention
        (workers/backends/vision_attention.py). The merger output is tokens × hidden × dtype_bytes.
        """
        tokens = self.tokens_for_pixels(pixels)
        patches = tokens * self.patches_per_token
        body = patches * (self.vision_bytes_per_patch(dtype_bytes) + extra_per_patch)
        merger = tokens * self.hidden_size * dtype_bytes
        return int(ACTIVATION_MARGIN * (body + merger))

    def lm_bytes_per_token(self, dtype_bytes: int = BF16) -> int:
        """Working set of one prefill token in one decoder layer: the MLP's gate, up and activation
        (3 × intermediate) and eight hidden-size tensors (residual, norm, q/k/v, attention output,
        projection): 2 × (3 × 8960 + 8 × 1536) = 78,336 bytes in bf16."""
        return (3 * self.intermediate_size + 8 * self.hidden_size) * dtype_bytes

    def lm_activation_bytes(
        self, tokens: int, *, logit_rows: int = 1, dtype_bytes: int = BF16, causal_mask: bool = False
    ) -> int:
        """Peak activation memory of a prefill of `tokens` tokens (upper bound).

            margin × (tokens × lm_bytes_per_token + logit_rows × vocab × 20 + mask)

        The logits are fp32 and sampling keeps a softmax and a sorted copy with int64 indices
        (4 + 4 + 12 bytes per vocabulary entry). Both vLLM's profile run and transformers' generate
        (with `logits_to_keep`, which dots.ocr's forward accepts) compute logits for the last
        position only, so logit_rows is the number of sequences. `causal_mask` adds a
        tokens² mask in the compute dtype, for transformers' SDPA path when it materialises one.
        """
        body = tokens * self.lm_bytes_per_token(dtype_bytes)
        logits = logit_rows * self.vocab_size * (FP32 + FP32 + 12)
        mask = tokens * tokens * dtype_bytes if causal_mask else 0
        return int(ACTIVATION_MARGIN * (body + logits + mask))

    def kv_cache_bytes(self, tokens: int, dtype_bytes: int = BF16) -> int:
        return int(tokens) * self.kv_bytes_per_token(dtype_bytes)


DOTS_OCR = ModelFacts()

# An A4 page rendered at 200 dpi (the DPI dots.ocr's README recommends for PDFs) is 1654 × 2339
# pixels; smart_resize makes it 1652 × 2352 = 3,885,504 pixels, 4,956 tokens.
A4_200DPI_PIXELS = 1652 * 2352

# The smallest max_pixels the planner will choose before it gives up on a backend: 1280 × 28 × 28 =
# 1,003,520 pixels (1,280 tokens), the Qwen2-VL processor's own default max_pixels. An A4 page then
# comes out at about 100 dpi, where 10-point body text is still about 14 pixels tall; below that
# small print stops being legible to the model, and a smaller backend at a readable size is better.
MIN_USEFUL_PIXELS = 1280 * 28 * 28
