"""The image formats ocrdash reads, as Pillow names them, and the plugins that add them.

Pillow reads PNG, JPEG, WebP, TIFF, BMP, GIF, AVIF and JPEG 2000 itself (AVIF and JPEG 2000 when it
was built with libavif and OpenJPEG, as its wheels are); HEIC/HEIF, what phones save photos as,
comes from pillow-heif's plugin, registered here once on import. Every module that opens uploads
imports this one first. Pure: no Django.
"""

from __future__ import annotations

from PIL import features

try:
    import pillow_heif

    pillow_heif.register_heif_opener()
    _HEIF = True
except ImportError:  # the format is simply not offered
    _HEIF = False

# Pillow's format name -> the name pages and the API use (Job.image_format), and the file
# extensions the upload form offers.
_ALL = {
    "PNG": ("PNG", ".png"),
    "JPEG": ("JPEG", ".jpg, .jpeg"),
    "WEBP": ("WebP", ".webp"),
    "TIFF": ("TIFF", ".tif, .tiff"),
    "BMP": ("BMP", ".bmp"),
    "GIF": ("GIF", ".gif"),
    "HEIF": ("HEIF", ".heic, .heif"),
    "AVIF": ("AVIF", ".avif"),
    "JPEG2000": ("JPEG2000", ".jp2, .j2k, .jpf, .jpx"),
}
_AVAILABLE = {
    "HEIF": _HEIF,
    "AVIF": bool(features.check("avif")),
    "JPEG2000": bool(features.check("jpg_2000")),
}
ACCEPTED = {pil: name for pil, (name, _ext) in _ALL.items() if _AVAILABLE.get(pil, True)}
EXTENSIONS = ", ".join(ext for pil, (_name, ext) in _ALL.items() if pil in ACCEPTED) + ", .pdf"
# For sentences: "PNG, JPEG, …, HEIF" (PDF is named by the callers).
NAMES = ", ".join(ACCEPTED.values())
# Browsers cannot show these; pages get a PNG rendition instead.
NOT_BROWSER = {"TIFF", "HEIF", "JPEG2000"}
