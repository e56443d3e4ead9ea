"""Provider credentials (org admins): list, create, edit, delete. Each provider's fields come from
`gateway/providers.py`; secrets are write-only: a page says which are set, never their values (not even
masked), and an edit keeps a secret whose field is left empty."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect

from gateway import providers
from gateway.api.serializers import CredentialSerializer
from gateway.models import ProviderCredential, ProviderType
from gateway.services import credentials as credential_services
from portal.api.errors import validation_detail
from portal.models import OrgRole
from portal.tenancy import Parent
from portal.web.base import OrgPage
from portal.web.gateway.forms import first_errors

LABELS = {
    "api_base": "API base URL", "api_version": "API version", "organization": "OpenAI organization id",
    "aws_region_name": "AWS region", "vertex_project": "Google Cloud project", "vertex_location": "Vertex AI location",
    "api_key": "API key", "aws_access_key_id": "AWS access key id", "aws_secret_access_key": "AWS secret access key",
    "aws_session_token": "AWS session token", "vertex_credentials": "Service account key (JSON)",
}
HELP = {
    "api_base": "For example https://my-resource.openai.azure.com or http://vllm.internal:8000/v1.",
    "vertex_credentials": "Paste the JSON key itself (type service_account or authorized_user), not a path.",
}


@dataclass(frozen=True)
class CredentialField:
    """One input of a provider's form: a setting (shown and edited) or a secret (write-only)."""

    group: str  # "settings" or "secrets"
    name: str
    required: bool
    value: str = ""  # settings only; a secret's value is never put in a page
    is_set: bool = False  # secrets: whether one is stored
    errors: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return f"{self.group}-{self.name}"

    @property
    def label(self) -> str:
        return LABELS.get(self.name, self.name)

    @property
    def help(self) -> str:
        return HELP.get(self.name, "")

    @property
    def multiline(self) -> bool:
        return self.name == "vertex_credentials"


def provider_fields(provider: str, *, credential: ProviderCredential | None, post: Any,
                    errors: dict[str, list[str]]) -> tuple[list[CredentialField], dict[str, list[str]]]:
    """The provider's inputs with their values and errors, and the errors no field took."""
    spec = providers.PROVIDERS[provider]
    stored = credential.settings if credential is not None else {}
    set_secrets = set(credential.secret_fields) if credential is not None else set()
    left: dict[str, list[str]] = {g: list(errors.get(g, [])) for g in ("settings", "secrets")}
    fields = []
    for group, names, required in (("settings", spec.required_settings, True),
                                   ("settings", spec.optional_settings, False),
                                   ("secrets", spec.required_secrets, True),
                                   ("secrets", spec.optional_secrets, False)):
        for name in names:
            mine = [m.split(": ", 1)[1] for m in left[group] if m.startswith(f"{name}: ")]
            left[group] = [m for m in left[group] if not m.startswith(f"{name}: ")]
            value = "" if group == "secrets" else (post.get(f"settings-{name}", "") if post else stored.get(name, ""))
            fields.append(CredentialField(group, name, required, value=value, is_set=name in set_secrets,
                                          errors=tuple(mine)))
    return fields, {g: m for g, m in left.items() if m}


def credential_form_data(post: Any, provider: str, *, editing: bool) -> dict[str, Any]:
    """Settings as typed (an empty one is removed); secrets only where typed (an edit keeps the others),
    and `null` for a secret ticked to clear."""
    spec = providers.PROVIDERS[provider]
    settings = {n: post.get(f"settings-{n}", "").strip() for n in spec.settings if post.get(f"settings-{n}", "").strip()}
    secrets: dict[str, Any] = {n: post[f"secrets-{n}"] for n in spec.secrets if post.get(f"secrets-{n}")}
    if editing:
        secrets |= {n: None for n in spec.optional_secrets if post.get(f"clear-{n}") and n not in secrets}
    data: dict[str, Any] = {"name": post.get("name", "").strip(), "settings": settings}
    if secrets or not editing:
        data["secrets"] = secrets
    if not editing:
        data["provider"] = provider
    return data


class CredentialsPage(OrgPage):
    """The organization's provider credentials, and a link per provider to add one."""

    read_role = OrgRole.ADMIN

    def get(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        rows = ProviderCredential.objects.visible_to(self.actor, "view").prefetch_related("deployments__route")
        return self.page("web/gateway/credentials.html", credentials=rows, provider_types=ProviderType.choices)


class CredentialForm(OrgPage):
    """Create (`provider` in the URL) or edit (`credential_id`) one credential."""

    read_role = OrgRole.ADMIN

    @property
    def credential(self) -> ProviderCredential | None:
        if "credential_id" not in self.kwargs:
            return None
        return self.parent(ProviderCredential)

    def provider(self) -> str:
        credential = self.credential
        provider = credential.provider if credential is not None else self.kwargs.get("provider", "")
        if provider not in providers.PROVIDERS:
            raise Http404
        return str(provider)

    def get(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        return self.form(errors={})

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        provider, credential = self.provider(), self.credential
        data = credential_form_data(request.POST, provider, editing=credential is not None)
        context = {"organization": self.organization, "actor": self.actor}
        serializer = CredentialSerializer(credential, data=data, partial=credential is not None, context=context)
        if not serializer.is_valid():
            return self.form(errors=first_errors(serializer.errors))
        try:
            if credential is None:
                saved = credential_services.credential_create(actor=self.actor, **serializer.validated_data)
            else:
                saved = credential_services.credential_update(actor=self.actor, credential=credential,
                                                              data=serializer.validated_data)
        except ValidationError as exc:
            return self.form(errors=first_errors(validation_detail(exc)))
        messages.success(request, f"Credential '{saved.name}' {'updated' if credential else 'created'}.")
        return redirect("web:credentials", org_slug=self.organization.slug)

    def form(self, *, errors: dict[str, list[str]]) -> HttpResponse:
        provider, credential = self.provider(), self.credential
        post = self.request.POST if errors else None
        fields, group_errors = provider_fields(provider, credential=credential, post=post, errors=errors)
        name = post.get("name", "") if post else (credential.name if credential else "")
        return self.page("web/gateway/credential_form.html", http_status=400 if errors else 200,
                         credential=credential, provider=provider, provider_label=ProviderType(provider).label,
                         fields=fields, group_errors=group_errors, errors=errors, name=name)


class CredentialEdit(CredentialForm):
    """The form of the credential the URL names (loaded through `visible_to`)."""

    parents = (Parent(ProviderCredential, "credential_id"),)


class CredentialDelete(OrgPage):
    """Delete a credential (POST); refused while a route's deployment uses it."""

    parents = (Parent(ProviderCredential, "credential_id", action="delete"),)

    def post(self, request: HttpRequest, **kwargs: Any) -> HttpResponse:
        credential = self.parent(ProviderCredential)
        try:
            credential_services.credential_delete(actor=self.actor, credential=credential)
        except ValidationError as exc:
            messages.error(request, "; ".join(m for ms in validation_detail(exc).values() for m in ms))
        else:
            messages.success(request, f"Credential '{credential.name}' deleted.")
        return redirect("web:credentials", org_slug=self.organization.slug)
