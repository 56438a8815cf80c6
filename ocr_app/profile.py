"""The profile page: each user makes (named), sees and revokes their API tokens. A new token's key
is shown once, in the answer to the form that made it; only its hash is stored."""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.utils.cache import add_never_cache_headers
from django.views.decorators.http import require_http_methods, require_POST

from ocr_app.models import ApiToken

# Enough for every script a person runs; a runaway loop cannot fill the table.
MAX_ACTIVE_TOKENS = 50


# Days a new token lasts; the form's choices (0: until revoked).
EXPIRY_CHOICES = [(30, "30 days"), (90, "90 days"), (365, "1 year"), (0, "never (until revoked)")]
DEFAULT_EXPIRY_DAYS = 90


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, label="Name", help_text="What it is for, e.g. “nightly scans”.")
    expires = forms.TypedChoiceField(
        choices=EXPIRY_CHOICES, coerce=int, initial=DEFAULT_EXPIRY_DAYS, required=False, empty_value=DEFAULT_EXPIRY_DAYS
    )

    def expires_at(self):
        days = self.cleaned_data.get("expires")
        return timezone.now() + timedelta(days=days) if days else None

    def clean_name(self) -> str:
        name = " ".join(self.cleaned_data["name"].split())
        if not name:
            raise forms.ValidationError("Give the token a name.")
        return name


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
