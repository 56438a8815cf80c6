"""Image sizes as dots.ocr sees them (the Qwen2-VL "smart resize").

The vision encoder cuts images in 14-pixel patches and merges 2×2 of them into one token,
so both sides must be multiples of 28 and one token covers 28×28 pixels. The pixel count is
kept within [min_pixels, max_pixels]; the backend's plan lowers max_pixels to what fits.
"""

from __future__ import annotations

import math

from PIL import Image

FACTOR = 28
MIN_PIXELS = 3136  # 4 tokens
MAX_PIXELS = 11_289_600  # 14,400 tokens, the model's own maximum
MAX_ASPECT_RATIO = 200


def smart_resize(
    height: int, width: int, min_pixels: int = MIN_PIXELS, max_pixels: int = MAX_PIXELS, factor: int = FACTOR
) -> tuple[int, int]:
    """(height, width) rounded to multiples of `factor`, keeping the aspect ratio, within the pixel range."""
    if height < 1 or width < 1:
        raise ValueError(f"an image of {width}×{height} has no pixels")
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise ValueError(
            f"the image is {width}×{height}: its sides differ by more than {MAX_ASPECT_RATIO} times"
        )
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
        if h * w > max_pixels:  # the token budget wins over the minimum
            beta = math.sqrt(h * w / max_pixels)
            h = max(factor, math.floor(h / beta / factor) * factor)
            w = max(factor, math.floor(w / beta / factor) * factor)
    return h, w


def image_tokens(height: int, width: int, factor: int = FACTOR) -> int:
    return (height // factor) * (width // factor)


def to_rgb(image: Image.Image) -> Image.Image:
    """Transparent parts become white, as on paper."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, (255, 255, 255))
        canvas.paste(rgba, mask=rgba.split()[3])
        return canvas
    return image.convert("RGB")


def fit_for_model(
    image: Image.Image, max_pixels: int = MAX_PIXELS, min_pixels: int = MIN_PIXELS
) -> tuple[Image.Image, float, float]:
    """The image the model gets, and the x and y factors that map its boxes back to the original."""
    rgb = to_rgb(image)
    h, w = smart_resize(rgb.height, rgb.width, min_pixels=min_pixels, max_pixels=max_pixels)
    resized = rgb if (w, h) == rgb.size else rgb.resize((w, h), Image.Resampling.BICUBIC)
    return resized, image.width / w, image.height / h
