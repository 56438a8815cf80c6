from __future__ import annotations

from datetime import timedelta

from django import forms
from django.conf import settings
from django.utils import timezone

from core import backends, jobstate, languages, textlayer
from core.dots import prompts, tasks
from ocr_app import taskchoice
from ocr_app.validation import ACCEPTED_EXTENSIONS

# The tasks an upload can ask for (core/dots/tasks.py); the text of one region (grounding) needs a
# box, which an upload does not carry. The page offers those the configured model can run.
UPLOAD_MODES = [(t.code, t.label, t.help) for t in tasks.uploadable()]


def language_choices() -> list[tuple[str, str]]:
    choices = []
    for lang in languages.all_languages():
        installed = languages.is_installed(lang, settings.OCRDASH_MODEL_DIR)
        suffix = "" if installed else " — fetched on first use"
        choices.append((lang.code, f"{lang.label}{suffix}"))
    return choices


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class UploadForm(forms.Form):
    files = forms.FileField(
        widget=MultipleFileInput(attrs={"accept": ACCEPTED_EXTENSIONS, "multiple": True}),
        required=False,
    )
    language = forms.ChoiceField(choices=(), required=False)
    mode = forms.ChoiceField(choices=[(value, label) for value, label, _help in UPLOAD_MODES], required=False)
    text_layer = forms.ChoiceField(
        choices=[
            (textlayer.AUTO, "Auto: its own text for Text only, OCR for layouts"),
            (textlayer.OCR, "Always OCR"),
            (textlayer.TEXT_LAYER, "Its own text wherever it has one"),
        ],
        required=False,
        label="A PDF's own text",
    )
    question = forms.CharField(required=False, max_length=prompts.MAX_QUESTION_CHARS, strip=True)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["language"].choices = language_choices()
        self.fields["language"].initial = settings.OCRDASH_OCR_LANGUAGE
        self.fields["text_layer"].initial = settings.PDF_TEXT_LAYER

    def clean_language(self) -> str:
        return self.cleaned_data.get("language") or settings.OCRDASH_OCR_LANGUAGE

    def clean_mode(self) -> str:
        return self.cleaned_data.get("mode") or prompts.LAYOUT_ALL

    def clean_text_layer(self) -> str:
        return self.cleaned_data.get("text_layer") or settings.PDF_TEXT_LAYER
    def clean(self):
        cleaned = super().clean()
        if "mode" in cleaned and (why := taskchoice.problem(cleaned["mode"], cleaned.get("question") or "")):
            self.add_error("mode", why)
        return cleaned


class HistoryFilterForm(forms.Form):
    q = forms.CharField(required=False, max_length=200, label="Search")
    state = forms.ChoiceField(required=False)
    backend = forms.ChoiceField(required=False)
    owner = forms.CharField(required=False, max_length=150)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["state"].choices = [("", "any state")] + [(s, s) for s in jobstate.STATES]
        self.fields["backend"].choices = [("", "any backend")] + [(b, b) for b in backends.names()]


# Days a new token lasts; the form's choices (0: until revoked).
EXPIRY_CHOICES = [(30, "30 days"), (90, "90 days"), (365, "1 year"), (0, "never (until revoked)")]
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
