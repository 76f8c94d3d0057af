"""Admin forms for quality: webhook subscriptions."""

from urllib.parse import urlsplit

from django import forms
from django.utils.translation import gettext_lazy as _

from .models import Webhook


class WebhookForm(forms.ModelForm):
    """Events as checkboxes, an http(s) URL, and a secret that is never shown back (blank keeps the old one)."""

    url = forms.URLField(label=_("URL"), max_length=500, assume_scheme="https", help_text=_("An http(s) URL."))
    events = forms.MultipleChoiceField(label=_("Events"), choices=Webhook.Event.choices,
                                       widget=forms.CheckboxSelectMultiple,
                                       help_text=_("The events POSTed to the URL."))
    secret = forms.CharField(
        label=_("Secret"), max_length=128, required=False, widget=forms.PasswordInput(render_value=False),
        help_text=_("Shared secret for the X-LabelPortal-Signature header (HMAC-SHA256 of the body). "
                    "Leave empty to keep the current one."),
    )

    class Meta:
        model = Webhook
        fields = "__all__"

    def clean_url(self):
        url = self.cleaned_data["url"]
        if urlsplit(url).scheme not in ("http", "https"):
            raise forms.ValidationError(_("Use an http:// or https:// URL."))
        return url

    def clean_secret(self):
        secret = self.cleaned_data.get("secret", "")
        if secret:
            return secret
        if self.instance.pk and self.instance.secret:
            return self.instance.secret
        raise forms.ValidationError(_("Give the webhook a secret."))
