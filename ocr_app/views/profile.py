"""The profile page: each user makes (named), sees and revokes their API tokens. A new token's key
is shown once, in the answer to the form that made it; only its hash is stored."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_http_methods, require_POST

from ocr_app.forms import DEFAULT_EXPIRY_DAYS, EXPIRY_CHOICES, TokenForm
from ocr_app.models import ApiToken

# Enough for every script a person runs; a runaway loop cannot fill the table.
MAX_ACTIVE_TOKENS = 50


@require_http_methods(["GET", "POST"])
def profile(request: HttpRequest) -> HttpResponse:
    form = TokenForm(request.POST or None)
    new_key = None
    if request.method == "POST":
        active = ApiToken.objects.filter(user=request.user, revoked_at=None).count()
        if active >= MAX_ACTIVE_TOKENS:
            form.add_error(None, f"You have {active} active tokens, the most allowed; revoke one first.")
        if form.is_valid():
            token, new_key = ApiToken.create_for(request.user, form.cleaned_data["name"], form.expires_at())
            form = TokenForm()
    tokens = ApiToken.objects.filter(user=request.user)
    response = render(
        request,
        "ocr_app/profile.html",
        {
            "form": form,
            "tokens": tokens,
            "new_key": new_key,
            "expiry_choices": EXPIRY_CHOICES,
            "default_expiry": DEFAULT_EXPIRY_DAYS,
            "api_base": request.build_absolute_uri("/api/v1/"),
        },
    )
    # The page may show a new key: no cache (the browser's, a proxy's) may keep it.
    add_never_cache_headers(response)  # Cache-Control: max-age=0, no-cache, no-store, must-revalidate, private
    return response


@require_POST
def revoke_token(request: HttpRequest, pk: int) -> HttpResponse:
    token = get_object_or_404(ApiToken, pk=pk, user=request.user)
    if token.revoke():
        messages.success(request, f"The token “{token.name}” was revoked; scripts using it now get 401.")
    else:
        messages.info(request, f"The token “{token.name}” was already revoked.")
    return redirect("profile")
