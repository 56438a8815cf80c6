"""What a request Django could not read gets: a sentence saying why, as JSON for scripts and the
upload page (which list it like any refused file), as a page for a browser."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.template.loader import render_to_string


def bad_request(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    if isinstance(exception, MultiPartParserError):
        message = (
            f"The upload could not be read ({exception}) and nothing was stored. A part's headers may be at "
            "most 1 KB: a file name of thousands of characters does not fit; names of up to 255 characters do."
        )
    else:
        message = "The request could not be read and nothing was done."
    if "application/json" in request.headers.get("Accept", "") or request.path.startswith(("/api/", "/v1/")):
        return JsonResponse(
            {"error": message, "code": "bad_request", "refused": [{"name": "", "error": message}]}, status=400
        )
    return HttpResponse(
        render_to_string("400.html", {"message": message}), status=400, content_type="text/html; charset=utf-8"
    )
