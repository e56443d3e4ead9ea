"""Alerts to people: email to the organization's alert addresses (or its
owners and admins) and a JSON POST to its webhook, if it has one.

The webhook URL is a tenant's: the POST goes through the outbound URL policy
(`portal.outbound`), checked again when it is sent, to the address that was
checked, and a redirect is a failure (it is not followed)."""

from __future__ import annotations

import logging
from typing import Any

import httpx
from django.conf import settings
from django.core.mail import send_mail

from portal.models import Membership, Organization, OrgRole
from portal.outbound import OutboundRefused, PolicyTransport

log = logging.getLogger(__name__)
WEBHOOK_TIMEOUT = 5


def recipients(org: Organization) -> list[str]:
    if org.alert_emails.strip():
        return [e.strip() for e in org.alert_emails.split(",") if e.strip()]
    return sorted(Membership.objects.filter(organization=org, role__in=[OrgRole.OWNER, OrgRole.ADMIN])
                  .exclude(user__email="").values_list("user__email", flat=True))


def post_webhook(url: str, payload: dict[str, Any]) -> bool:
    try:
        with httpx.Client(transport=PolicyTransport(), timeout=WEBHOOK_TIMEOUT, follow_redirects=False) as client:
            response = client.post(url, json=payload, headers={"User-Agent": "llmops-portal"})
    except OutboundRefused as exc:
        log.warning("alert webhook of an organization refused by the outbound policy: %s", exc)
        return False
    except (httpx.HTTPError, httpx.InvalidURL, OSError, ValueError) as exc:
        log.warning("alert webhook of an organization failed: %s", type(exc).__name__)
        return False
    if not 200 <= response.status_code < 300:
        log.warning("alert webhook of an organization answered %s", response.status_code)
        return False
    return True


def send_alert(org: Organization, *, subject: str, body: str, payload: dict[str, Any]) -> None:
    to = recipients(org)
    if to:
        send_mail(f"[LLMOps Portal] {subject}", body, settings.DEFAULT_FROM_EMAIL, to, fail_silently=True)
    if org.alert_webhook_url:
        post_webhook(org.alert_webhook_url, {"organization": org.slug, "subject": subject, **payload})
