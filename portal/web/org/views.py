"""Organization administration: the organization's settings and budgets.

The other pages of the area are in `members.py`, `teams.py`, `projects.py` and `audit.py`. Every page
is an `OrgPage`; it reads rows through `visible_to` and writes through the API's serializers and the
services (`portal/services.py`, `evals/services/langfuse.py`), so a refusal there is a refusal here."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect

from evals.api.serializers import LangfuseOrgKeySerializer
from evals.models import LangfuseOrgKey
from evals.services import langfuse
from portal import services
from portal.api.serializers import OrganizationSerializer
from portal.models import Organization, OrgRole
from portal.web.base import OrgPage
from portal.web.org import forms

SETTINGS_FIELDS = (
    forms.Field("name", "Name", required=True, maxlength=200),
    *forms.budget_fields(),
    forms.Field("alert_emails", "Alert e-mails", maxlength=1000,
                help="Comma-separated. Empty: the organization's owners and admins."),
    forms.Field("alert_webhook_url", "Alert webhook URL", kind="url", maxlength=500,
                help="Receives a JSON POST for every budget or evaluation alert."),
)

ORG_KEY_FIELDS = (
    forms.Field("host", "Langfuse host", kind="url", required=True, maxlength=300),
    forms.Field("public_key", "Organization public key", required=True, maxlength=200),
    forms.Field("secret_key", "Organization secret key", kind="password", required=True, maxlength=300,
                help="Write-only; needed on every save. Checked with Langfuse's organization API."),
)


class SettingsPage(OrgPage):
    """The organization's name, budget and alert targets (org admins)."""

    read_role = OrgRole.ADMIN

    def get(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        return self.form(values=forms.values_of(self.current(), SETTINGS_FIELDS), errors={})

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        data = forms.parse(SETTINGS_FIELDS, request.POST)
        serializer = OrganizationSerializer(self.current(), data=data, partial=True,
                                            context={"organization": self.organization, "actor": self.actor})
        if not serializer.is_valid():
            return self.form(values=data, errors=forms.Outcome.of(serializer.errors, SETTINGS_FIELDS).errors)
        try:
            services.organization_update(actor=self.actor, data=dict(serializer.validated_data))
        except ValidationError as exc:
            return self.form(values=data, errors=forms.Outcome.of(exc, SETTINGS_FIELDS).errors)
        messages.success(request, "Settings saved.")
        return redirect("web:settings", org_slug=self.organization.slug)

    def current(self) -> Organization:
        return Organization.objects.visible_to(self.actor, "view").get()

    def form(self, *, values: dict[str, Any], errors: dict[str, Any], key_values: dict[str, Any] | None = None,
             key_errors: dict[str, Any] | None = None) -> HttpResponse:
        org_key = LangfuseOrgKey.objects.visible_to(self.actor, "view").first()
        if key_values is None:
            key_values = forms.values_of(org_key, ORG_KEY_FIELDS) if org_key else {}
        return self.page("web/org/settings.html", http_status=400 if errors or key_errors else 200, errors=errors,
                         fields=forms.bind(SETTINGS_FIELDS, values=values, errors=errors), org_key=org_key,
                         key_errors=key_errors or {},
                         key_fields=forms.bind(ORG_KEY_FIELDS, values=key_values, errors=key_errors, form="orgkey"))


class OrgKeyPage(SettingsPage):
    """POST: save the organization's Langfuse organization key (checked first), or with `delete`, forget it.
    With it, a project's page can create the project's Langfuse project (enterprise Langfuse)."""

    def get(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        return redirect("web:settings", org_slug=self.organization.slug)

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        if "delete" in request.POST:
            key = LangfuseOrgKey.objects.visible_to(self.actor, "delete").first()
            if key is not None:
                langfuse.org_key_delete(actor=self.actor, key=key)
                messages.success(request, "The Langfuse organization key is forgotten.")
            return redirect("web:settings", org_slug=self.organization.slug)
        data = forms.parse(ORG_KEY_FIELDS, request.POST)
        serializer = LangfuseOrgKeySerializer(data=data)
        errors: dict[str, Any] = {}
        if not serializer.is_valid():
            errors = forms.Outcome.of(serializer.errors, ORG_KEY_FIELDS).errors
        else:
            try:
                langfuse.org_key_save(actor=self.actor, **serializer.validated_data)
            except ValidationError as exc:
                errors = forms.Outcome.of(exc, ORG_KEY_FIELDS).errors
        if errors:
            return self.form(values=forms.values_of(self.current(), SETTINGS_FIELDS), errors={}, key_values=data,
                             key_errors=errors)
        messages.success(request, "Langfuse organization key saved (checked with Langfuse).")
        return redirect("web:settings", org_slug=self.organization.slug)
