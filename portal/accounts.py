"""Accounts: invitations by e-mail and what accepting one does.

An invitation adds its person to the organization at once (the membership and,
if asked, the team membership, through the same services as `member_add`) and
mails them a link with a single-use token that expires
(`INVITATION_TTL_HOURS`). Only the token's SHA-256 is stored; the plaintext
exists in the e-mail alone. Following the link lets a new user set a password
(Django's validators); a user who already has one is only told to sign in.

The e-mail is sent when the transaction commits (never for a change that rolled
back); a failure to send is logged and leaves `sent_at` empty, and a resend
makes a new link."""

from __future__ import annotations

import datetime as dt
import functools
import logging
import smtplib
from typing import Any

from django.conf import settings
from django.contrib.auth import password_validation
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from portal import audit, services
from portal.access import Actor, system_actor
from portal.models import ROLE_RANK, Invitation, Membership, Organization, OrgRole, Team, TeamRole
from portal.tokens import new_secret, sha256_hex

log = logging.getLogger(__name__)

INVITATION_PREFIX = "inv_"
EMAIL_MAX_LENGTH = 254  # the user model's and the invitation's column
INVITATION_FIELDS = ("email", "role", "team", "team_role", "expires_at", "accepted_at", "revoked_at")
LINK_INVALID = "This invitation link is not valid any more: it was used, revoked or has expired. Ask for a new one."


def _state(invitation: Invitation) -> dict[str, Any]:
    return audit.snapshot(invitation, INVITATION_FIELDS)


def _new_link(invitation: Invitation) -> str:
    """Gives the invitation a fresh token and expiry; returns the token's plaintext."""
    secret = new_secret(INVITATION_PREFIX)
    invitation.token_hash = secret.digest
    invitation.expires_at = timezone.now() + dt.timedelta(hours=settings.INVITATION_TTL_HOURS)
    return secret.plaintext


def accept_url(plaintext: str) -> str:
    return settings.PORTAL_PUBLIC_URL + reverse("web:invitation_accept", kwargs={"token": plaintext})


def _send(invitation_id: int, plaintext: str) -> None:
    invitation = Invitation.objects.select_related("organization", "invited_by", "user").get(pk=invitation_id)
    context = {"invitation": invitation, "org": invitation.organization, "link": accept_url(plaintext),
               "has_password": invitation.user.has_usable_password(),
               "inviter": invitation.invited_by.email if invitation.invited_by else "",
               "hours": settings.INVITATION_TTL_HOURS, "login_url": settings.PORTAL_PUBLIC_URL + reverse("web:login")}
    # one line: a name with a line break would be a header injection (Django refuses the mail)
    subject = " ".join(f"You are invited to {invitation.organization.name} on the LLMOps Portal".split())
    body = render_to_string("registration/invitation_email.txt", context)
    try:
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [invitation.email])
    except (smtplib.SMTPException, OSError, ValueError) as exc:  # ValueError: BadHeaderError
        log.warning("invitation %s: the e-mail could not be sent: %s", invitation_id, type(exc).__name__)
        return
    Invitation.objects.filter(pk=invitation_id).update(sent_at=timezone.now())


def _send_on_commit(invitation: Invitation, plaintext: str) -> None:
    transaction.on_commit(functools.partial(_send, invitation.pk, plaintext))


def _clean_email(email: str) -> str:
    email = (email or "").strip() if isinstance(email, str) else ""
    try:
        if len(email) > EMAIL_MAX_LENGTH:
            raise ValidationError("too long")
        validate_email(email)
    except ValidationError:
        raise ValidationError({"email": "Enter a valid e-mail address."}) from None
    return email


@transaction.atomic
def invitation_create(*, actor: Actor, email: str, role: str, team: Team | None = None,
                      team_role: str | None = None) -> Invitation:
    """Adds the person to the organization (and to `team`, as `team_role`), and mails them the link."""
    actor.require(OrgRole.ADMIN)
    email = _clean_email(email)
    if role not in OrgRole.values:
        raise ValidationError({"role": "Choose one of the organization's roles."})
    if team is not None and team.organization_id != actor.organization.pk:
        raise ValidationError({"team": "Choose a team of this organization."})
    if team is None and team_role:
        raise ValidationError({"team_role": "A team role needs a team."})
    if team_role and team_role not in TeamRole.values:
        raise ValidationError({"team_role": "Choose one of the team roles."})
    membership = services.member_add(actor=actor, email=email, role=role)
    user = membership.user
    if team is not None:
        services.team_member_add(actor=actor, team=team, email=user.email, role=team_role or TeamRole.MEMBER)
    invitation = Invitation(organization=actor.organization, user=user, email=user.email, role=role, team=team,
                            team_role=(team_role or TeamRole.MEMBER) if team else "", invited_by=actor.user)
    plaintext = _new_link(invitation)
    invitation.save()
    audit.record(actor, "invitation.create", invitation, after=_state(invitation))
    _send_on_commit(invitation, plaintext)
    return invitation


def _require_open(invitation: Invitation) -> None:
    if invitation.accepted_at is not None:
        raise ValidationError({"invitation": "This invitation was accepted already."})
    if invitation.revoked_at is not None:
        raise ValidationError({"invitation": "This invitation was revoked."})


@transaction.atomic
def invitation_resend(*, actor: Actor, invitation: Invitation) -> Invitation:
    """A new link (the old one stops working) with a new expiry, mailed again."""
    actor.require(OrgRole.ADMIN)
    invitation = Invitation.objects.select_for_update().get(pk=invitation.pk, organization=actor.organization)
    _require_open(invitation)
    if not Membership.objects.filter(organization=actor.organization, user_id=invitation.user_id).exists():
        raise ValidationError({"invitation": "This person is no longer a member; invite them again."})
    before = _state(invitation)
    plaintext = _new_link(invitation)
    invitation.sent_at = None
    invitation.save(update_fields=["token_hash", "expires_at", "sent_at"])
    audit.record(actor, "invitation.resend", invitation, before=before, after=_state(invitation))
    _send_on_commit(invitation, plaintext)
    return invitation


@transaction.atomic
def invitation_revoke(*, actor: Actor, invitation: Invitation) -> Invitation:
    """The link stops working, and the membership the invitation made is removed (through
    `member_remove`: its guards, its audit entry) while the person has not accepted it."""
    actor.require(OrgRole.ADMIN)
    invitation = Invitation.objects.select_for_update().get(pk=invitation.pk, organization=actor.organization)
    if invitation.revoked_at is not None:
        return invitation
    if invitation.accepted_at is not None:
        raise ValidationError({"invitation": "This invitation was accepted already; remove the member instead."})
    before = _state(invitation)
    invitation.revoked_at = timezone.now()
    invitation.save(update_fields=["revoked_at"])
    audit.record(actor, "invitation.revoke", invitation, before=before, after=_state(invitation))
    membership = Membership.objects.filter(organization=actor.organization, user_id=invitation.user_id).first()
    if membership is not None:
        services.member_remove(actor=actor, membership=membership)
    return invitation


def invitation_by_token(plaintext: str) -> Invitation | None:
    """The pending invitation of this link, or None (used, revoked, expired, malformed,
    or its person is no longer a member or deactivated)."""
    if not isinstance(plaintext, str) or not plaintext.startswith(INVITATION_PREFIX) or len(plaintext) > 100:
        return None
    invitation = (Invitation.objects.select_related("organization", "user")
                  .filter(token_hash=sha256_hex(plaintext), accepted_at=None, revoked_at=None,
                          expires_at__gt=timezone.now()).first())
    if invitation is None or not invitation.user.is_active:
        return None
    if not Membership.objects.filter(organization=invitation.organization, user=invitation.user).exists():
        return None
    return invitation


@transaction.atomic
def invitation_accept(*, plaintext: str, password: str | None) -> Invitation:
    """Uses the link once. A user without a password must choose one (Django's validators);
    `password` is ignored for a user who has one already (they sign in as before)."""
    found = invitation_by_token(plaintext)
    if found is None:
        raise PermissionDenied(LINK_INVALID)
    invitation = Invitation.objects.select_for_update().select_related("organization", "user").get(pk=found.pk)
    if invitation.accepted_at is not None or invitation.revoked_at is not None:
        raise PermissionDenied(LINK_INVALID)  # used by a concurrent request
    user = invitation.user
    if not user.has_usable_password():
        if not password:
            raise ValidationError({"password1": "Choose a password."})
        try:
            password_validation.validate_password(password, user)
        except ValidationError as exc:
            raise ValidationError({"password1": exc.messages}) from None
        user.set_password(password)
        user.save(update_fields=["password"])
    before = _state(invitation)
    invitation.accepted_at = timezone.now()
    invitation.save(update_fields=["accepted_at"])
    actor = system_actor(invitation.organization, f"{invitation.email} (accepting an invitation)", user=user)
    audit.record(actor, "invitation.accept", invitation, before=before, after=_state(invitation))
    return invitation


# Single sign-on: the organization map ----------------------------------------

SSO_ROLES = (OrgRole.ADMIN, OrgRole.MEMBER, OrgRole.VIEWER)  # never owner: owners are made by people


def email_verified(claims: dict[str, Any]) -> bool:
    """The identity provider says it verified the address (`email_verified` true; some send "true")."""
    value = claims.get("email_verified")
    return value is True or (isinstance(value, str) and value.lower() == "true")


def claim_groups(claims: dict[str, Any]) -> list[str]:
    groups = claims.get(settings.OIDC_GROUPS_CLAIM)
    if isinstance(groups, str):
        groups = [groups]
    if not isinstance(groups, list):
        return []
    return [g for g in groups if isinstance(g, str)][:1000]


def sso_wanted_roles(claims: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Organization slug -> (role, the rule that gave it), the highest role per organization that
    `OIDC_ORG_MAP` gives these claims. A domain rule applies only to a verified address."""
    raw = claims.get("email")
    email = raw if isinstance(raw, str) else ""
    domain = email.rpartition("@")[2].lower() if "@" in email else ""
    keys = {f"group:{g}" for g in claim_groups(claims)}
    if domain and email_verified(claims):
        keys.add(f"domain:{domain}")
    wanted: dict[str, tuple[str, str]] = {}
    for rule, (slug, role) in settings.OIDC_ORG_MAP.items():
        if rule in keys and (slug not in wanted or ROLE_RANK[OrgRole(role)] > ROLE_RANK[OrgRole(wanted[slug][0])]):
            wanted[slug] = (role, rule)
    return wanted


@transaction.atomic
def sso_apply_mapping(*, user: Any, claims: dict[str, Any]) -> list[Membership]:
    """At each SSO sign-in: a membership for every organization the map gives, or a raise to the
    mapped role; a role that is already as high or higher (whoever set it) is left alone, and
    nothing is ever lowered or removed here. Each change is a `member_add` / `member_update`
    by the system actor "SSO sign-in (<rule>)", in the audit log."""
    changed = []
    for slug, (role, rule) in sorted(sso_wanted_roles(claims).items()):
        org = Organization.objects.filter(slug=slug).first()
        if org is None:
            log.warning("OIDC_ORG_MAP names the organization %r, which does not exist", slug)
            continue
        actor = system_actor(org, f"SSO sign-in ({rule})")
        membership = Membership.objects.select_for_update().filter(organization=org, user=user).first()
        if membership is None:
            changed.append(services.member_add(actor=actor, email=user.email, role=role))
        elif ROLE_RANK[OrgRole(role)] > ROLE_RANK[OrgRole(membership.role)]:
            changed.append(services.member_update(actor=actor, membership=membership, role=role))
    return changed


def sso_user(claims: dict[str, Any]) -> Any:
    """The portal user of a verified SSO identity: the one with this e-mail, or a new one
    (no usable password: it signs in through the identity provider)."""
    if not email_verified(claims):
        raise PermissionDenied("The identity provider did not verify this e-mail address.")
    email = _clean_email(claims.get("email", ""))
    return services.user_get_or_create(email=email)
