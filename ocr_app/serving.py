"""How a user's bytes (an upload, a page image, a crop) and the model's output (a result download)
leave the server.

Every member's files are opened by every other member, admins included, in the same origin. So:
the content type comes from the format detected at upload (Job.image_format), never from a file
name; the stored name is ours and carries the detected extension; an original file is an
attachment; and each of these responses is sandboxed by its own Content-Security-Policy (no
script runs, no plugin loads, nothing is fetched; the document gets an opaque origin), with
`nosniff` so that no browser guesses HTML from the bytes.
"""

from __future__ import annotations

from pathlib import PurePath

from django.http import HttpResponseBase

# The format names of ocr_app.validation (Job.image_format).
CONTENT_TYPES = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "WebP": "image/webp",
    "TIFF": "image/tiff",
    "BMP": "image/bmp",
    "GIF": "image/gif",
    "HEIF": "image/heif",
    "AVIF": "image/avif",
    "JPEG2000": "image/jp2",
    "PDF": "application/pdf",
}
EXTENSIONS = {
    "PNG": "png", "JPEG": "jpg", "WebP": "webp", "TIFF": "tif", "BMP": "bmp", "GIF": "gif", "HEIF": "heic",
    "AVIF": "avif", "JPEG2000": "jp2", "PDF": "pdf",
}  # fmt: skip
# Other extensions that name the same format (a user's "scan.jpeg" keeps its name).
SAME_FORMAT = {"JPEG": {"jpeg", "jpe"}, "TIFF": {"tiff"}, "HEIF": {"heif"}, "JPEG2000": {"j2k", "jpf", "jpx"}}
# What nobody can take for anything that runs.
UNKNOWN_TYPE = "application/octet-stream"

# Inline styles and data: images only: the HTML download has its own <style> and embeds its
# Picture crops. `sandbox` without allow-scripts: nothing runs, whatever the bytes say.
USER_CONTENT_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; sandbox"


def content_type(image_format: str) -> str:
    return CONTENT_TYPES.get(image_format, UNKNOWN_TYPE)


def extension(image_format: str) -> str:
    return EXTENSIONS.get(image_format, "bin")


def download_name(name: str, image_format: str) -> str:
    """The user's file name with an extension of the detected format (a PNG sent as x.html is x.png)."""
    path = PurePath(PurePath(name.replace("\\", "/")).name)
    ext = path.suffix.lower().lstrip(".")
    if ext == extension(image_format) or ext in SAME_FORMAT.get(image_format, ()):
        return path.name
    return f"{path.stem.strip() or 'upload'}.{extension(image_format)}"


def user_content(response: HttpResponseBase) -> HttpResponseBase:
    """Mark a response that carries a user's bytes or the model's output as inert."""
    response["Content-Security-Policy"] = USER_CONTENT_CSP
    response["X-Content-Type-Options"] = "nosniff"
    # Only this site's own pages may embed it (an <img> elsewhere may not).
    response["Cross-Origin-Resource-Policy"] = "same-origin"
    return response
