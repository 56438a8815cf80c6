"""Multi-frame images as documents: a TIFF's frames are its pages (office scanners and fax
servers write one TIFF per document). Pure: Pillow only, no Django.

Checks read only each frame's header (its IFD), never its pixels, so a bomb of huge or countless
frames is refused before anything is decoded: the frames are counted up to the page limit and no
further, and each frame's size is held to the pixel limit.
"""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageOps

# Formats whose frames are pages (an animated GIF's frames are an animation: only the first is read).
PAGED_FORMATS = {"TIFF"}


class FramesRefused(ValueError):
    """A multi-frame image that cannot be used; str() names the file and the problem."""


def count_frames(img: Image.Image, name: str, max_pages: int, max_pixels: int) -> int:
    """The number of frames of an open image, each checked against `max_pixels`; FramesRefused
    past `max_pages` (counting stops there: a file of a million frames costs max_pages seeks)."""
    count = 0
    while True:
        try:
            img.seek(count)
        except EOFError:
            break
        count += 1
        if count > max_pages:
            pages = f"{max_pages} page{'s' if max_pages != 1 else ''}"
            raise FramesRefused(
                f"{name}: the image has more than {pages} (frames); the limit is {pages} per document"
                ". Split it into smaller files."
            )
        width, height = img.size
        if width < 1 or height < 1:
            raise FramesRefused(f"{name}: page {count} has no pixels.")
        if width * height > max_pixels:
            raise FramesRefused(
                f"{name}: page {count} is {width}×{height} = {width * height:,} pixels, "
                f"over the limit of {max_pixels:,}."
            )
    img.seek(0)
    return count


def render_frame(data: bytes, index: int, name: str = "The image") -> Image.Image:
    """Frame `index` (0-based) as an upright RGB image; IndexError for a frame that does not exist,
    FramesRefused for one that cannot be decoded."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as img:
                try:
                    img.seek(index)
                except EOFError:
                    raise IndexError(f"the image has no page {index + 1}") from None
                img.load()
                frame = ImageOps.exif_transpose(img)
                return frame.convert("RGB") if frame.mode != "RGB" else frame.copy()
        except (OSError, SyntaxError, ValueError, TypeError, KeyError, Image.DecompressionBombError) as exc:
            raise FramesRefused(f"{name}: page {index + 1} is damaged and cannot be read ({exc}).") from None
